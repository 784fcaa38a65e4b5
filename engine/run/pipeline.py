"""A run, round by round: the recipe says what; an executor (engine/run/runner.py: Ray Data) does it. Ray-free.

    seeds (read/seeds.py) -> [round r: input -> expansion? -> recipe stages -> ledger shards (state/ledger.py)
                            -> whole-round steps (selection) -> data/, exports, rejects/ (write/sinks.py)] x rounds
                        -> summary.json (run/summary.py)

A round over more than run.segment_rows input rows runs as several executions, one per range of seed positions
(state/segments.py), so what the executor keeps per execution stays bounded.

Exactly once and resumable: every committed ledger shard and finished round is journaled in the manifest
(state/manifest.py), and a rerun with the same config and inputs skips them (`run.resume=false` starts over)."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Protocol

import numpy as np

from engine.backends.embedder import model_dir
from engine.config import Config, ConfigError, config_hash
from engine.read.inputs import check_schema, hf_cache_files, resolve_shape
from engine.read.readers import SUPPORTED_TEXT, list_input_files
from engine.read.seeds import SeedPlan, first_instructions, plan_seeds, seed_source
from engine.recipes import get_recipe
from engine.recipes.base import Expansion, Recipe, SetupTools
from engine.recipes.resources import fuses
from engine.recipes.spec import StageSpec
from engine.run.chain import RowsLost
from engine.run.counts import RoundCounts
from engine.run.summary import build_summary
from engine.stages.curation.dedup import check_dedup
from engine.stages.scoring.select import check_select
from engine.state.layout import RunLayout
from engine.state.ledger import drop_orphans
from engine.state.manifest import Manifest, ResumeRefused, input_fingerprint
from engine.state.segments import plan_segments, seed_positions
from engine.state.storage import write_json
from engine.write.sinks import write_dataset_info

log = logging.getLogger("engine.run.pipeline")


class Executor(Protocol):
    """What the pipeline needs from a distributed engine; `ds` values are its opaque datasets."""

    def start(self) -> int: ...  # models prepared, cluster joined; returns the number of live nodes
    def stop(self) -> None: ...
    def seeds(self, plan: SeedPlan): ...
    def rows(self, batch: dict): ...
    def read(self, files: list[Path]): ...
    def segment(self, ds, lo: int, hi: int): ...
    def drop_done(self, ds, files: list[Path], round_num: int): ...
    def expand(self, ds, expansion: Expansion): ...
    def stream(self, ds, specs: list[StageSpec], round_num: int, expected: int, ledger: Path, shard_rows: int): ...
    def apply(self, files: list[Path], spec: StageSpec, folder: Path) -> list[Path]: ...
    def grouped(self, files: list[Path], columns: list[str], explode, key: str, reduce): ...  # recipes/steps.py
    def split(self, files: list[Path], layout: RunLayout, round_num: int) -> RoundCounts: ...
    def call(self, spec: StageSpec, method: str, *args): ...


def run(cfg: Config, executor: Executor, config_text: str | None = None) -> dict:
    """Run the recipe for all its rounds and write every output; returns the run summary. `config_text`, the
    resolved config as YAML, is saved as config.yaml once the output directory is known to belong to this run."""
    started = time.perf_counter()
    layout = RunLayout.at(cfg.run.output_dir)
    storage = layout.store
    storage.makedirs(layout.root)
    recipe = get_recipe(cfg)
    check_select(cfg.select, cfg.scoring.enabled)
    if cfg.select.min_distance is not None:
        model_dir(cfg.analysis.embedder)  # the selection's embedder is there, before any generation runs
    check_dedup(cfg.dedup)
    fuses(cfg.cluster.fuse_stages, [])  # a setting other than auto / true / false stops here
    if cfg.run.segment_rows is not None and cfg.run.segment_rows < 1:
        raise ConfigError(f"run.segment_rows must be at least 1 (or null: one execution per round), not "
                          f"{cfg.run.segment_rows}")
    files, skipped = (hf_cache_files(cfg.data), []) if cfg.data.source == "hf" else list_input_files(seed_source(cfg))
    for path in skipped:
        log.warning("skipping %s: unsupported file type (supported: %s)", path, SUPPORTED_TEXT)
    shape = resolve_shape(cfg.data, files)  # before any model loads: a file the engine cannot read stops here
    check_schema(files, shape, cfg.data, cfg.data.schema_check_rows)
    try:
        digest = config_hash(cfg, {"data_shape": shape.as_dict()})
        manifest = Manifest.open(storage, digest, input_fingerprint(files), cfg.run.resume, shape.as_dict())
    except ResumeRefused as err:
        raise ConfigError(str(err)) from err
    if config_text is not None:
        storage.write_text(layout.config, config_text)
    if not manifest.entries:  # a fresh run: nothing of an earlier one may mix in
        for target in layout.outputs():
            storage.remove(target)
    rounds: list[RoundCounts] = []
    decisions = manifest.setup_decisions()
    total_rounds, nodes, started_executor = recipe.num_rounds(), 1, False
    try:
        for round_num in range(1, total_rounds + 1):
            if (done := manifest.round_counts(round_num)) is not None:
                log.info("round %d: complete in the manifest, not recomputed", round_num)
                rounds.append(RoundCounts.from_state(done))
                continue
            if rounds and rounds[-1].rows_out == 0:
                log.warning("round %d has no surviving rows to work on; stopping", round_num)
                break
            if not started_executor:
                nodes, started_executor = executor.start(), True
            if decisions is None:
                tools = SetupTools(lambda n: first_instructions(files, n, shape), executor.call, layout)
                decisions = recipe.setup(tools)
                manifest.record_setup(decisions)
            ds, expected, extra, positions = round_input(recipe, executor, layout, round_num, files, shape, rounds,
                                                         cfg)
            final = round_num == total_rounds
            counts = run_round(recipe, executor, layout, manifest, round_num, ds, expected, final, decisions, extra,
                               positions)
            rounds.append(counts)
    finally:
        if started_executor:
            executor.stop()
    summary = build_summary(cfg, recipe, rounds, files, skipped, time.perf_counter() - started,
                            manifest.header["config_hash"], nodes, decisions, manifest.recommitted())
    summary["data_shape"] = shape.as_dict()
    write_dataset_info(storage, [r.round for r in rounds], prefix=f"{cfg.recipe.name}_{cfg.model.name}")
    write_json(layout.summary, summary, storage)
    return summary


def round_input(recipe: Recipe, executor: Executor, layout: RunLayout, round_num: int, files, shape,
                rounds: list[RoundCounts], cfg: Config):
    """(dataset, rows expected, extra counts, seed positions) of a round: rows the recipe builds, the seeds, or
    the previous round's kept rows. `positions` gives the input rows' seed_index values when asked (None: the
    round is small by construction and never segmented)."""
    built = recipe.round_input(round_num, layout)
    if built is not None:  # rows the recipe builds on the driver (small by construction)
        return executor.rows(built.batch), len(built.batch["id"]), dict(built.counts), None
    if round_num == 1:
        plan = plan_seeds(cfg, files, shape)
        return executor.seeds(plan), plan.expected, {}, lambda: np.arange(plan.expected, dtype=np.int64)
    previous = layout.data_files(round_num - 1)
    return (executor.read(previous), rounds[-1].rows_out, {},
            lambda: seed_positions(previous, layout.store))


def round_segments(size: int | None, expected: int, positions, expansion, done: list[Path],
                   layout: RunLayout) -> list:
    """The segments a round runs as (state/segments.py), or [None]: one execution for the whole round (segmenting
    off, a round no bigger than a segment, an expanding round, or one whose input the recipe built)."""
    if not size or expected <= size or expansion or positions is None:
        return [None]
    return plan_segments(positions(), size, seed_positions(done, layout.store) if done else None)


def stream_round(recipe: Recipe, executor: Executor, layout: RunLayout, manifest: Manifest, round_num: int, ds,
                 todo: int, expansion: Expansion | None, done: list[Path], decisions: dict, positions) -> None:
    """Stream what a round still has to do (`todo` rows; `done`: its committed shards) through its stages, as one
    execution or one per segment, journaling each shard as it commits."""
    segments = round_segments(recipe.cfg.run.segment_rows, todo, positions, expansion, done, layout)
    if done:
        ds = executor.drop_done(ds, done, round_num)
    if expansion:
        ds = executor.expand(ds, expansion)
    specs, ledger = recipe.stages(round_num, decisions), layout.ledger(round_num)
    for segment in segments:
        # an expanding round's row count is known only at its end: its progress gives rows and rate, no ETA
        part, rows = ds, 0 if expansion else todo
        if segment is not None:
            if not segment.remaining:
                log.info("round %d: segment %d/%d (seed positions %d-%d) committed before, skipped", round_num,
                         segment.index + 1, len(segments), segment.lo, segment.hi - 1)
                continue
            log.info("round %d: segment %d/%d: seed positions %d-%d, %d rows to run", round_num,
                     segment.index + 1, len(segments), segment.lo, segment.hi - 1, segment.remaining)
            part, rows = executor.segment(ds, segment.lo, segment.hi), segment.remaining
        for name, shard_rows, ok in executor.stream(part, specs, round_num, rows, ledger, recipe.cfg.run.shard_rows):
            manifest.record_shard(round_num, name, shard_rows, ok)


def run_round(recipe: Recipe, executor: Executor, layout: RunLayout, manifest: Manifest, round_num: int, ds,
              expected: int, final: bool, decisions: dict, extra: dict, positions=None) -> RoundCounts:
    """One round: stream the input through the stages into committed ledger shards, apply the whole-round steps,
    then split the shards into the round's outputs; every row checked in and out."""
    round_started = time.perf_counter()
    expansion = recipe.expansion(round_num)
    ledger = layout.ledger(round_num)
    committed = manifest.shards(round_num)
    if expansion and committed:
        log.info("round %d expands its rows: restarting it rather than resuming", round_num)
        manifest.reset_round(round_num)
        committed = {}
    drop_orphans(ledger, committed, layout.store)
    reused_rows, reused_shards = sum(e["rows"] for e in committed.values()), len(committed)
    if reused_shards:
        log.info("round %d: %d rows in %d committed shards reused", round_num, reused_rows, reused_shards)
    if reused_rows < expected or (expansion and not committed):
        stream_round(recipe, executor, layout, manifest, round_num, ds, expected - reused_rows, expansion,
                     [ledger / name for name in committed], decisions, positions)
    shards = manifest.shards(round_num)
    files = [ledger / name for name in sorted(shards)]
    written = sum(e["rows"] for e in shards.values())
    if expansion:
        log.info("round %d: %d rows expanded into %d", round_num, expected, written)
        expected = written
    if written != expected:
        raise RowsLost(f"round {round_num}: {expected} rows went in but the committed shards hold {written}")
    layout.store.remove(layout.selected(round_num))
    recorded: dict = {}
    for step in recipe.after_round(round_num, final):
        if (prepare := step.prepare()) is not None:
            files = executor.apply(files, prepare, layout.selected(round_num) / f"{step.name}-prepare")
        plan = step.plan(files, layout.store, executor)
        files = executor.apply(files, step.spec(plan), layout.selected(round_num) / step.name)
        recorded[step.name] = step.record(plan)
    layout.store.remove(layout.data(round_num))
    counts = executor.split(files, layout, round_num)
    counts.selection, counts.steps = recorded.get("select"), recorded
    counts.reused_shards, counts.reused_rows = reused_shards, reused_rows
    counts.sums.update(extra)
    if counts.rows_in != expected:
        raise RowsLost(f"round {round_num}: {expected} rows went in but {counts.rows_in} came out (ok + rejected)")
    manifest.record_round(round_num, counts.state())
    layout.store.remove(ledger)  # every row is now in data/ or rejects/, and journaled
    layout.store.remove(layout.selected(round_num))
    log.info("round %d: %d in, %d out, %d rejected (%s) in %.1f s", round_num, counts.rows_in, counts.rows_out,
             counts.rows_rejected, dict(counts.rejected_by_reason), time.perf_counter() - round_started)
    return counts
