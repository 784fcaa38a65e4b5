"""The runner: the only module that imports ray. Turns a recipe into Ray Data map_batches calls and runs it."""

from __future__ import annotations

import logging
import os
import shutil
import time
from functools import partial
from importlib import resources
from pathlib import Path

import numpy as np
import pyarrow.compute as pc
import pyarrow.parquet as pq
import ray
from ray.data import ActorPoolStrategy, DataContext

from engine.backends.embedded import resolve_model_path
from engine.config import Config, config_hash
from engine.io.readers import SUPPORTED_TEXT, count_rows, iter_records, list_input_files
from engine.io.sinks import RoundCounts, split_round, write_dataset_info, write_json
from engine.records import STATUS_OK
from engine.recipes import StageSpec, get_recipe
from engine.stages.select import RANKINGS, Cut, Select, check_select, plan_cut, selection_active

log = logging.getLogger("engine.runner")


class RowsLost(RuntimeError):
    """A stage or round returned a different number of rows than it was given."""


class GuardedStage:
    """Runs a stage and checks the map_batches contract: exactly as many rows out as in."""

    def __init__(self, stage: type, cfg: Config, torch_threads: int | None = None, **kwargs):
        self.name = stage.__name__
        self.stage = stage(cfg, torch_threads=torch_threads or os.cpu_count(), **kwargs)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        rows_in = len(batch["id"])
        out = self.stage(batch)
        lengths = {name: len(values) for name, values in out.items()}
        if set(lengths.values()) != {rows_in}:
            raise RowsLost(f"stage {self.name} returned column lengths {lengths} for a batch of {rows_in} rows")
        return out


def _run_cheap_stage(batch, stage: type, cfg: Config, kwargs: dict):
    return GuardedStage(stage, cfg, **kwargs)(batch)


def _read_files(batch, limit: int | None, batch_rows: int):
    """Parse seed files into records (valid or rejected); generator, so big files stream as many blocks."""
    for path, offset in zip(batch["path"], batch["offset"]):
        for records in iter_records(Path(path), int(offset), batch_rows):
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


def apply_stage(ds: "ray.data.Dataset", spec: StageSpec, cfg: Config) -> "ray.data.Dataset":
    """One stage as a map_batches call: model stages in an actor pool, cheap stages as tasks."""
    cluster = cfg.cluster
    if not spec.uses_model:
        fn = partial(_run_cheap_stage, stage=spec.stage, cfg=cfg, kwargs=spec.kwargs)
        return ds.map_batches(
            fn, batch_size=cluster.cpu_batch_size, num_cpus=cluster.actor_num_cpus, udf_modifying_row_count=False
        )
    resources_ = {"num_cpus": cluster.actor_num_cpus}
    if cluster.actor_num_gpus:
        resources_["num_gpus"] = cluster.actor_num_gpus
    return ds.map_batches(
        GuardedStage,
        fn_constructor_kwargs={"stage": spec.stage, "cfg": cfg, "torch_threads": cluster.torch_threads, **spec.kwargs},
        batch_size=cluster.batch_size,
        compute=ActorPoolStrategy(size=cluster.pool_size),
        udf_modifying_row_count=False,  # stages are one-to-one; GuardedStage enforces it
        **resources_,
    )


def seed_source(cfg: Config) -> Path:
    """The seed data path: data.path, or the demo seeds packaged with the engine."""
    if cfg.data.path:
        return Path(cfg.data.path).expanduser()
    return Path(str(resources.files("engine") / "data" / "demo_seeds.jsonl"))


def read_seeds(cfg: Config, files: list[Path]) -> tuple["ray.data.Dataset", int]:
    """The seed dataset (one read task per file) and the number of rows it will hold."""
    items, offset = [], 0
    for path in files:
        items.append({"path": str(path), "offset": offset})
        offset += count_rows(path)
    expected = offset if cfg.data.limit is None else min(offset, cfg.data.limit)
    ds = ray.data.from_items(items, override_num_blocks=max(1, len(items)))
    ds = ds.map_batches(
        partial(_read_files, limit=cfg.data.limit, batch_rows=cfg.cluster.read_batch_rows), batch_size=1, num_cpus=0.25
    )
    return ds, expected


def stage_sized_blocks(ds: "ray.data.Dataset", cfg: Config) -> "ray.data.Dataset":
    """Stream the rows in blocks of one stage batch, so stages pipeline and every actor of a pool gets work
    (a whole file would otherwise travel as one block through every stage)."""
    return ds.repartition(target_num_rows_per_block=cfg.cluster.batch_size)


