"""The runner: the only module that imports ray. Turns a recipe into Ray Data map_batches calls and runs it."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from importlib import resources
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import ray
from ray.data import ActorPoolStrategy, DataContext

from engine.backends.embedded import resolve_model_path
from engine.backends.vllm_config import check_backend_available
from engine.config import Config, ConfigError, config_hash
from engine.io.manifest import Manifest, ResumeRefused, input_fingerprint
from engine.io.readers import SUPPORTED_TEXT, ReadPolicy, count_rows, find_duplicate_ids, iter_records
from engine.io.readers import list_input_files
from engine.io.exporters import EXPORT_FORMATS
from engine.io.inputs import check_schema, hf_cache_files, resolve_shape
from engine.io.shapes import Shape
from engine.io.sinks import RoundCounts, join_parts, split_round, split_shard, write_dataset_info, write_json
from engine.records import STATUS_OK
from engine.recipes import StageSpec, get_recipe
from engine.stages import output_space
from engine.stages.guard import RowsLost, StageChain
from engine.stages.select import RANKINGS, Cut, Select, check_select, plan_cut, selection_active
from engine import throughput

log = logging.getLogger("engine.runner")


def _run_cheap_stages(batch, steps: list[tuple[type, dict]], cfg: Config, progress=None):
    return StageChain(steps, cfg, progress=progress)(batch)


def _read_files(batch, limit: int | None, batch_rows: int, policy: ReadPolicy):
    """Parse seed files into records (valid or rejected); generator, so big files stream as many blocks."""
    for path, offset in zip(batch["path"], batch["offset"]):
        for records in iter_records(Path(path), int(offset), batch_rows, policy):
            if limit is not None:
                keep = np.asarray(records["seed_index"]) < limit
                if not keep.all():
                    records = {name: values[keep] for name, values in records.items()}
            if len(records["id"]):
                yield records


def init_ray(cfg: Config) -> bool:
    """Join RAY_ADDRESS / cluster.address when given, else start a local Ray; True if this call started it."""
    if ray.is_initialized():
        return False
    address = cfg.cluster.address or os.environ.get("RAY_ADDRESS")
    if address:
        ray.init(address=address)
    else:
        # address="local": always a new local Ray, never a stray cluster left by `ray start` on this machine.
        ray.init(address="local", num_cpus=cfg.cluster.num_cpus, include_dashboard=False)
    return True


@contextmanager
def ray_session(cfg: Config):
    """One Ray for several runs in this process (an evolver comparison): joined or started here, so the runs
    inside find it up and leave it; shut down at the end only if this started it."""
    started = init_ray(cfg)
    try:
        yield
    finally:
        if started:
            ray.shutdown()


def prepare_ray(cfg: Config) -> bool:
    """Build/convert embedded models once (actors then only load them), join or start Ray, set Ray Data's
    context; True if this call started Ray."""
    check_backend_available(cfg)  # vLLM installed, paths and GPU sizes given: one clear sentence, not an actor crash
    resolve_model_path(cfg.model)
    if cfg.scoring.enabled:
        resolve_model_path(cfg.scorer)
    started = init_ray(cfg)
    context = DataContext.get_current()
    context.max_errored_blocks = cfg.cluster.max_errored_blocks
    set_progress(context, cfg)
    return started


# Ray Data's memory advice is a 9-line block; below verbose it comes at most this often.
QUIET_DETECTOR_INTERVAL_S = 600


def set_progress(context: DataContext, cfg: Config) -> None:
    """Ray Data's own output for run.progress: its progress bars only when verbose, and its periodic
    high-memory advice every QUIET_DETECTOR_INTERVAL_S instead of every 30 s unless verbose."""
    verbose = progress_mode(cfg.run.progress) == "verbose"
    context.enable_progress_bars = verbose
    memory = context.issue_detectors_config.high_memory_detector_config
    if not verbose and memory.detection_time_interval_s != -1:
        memory.detection_time_interval_s = max(memory.detection_time_interval_s, QUIET_DETECTOR_INTERVAL_S)


def progress_mode(value) -> str:
    """run.progress as one of line | verbose | off (true and false, from older configs, mean line and off)."""
    mode = {"true": "line", "false": "off"}.get(str(value).lower(), str(value).lower())
    if mode not in ("line", "verbose", "off"):
        raise ConfigError(f"run.progress={value!r}: use line, verbose or off")
    return mode


class ProgressBoard:
    """Rows each stage has finished in this round, as its actors report them; the driver reads it to log."""

    def __init__(self):
        self.rows: dict[str, int] = {}

    def add(self, stage: str, rows: int) -> None:
        self.rows[stage] = self.rows.get(stage, 0) + rows

    def totals(self) -> dict[str, int]:
        return dict(self.rows)


class ReportProgress:
    """What a StageChain calls after each batch: tells the board without waiting for it."""

    def __init__(self, board):
        self.board = board

    def __call__(self, stage: str, rows: int) -> None:
        self.board.add.remote(stage, rows)


@contextmanager
def progress_lines(cfg: Config, round_num: int, expected: int):
    """Unless run.progress=off: a board the stages report to, and a driver thread that logs one line per stage
    (rows done, rows/s, ETA) every run.progress_interval_s; yields the reporter to hand the stages (or None)."""
    if progress_mode(cfg.run.progress) == "off":
        yield None
        return
    board = ray.remote(num_cpus=0)(ProgressBoard).remote()
    stop, started = threading.Event(), time.perf_counter()

    def watch() -> None:
        while not stop.wait(cfg.run.progress_interval_s):
            for stage, done in ray.get(board.totals.remote()).items():
                log.info("%s", throughput.progress_line(round_num, stage, done, expected,
                                                         time.perf_counter() - started))

    thread = threading.Thread(target=watch, name="progress", daemon=True)
    thread.start()
    try:
        yield ReportProgress(board)
    finally:
        stop.set()
        thread.join()
        ray.kill(board)


def first_instructions(files: list[Path], n: int, shape: Shape | None = None) -> list[str]:
    """The instructions of the first `n` valid seed rows, read on the driver (a recipe's small warm-up sample)."""
    found: list[str] = []
    for path in files:
        for records in iter_records(path, 0, batch_rows=max(1, n), policy=ReadPolicy(shape=shape or Shape())):
            found += [str(t) for t, s in zip(records["instruction"], records["status"]) if s == STATUS_OK]
            if len(found) >= n:
                return found[:n]
    return found


def call_in_actor(cfg: Config, cls: type, method: str, *args):
    """Construct `cls(cfg)` in one Ray actor (with the model stages' resources), call `method(*args)` there and
    return its result; for a recipe's one-off model work such as the Auto Evol-Instruct optimizer."""
    cluster = cfg.cluster
    options = {"num_cpus": cluster.actor_num_cpus, **({"num_gpus": cluster.actor_num_gpus} if cluster.actor_num_gpus else {})}
    actor = ray.remote(cls).options(**options).remote(cfg, torch_threads=cluster.torch_threads)
    try:
        return ray.get(getattr(actor, method).remote(*args))
    finally:
        ray.kill(actor)


def group_stages(specs: list[StageSpec], fuse: bool = False) -> list[list[StageSpec]]:
    """Each model stage with the cheap stages that follow it (they run in its actor); leading cheap stages alone.
    `fuse` (cluster.fuse_stages): every stage in one group, so one actor pool runs them all and loads each
    model once per actor instead of once per pool."""
    if fuse and any(spec.uses_model for spec in specs):
        return [list(specs)]
    groups: list[list[StageSpec]] = []
    for spec in specs:
        if spec.uses_model or not groups:
            groups.append([spec])
        else:
            groups[-1].append(spec)
    return groups


def apply_stages(ds: "ray.data.Dataset", specs: list[StageSpec], cfg: Config, progress=None) -> "ray.data.Dataset":
    """The recipe's stages as map_batches calls: one actor pool per model stage (the cheap stages after it run in
    the same actors), with the cluster's failure policy: a dead actor is restarted and its batches retried.
    `progress` (from progress_lines) is handed to every stage chain."""
    for group in group_stages(specs, cfg.cluster.fuse_stages):
        ds = _apply_group(ds, group, cfg, progress)
    return ds


def _apply_group(ds: "ray.data.Dataset", group: list[StageSpec], cfg: Config, progress=None) -> "ray.data.Dataset":
    cluster = cfg.cluster
    steps = [(spec.stage, spec.kwargs) for spec in group]
    # Ray 2.60 has no named map_batches parameter for retry policy yet: it goes in as remote args.
    if not any(spec.uses_model for spec in group):
        # batch_size=None: each block as it comes (blocks are stage-batch sized), never waiting to fill a batch.
        return ds.map_batches(
            partial(_run_cheap_stages, steps=steps, cfg=cfg, progress=progress), batch_size=None,
            num_cpus=cluster.actor_num_cpus,
            udf_modifying_row_count=False, max_retries=cluster.task_max_retries,
        )
    resources_ = {"num_cpus": cluster.actor_num_cpus}
    if cluster.actor_num_gpus:
        resources_["num_gpus"] = cluster.actor_num_gpus
    return ds.map_batches(
        StageChain,
        fn_constructor_kwargs={"steps": steps, "cfg": cfg, "torch_threads": cluster.torch_threads, "pooled": True,
                               "progress": progress},
        batch_size=cluster.batch_size,
        compute=ActorPoolStrategy(size=cluster.pool_size),
        udf_modifying_row_count=False,  # stages are one-to-one; GuardedStage enforces it
        max_restarts=cluster.actor_max_restarts,
        max_task_retries=cluster.actor_max_task_retries,
        **resources_,
    )


def seed_source(cfg: Config) -> Path:
    """The seed data path: data.path, or the demo seeds packaged with the engine."""
    if cfg.data.path:
        return Path(cfg.data.path).expanduser()
    return Path(str(resources.files("engine") / "data" / "demo_seeds.jsonl"))


@dataclass(frozen=True)
class SeedPlan:
    """The seed inputs, each with the position of its first row, and what reading them must know."""

    items: list[dict]  # {"path", "offset"} per input
    expected: int  # rows the seed dataset will hold (after data.limit)
    policy: ReadPolicy


def plan_seeds(cfg: Config, files: list[Path], shape: Shape | None = None) -> SeedPlan:
    """Count every input's row slots (positions are global) and find repeated `id` fields, on the driver."""
    shape = shape or Shape()
    items, offset = [], 0
    for path in files:
        items.append({"path": str(path), "offset": offset})
        offset += count_rows(path)
    expected = offset if cfg.data.limit is None else min(offset, cfg.data.limit)
    duplicates = find_duplicate_ids([(Path(item["path"]), item["offset"]) for item in items], shape)
    if duplicates:
        log.warning("%d rows repeat an earlier row's id; they go to rejects (duplicate_id)", len(duplicates))
    policy = ReadPolicy(max_chars=cfg.data.max_chars, long_rows=cfg.data.long_rows, duplicates=duplicates,
                        shape=shape)
    return SeedPlan(items, expected, policy)


def read_seeds(cfg: Config, plan: SeedPlan) -> "ray.data.Dataset":
    """The seed dataset: one read task per input file."""
    ds = ray.data.from_items(plan.items, override_num_blocks=max(1, len(plan.items)))
    read = partial(_read_files, limit=cfg.data.limit, batch_rows=cfg.cluster.read_batch_rows, policy=plan.policy)
    return ds.map_batches(read, batch_size=1, num_cpus=0.25, max_retries=cfg.cluster.task_max_retries)


def stage_sized_blocks(ds: "ray.data.Dataset", cfg: Config) -> "ray.data.Dataset":
    """Stream the rows in blocks of one stage batch, so stages pipeline and every actor of a pool gets work
    (a whole file would otherwise travel as one block through every stage)."""
    return ds.repartition(target_num_rows_per_block=cfg.cluster.batch_size)


# Outputs the engine owns in an output directory; a fresh run clears them (config.yaml and .hydra stay).
ENGINE_OUTPUTS = ("data", "alpaca", "sharegpt", "messages", "rejects", "_ledger", "summary.json", "dataset_info.json")


def run(cfg: Config, config_text: str | None = None) -> dict:
    """Run the recipe for `cfg.rounds` rounds and write every output; returns the run summary.

    Resumable: every completed ledger shard and round is journaled in the manifest, and a rerun with the same
    config and inputs skips them (`run.resume=false` starts over). `config_text`, the resolved config as YAML,
    is saved as config.yaml once the output directory is known to belong to this run."""
    started = time.perf_counter()
    out = Path(cfg.run.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    recipe = get_recipe(cfg.recipe.name)
    check_select(cfg.select, cfg.scoring.enabled)
    files, skipped = (hf_cache_files(cfg.data), []) if cfg.data.source == "hf" else list_input_files(seed_source(cfg))
    for path in skipped:
        log.warning("skipping %s: unsupported file type (supported: %s)", path, SUPPORTED_TEXT)
    shape = resolve_shape(cfg.data, files)  # before any model loads: a file the engine cannot read stops here
    check_schema(files, shape, cfg.data, cfg.data.schema_check_rows)
    try:
        digest = config_hash(cfg, {"data_shape": shape.as_dict()})
        manifest = Manifest.open(out, digest, input_fingerprint(files), cfg.run.resume, shape.as_dict())
    except ResumeRefused as err:
        raise ConfigError(str(err)) from err
    if config_text is not None:
        (out / "config.yaml").write_text(config_text)
    if not manifest.entries:  # a fresh run: nothing of an earlier one may mix in
        for name in ENGINE_OUTPUTS:
            target = out / name
            shutil.rmtree(target) if target.is_dir() else target.unlink(missing_ok=True)
    rounds: list[RoundCounts] = []
    started_ray = prepared = False
    nodes = 1
    try:
        total_rounds = recipe_rounds(recipe, cfg)
        for round_num in range(1, total_rounds + 1):
            if (done := manifest.round_counts(round_num)) is not None:
                log.info("round %d: complete in the manifest, not recomputed", round_num)
                rounds.append(RoundCounts.from_state(done))
                continue
            if rounds and rounds[-1].rows_out == 0:
                log.warning("round %d has no surviving rows to work on; stopping", round_num)
                break
            if not prepared:
                started_ray, prepared = prepare_ray(cfg), True
                nodes = max(1, sum(1 for node in ray.nodes() if node.get("Alive")))
                if hasattr(recipe, "before_rounds"):
                    recipe.before_rounds(cfg, out, partial(first_instructions, files, shape=shape),
                                         partial(call_in_actor, cfg))
            built = recipe.round_input(cfg, round_num, out) if hasattr(recipe, "round_input") else None
            expansion = recipe.expand(cfg, round_num) if hasattr(recipe, "expand") else None
            extra: dict = {}
            if built is not None:  # rows the recipe builds on the driver (small by construction)
                batch, extra = built
                ds, expected = ray.data.from_arrow(pa.table(batch)), len(batch["id"])
            elif round_num == 1:
                plan = plan_seeds(cfg, files, shape)
                ds, expected = read_seeds(cfg, plan), plan.expected
            else:
                expected = rounds[-1].rows_out
                ds = ray.data.read_parquet(str(out / "data" / f"round_{round_num - 1}"))
            final = round_num == total_rounds
            counts = _run_round(ds, recipe, cfg, round_num, expected, out, manifest, final, expansion, extra)
            rounds.append(counts)
    finally:
        if started_ray:
            ray.shutdown()
    summary = build_summary(cfg, recipe, rounds, files, skipped, time.perf_counter() - started,
                            manifest.header["config_hash"], nodes)
    summary["data_shape"] = shape.as_dict()
    write_dataset_info(out, [r.round for r in rounds], prefix=f"{cfg.recipe.name}_{cfg.model.name}")
    write_json(out / "summary.json", summary)
    return summary


def _run_round(ds, recipe, cfg: Config, round_num: int, expected: int, out: Path, manifest: Manifest,
               final: bool, expansion=None, extra: dict | None = None) -> RoundCounts:
    """One round: stream the input through the stages into committed ledger shards, then write its outputs.

    `expansion` is a one-to-many step (function, kwargs) run before the stages; such a round's output rows
    cannot be matched back to input rows shard by shard, so an interrupted one restarts instead of resuming."""
    round_started = time.perf_counter()
    ledger = out / "_ledger" / f"round_{round_num}"
    committed = manifest.shards(round_num)
    if expansion and committed:
        log.info("round %d expands its rows: restarting it rather than resuming", round_num)
        manifest.reset_round(round_num)
        committed = {}
    drop_orphans(ledger, committed)
    reused_rows, reused_shards = sum(e["rows"] for e in committed.values()), len(committed)
    if reused_shards:
        log.info("round %d: %d rows in %d committed shards reused", round_num, reused_rows, reused_shards)
    if reused_rows < expected or (expansion and not committed):
        if committed:
            ds = drop_done(ds, [ledger / name for name in committed], round_num)
        if expansion:
            fn, kwargs = expansion
            ds = ds.map_batches(partial(fn, **kwargs), batch_size=None, udf_modifying_row_count=True, num_cpus=0.25,
                                max_retries=cfg.cluster.task_max_retries)
        ds = stage_sized_blocks(ds, cfg)
        # an expanding round's row count is known only at its end: its lines give rows and rate, no ETA
        with progress_lines(cfg, round_num, 0 if expansion else expected - reused_rows) as progress:
            ds = apply_stages(ds, recipe.stages(cfg, round_num), cfg, progress)
            commit_shards(ds, ledger, round_num, manifest, cfg)
    shards = manifest.shards(round_num)
    files = [ledger / name for name in sorted(shards)]
    written = sum(e["rows"] for e in shards.values())
    if expansion:
        log.info("round %d: %d rows expanded into %d", round_num, expected, written)
        expected = written
    if written != expected:
        raise RowsLost(f"round {round_num}: {expected} rows went in but the committed shards hold {written}")
    selected = out / "_ledger" / f"round_{round_num}_selected"
    shutil.rmtree(selected, ignore_errors=True)
    cut = None
    if final and selection_active(cfg.select):
        cut = plan_selection(files, cfg)
        spec = StageSpec(Select, {"round_num": round_num, "cut": cut})
        apply_stages(ray.data.read_parquet([str(f) for f in files]), [spec], cfg).write_parquet(str(selected))
        files = sorted(selected.glob("*.parquet"))
    shutil.rmtree(out / "data" / f"round_{round_num}", ignore_errors=True)
    counts = split_shards(files, out, round_num, cfg)
    counts.selection = cut.as_dict() if cut else None
    counts.reused_shards, counts.reused_rows = reused_shards, reused_rows
    counts.sums.update(extra or {})
    if counts.rows_in != expected:
        raise RowsLost(f"round {round_num}: {expected} rows went in but {counts.rows_in} came out (ok + rejected)")
    manifest.record_round(round_num, counts.state())
    shutil.rmtree(ledger, ignore_errors=True)  # every row is now in data/ or rejects/, and journaled
    shutil.rmtree(selected, ignore_errors=True)
    log.info(
        "round %d: %d in, %d out, %d rejected (%s) in %.1f s", round_num, counts.rows_in, counts.rows_out,
        counts.rows_rejected, dict(counts.rejected_by_reason), time.perf_counter() - round_started,
    )
    return counts


def _split_shards(batch, out: str, round_num: int) -> dict:
    counts = [split_shard(Path(f), Path(out), round_num, int(i)) for f, i in zip(batch["file"], batch["index"])]
    return {"counts": np.array([json.dumps(c.state()) for c in counts], dtype=object)}


def split_shards(files: list[Path], out: Path, round_num: int, cfg: Config) -> RoundCounts:
    """The round's outputs from its ledger shards: one Ray task per shard writes its data, alpaca and rejects
    parts (the driver never holds rows), then the driver adds up the counts and joins the parts."""
    if not files:
        return split_round([], out, round_num)
    items = [{"file": str(f), "index": i} for i, f in enumerate(files)]
    done = ray.data.from_items(items, override_num_blocks=len(items)).map_batches(
        partial(_split_shards, out=str(out), round_num=round_num), batch_size=1, num_cpus=0.25,
        max_retries=cfg.cluster.task_max_retries,
    )
    counts = RoundCounts(round=round_num)
    for row in done.iter_rows():
        counts.merge(RoundCounts.from_state(json.loads(row["counts"])))
    join_parts(out, round_num, len(files))
    return counts


def drop_orphans(ledger: Path, committed: dict) -> None:
    """Delete ledger files the manifest does not list: written, but the run died before journaling them."""
    for path in ledger.glob("*") if ledger.is_dir() else ():
        if path.name not in committed:
            log.info("removing uncommitted %s", path)
            path.unlink()


def _done_keys(files: list[Path], round_num: int) -> pa.Array:
    """The round-input ids the committed shards already hold: the parent of an evolved row, else its own id."""
    keys = []
    for path in files:
        table = pq.read_table(path, columns=["id", "parent_id", "round"])
        evolved = pc.equal(table["round"], round_num)
        keys.append(pc.if_else(evolved, table["parent_id"], table["id"]).combine_chunks())
    return pa.concat_arrays(keys) if keys else pa.array([], pa.string())


def _drop_rows(batch: pa.Table, done) -> pa.Table:
    return batch.filter(pc.invert(pc.is_in(batch["id"], value_set=ray.get(done))))


def drop_done(ds: "ray.data.Dataset", files: list[Path], round_num: int) -> "ray.data.Dataset":
    """The round's input without the rows committed shards already hold (resume)."""
    done = ray.put(_done_keys(files, round_num))
    return ds.map_batches(partial(_drop_rows, done=done), batch_format="pyarrow", batch_size=None, num_cpus=0.25)


def _commit_shard(batch: pa.Table, ledger: str) -> pa.Table:
    """Write one shard of the round's ledger atomically. Its name is a digest of its row ids, so a retried
    task rewrites the same file instead of adding a second copy of its rows."""
    if batch.num_rows == 0:
        return pa.table({"file": pa.array([], pa.string()), "rows": pa.array([], pa.int64()),
                         "ok": pa.array([], pa.int64())})
    digest = hashlib.blake2b(digest_size=10)
    for row_id in batch["id"].to_pylist():
        digest.update(row_id.encode("utf-8", "surrogatepass") + b"\x1f")
    name = f"part-{digest.hexdigest()}.parquet"
    target = Path(ledger) / name
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{name}.{os.getpid()}.tmp")
    pq.write_table(batch, tmp)
    os.replace(tmp, target)
    ok = int(pc.sum(pc.equal(batch["status"], STATUS_OK)).as_py() or 0)
    return pa.table({"file": [name], "rows": [batch.num_rows], "ok": [ok]})


def commit_shards(ds: "ray.data.Dataset", ledger: Path, round_num: int, manifest: Manifest, cfg: Config) -> None:
    """Stream the round into ledger shards of about `run.shard_rows` rows; journal each as it lands."""
    written = ds.map_batches(
        partial(_commit_shard, ledger=str(ledger)), batch_format="pyarrow", batch_size=cfg.run.shard_rows,
        num_cpus=0.25, max_retries=cfg.cluster.task_max_retries, udf_modifying_row_count=True,
    )
    for row in written.iter_rows():
        manifest.record_shard(round_num, row["file"], int(row["rows"]), int(row["ok"]))


def plan_selection(files: list[Path], cfg: Config) -> Cut:
    """Phase 1 of selection: the exact global cut over every ok row of the round (only three columns read)."""
    column = RANKINGS[cfg.select.by][0]
    table = pa.concat_tables(pq.read_table(f, columns=["status", "id", "ifd", column]) for f in files)
    table = table.filter(pc.equal(table["status"], STATUS_OK))
    scores = table[column].to_numpy(zero_copy_only=False).astype(np.float64)
    cut = plan_cut(scores, table["id"].to_numpy(zero_copy_only=False), table["ifd"].to_numpy(zero_copy_only=False),
                   cfg.select)
    log.info("selection by %s: keep %d of %d, cut value %s", cut.by, cut.kept, cut.candidates, cut.value)
    return cut


def build_summary(cfg: Config, recipe, rounds: list[RoundCounts], files, skipped, wall: float,
                  config_digest: str, nodes: int = 1) -> dict:
    """The run summary: rows conserved overall (in = final out + every rejection) and per round, plus what the
    recipe itself reports (e.g. AutoIF's pass rate at every filter). `config_digest` is the manifest's hash of
    the config as given (a recipe may fill in more, e.g. the optimized Auto Evol-Instruct method)."""
    rows_in = rounds[0].rows_in if rounds else 0
    rows_out = rounds[-1].rows_out if rounds else 0
    rejected = sum(r.rows_rejected for r in rounds)
    total = RoundCounts(round=0)
    for r in rounds:
        total.merge(r)
    totals = total.as_dict()
    phased = hasattr(recipe, "num_rounds")
    summary = {
        "recipe": cfg.recipe.name,
        "model": cfg.model.name,
        "config_hash": config_digest,
        "rounds_requested": recipe_rounds(recipe, cfg),
        "rounds_completed": len(rounds),
        "rows_in": rows_in,
        "rows_out": rows_out,
        "rows_rejected": rejected,
        # Chained recipes (Evol-Instruct) pass rows round to round; phased ones (AutoIF) build each phase's input.
        "rows_conserved": all(r.rows_in == r.rows_out + r.rows_rejected for r in rounds) if phased
        else rows_in == rows_out + rejected,
        **{key: totals[key] for key in ("rejected_by_reason", "rejected_by_method", "rejected_by_model",
                                        "per_method")},
        "per_round": [r.as_dict() for r in rounds],
        "tokens": totals["tokens"],
        "counts": totals["counts"],
        "resumed": {"shards_reused": sum(r.reused_shards for r in rounds),
                    "rows_reused": sum(r.reused_rows for r in rounds)},
        "scores": rounds[-1].score_means() if rounds else {},
        "output_space": output_space.summarise(total.output_space),
        "selection": rounds[-1].selection if rounds else None,
        "wall_time_s": round(wall, 3),
        "input_files": [str(f) for f in files],
        "skipped_files": [str(f) for f in skipped],
        "outputs": {
            "data": [f"data/round_{r.round}" for r in rounds],
            **{kind: [f"{kind}/round_{r.round}.jsonl" for r in rounds] for kind in EXPORT_FORMATS},
            "rejects": [f"rejects/round_{r.round}.jsonl" for r in rounds],
        },
    }
    if hasattr(recipe, "summarise"):
        summary[cfg.recipe.name] = recipe.summarise([r.as_dict() for r in rounds])
    # Per-stage accounting from the actors' own timings, and what the run (and a million seeds) costs.
    summary["stages"] = [entry for r in rounds for entry in throughput.stage_figures(r.round, r.stages)]
    cost = {"gpu_hour_usd": cfg.run.cost.gpu_hour_usd, "cpu_hour_usd": cfg.run.cost.cpu_hour_usd}
    summary["throughput"] = throughput.throughput(summary["stages"], rows_in, rows_out, wall,
                                                  cfg.cluster.actor_num_gpus, nodes, cost)
    return summary


def recipe_rounds(recipe, cfg: Config) -> int:
    """How many rounds the recipe runs: `rounds` for Evol-Instruct, a fixed number of phases for others."""
    return recipe.num_rounds(cfg) if hasattr(recipe, "num_rounds") else cfg.rounds


def analyse(cfg: Config, source: list[Path] | pa.Table, columns: list[str] | None, specs: list[StageSpec],
            sink) -> None:
    """The analysis suite's model stages (engine.analyze, engine.judge) over rows read from `source` (Parquet
    files, reading `columns`, or a table built on the driver): run `specs` in actor pools, and hand each output
    batch to `sink` on the driver as it arrives."""
    if any(spec.stage.__name__ in ("Judge", "PairwiseJudge") for spec in specs):
        check_backend_available(cfg)
        resolve_model_path(cfg.model)
    started = init_ray(cfg)
    try:
        set_progress(DataContext.get_current(), cfg)
        if isinstance(source, pa.Table):
            ds = ray.data.from_arrow(source)
        else:
            ds = ray.data.read_parquet([str(f) for f in source]).select_columns(columns)
        ds = apply_stages(stage_sized_blocks(ds, cfg), specs, cfg)
        for batch in ds.iter_batches(batch_size=None, batch_format="numpy"):
            batch.pop(throughput.STATS_COLUMN, None)  # the stages' timings, not a column of the analysis
            sink(batch)
    finally:
        if started:
            ray.shutdown()