def run(cfg: Config) -> dict:
    """Run the recipe for `cfg.rounds` rounds and write every output; returns the run summary."""
    started = time.perf_counter()
    out = Path(cfg.run.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    recipe = get_recipe(cfg.recipe.name)
    check_select(cfg.select, cfg.scoring.enabled)
    files, skipped = list_input_files(seed_source(cfg))
    for path in skipped:
        log.warning("skipping %s: unsupported file type (supported: %s)", path, SUPPORTED_TEXT)
    # Build/convert embedded models once here, so actors only load them.
    resolve_model_path(cfg.model)
    if cfg.scoring.enabled:
        resolve_model_path(cfg.scorer)
    started_ray = init_ray(cfg)
    context = DataContext.get_current()
    context.max_errored_blocks = cfg.cluster.max_errored_blocks
    context.enable_progress_bars = cfg.run.progress
    rounds: list[RoundCounts] = []
    try:
        for round_num in range(1, cfg.rounds + 1):
            if round_num == 1:
                ds, expected = read_seeds(cfg, files)
            else:
                expected = rounds[-1].rows_out
                if expected == 0:
                    log.warning("round %d has no surviving rows to evolve; stopping", round_num)
                    break
                ds = ray.data.read_parquet(str(out / "data" / f"round_{round_num - 1}"))
            rounds.append(_run_round(ds, recipe, cfg, round_num, expected, out, final=round_num == cfg.rounds))
    finally:
        if started_ray:
            ray.shutdown()
    summary = build_summary(cfg, rounds, files, skipped, time.perf_counter() - started)
    write_dataset_info(out, [r.round for r in rounds], prefix=f"{cfg.recipe.name}_{cfg.model.name}")
    write_json(out / "summary.json", summary)
    return summary


def _run_round(ds, recipe, cfg: Config, round_num: int, expected: int, out: Path, final: bool) -> RoundCounts:
    round_started = time.perf_counter()
    ds = stage_sized_blocks(ds, cfg)
    for spec in recipe.stages(cfg, round_num):
        ds = apply_stage(ds, spec, cfg)
    ledger = out / "_ledger" / f"round_{round_num}"
    selected = out / "_ledger" / f"round_{round_num}_selected"
    for stale in (ledger, selected, out / "data" / f"round_{round_num}"):
        shutil.rmtree(stale, ignore_errors=True)
    ds.write_parquet(str(ledger))
    cut = None
    if final and selection_active(cfg.select):
        cut = plan_selection(ledger, cfg)
        spec = StageSpec(Select, {"round_num": round_num, "cut": cut})
        apply_stage(ray.data.read_parquet(str(ledger)), spec, cfg).write_parquet(str(selected))
        ledger = selected
    counts = split_round(ledger, out, round_num)
    shutil.rmtree(out / "_ledger", ignore_errors=True)  # every row is now in data/ or rejects/
    counts.selection = cut.as_dict() if cut else None
    if counts.rows_in != expected:
        raise RowsLost(f"round {round_num}: {expected} rows went in but {counts.rows_in} came out (ok + rejected)")
    log.info(
        "round %d: %d in, %d out, %d rejected (%s) in %.1f s", round_num, counts.rows_in, counts.rows_out,
        counts.rows_rejected, dict(counts.rejected_by_reason), time.perf_counter() - round_started,
    )
    return counts


def plan_selection(ledger: Path, cfg: Config) -> Cut:
    """Phase 1 of selection: the exact global cut over every ok row of the round (only three columns read)."""
    column = RANKINGS[cfg.select.by][0]
    table = pq.read_table(ledger, columns=["status", "id", "ifd", column])
    table = table.filter(pc.equal(table["status"], STATUS_OK))
    scores = table[column].to_numpy(zero_copy_only=False).astype(np.float64)
    cut = plan_cut(scores, table["id"].to_numpy(zero_copy_only=False), table["ifd"].to_numpy(zero_copy_only=False),
                   cfg.select)
    log.info("selection by %s: keep %d of %d, cut value %s", cut.by, cut.kept, cut.candidates, cut.value)
    return cut


def build_summary(cfg: Config, rounds: list[RoundCounts], files, skipped, wall: float) -> dict:
    """The run summary: rows conserved overall (in = final out + every rejection) and per round."""
    rows_in = rounds[0].rows_in if rounds else 0
    rows_out = rounds[-1].rows_out if rounds else 0
    rejected = sum(r.rows_rejected for r in rounds)
    by_reason: dict[str, int] = {}
    per_method: dict[str, dict[str, int]] = {}
    tokens: dict[str, int] = {}
    for r in rounds:
        for reason, n in r.rejected_by_reason.items():
            by_reason[reason] = by_reason.get(reason, 0) + n
        for method, counter in r.per_method.items():
            slot = per_method.setdefault(method, {})
            for key, n in counter.items():
                slot[key] = slot.get(key, 0) + n
        for key, n in r.tokens.items():
            tokens[key] = tokens.get(key, 0) + n
    return {
        "recipe": cfg.recipe.name,
        "model": cfg.model.name,
        "config_hash": config_hash(cfg),
        "rounds_requested": cfg.rounds,
        "rounds_completed": len(rounds),
        "rows_in": rows_in,
        "rows_out": rows_out,
        "rows_rejected": rejected,
        "rows_conserved": rows_in == rows_out + rejected,
        "rejected_by_reason": dict(sorted(by_reason.items())),
        "per_method": dict(sorted(per_method.items())),
        "per_round": [r.as_dict() for r in rounds],
        "tokens": tokens,
        "scores": rounds[-1].score_means() if rounds else {},
        "selection": rounds[-1].selection if rounds else None,
        "wall_time_s": round(wall, 3),
        "input_files": [str(f) for f in files],
        "skipped_files": [str(f) for f in skipped],
        "outputs": {
            "data": [f"data/round_{r.round}" for r in rounds],
            "alpaca": [f"alpaca/round_{r.round}.jsonl" for r in rounds],
            "rejects": [f"rejects/round_{r.round}.jsonl" for r in rounds],
        },
    }
