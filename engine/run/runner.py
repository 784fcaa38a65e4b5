"""The Ray executor: the only module that imports ray. It turns a round's stage specs into Ray Data map_batches
calls with each stage's own resources, and runs the read, commit and split tasks; what to run comes from the
recipe through engine/run/pipeline.py, which is Ray-free."""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
import uuid
from contextlib import contextmanager
from functools import partial
from pathlib import Path

import numpy as np
import pyarrow as pa
import ray
from ray.data import ActorPoolStrategy, DataContext

from engine.backends.embedded import resolve_model_path
from engine.backends.vllm_config import check_backend_available
from engine.config import Config
from engine.read.seeds import SeedPlan, read_files
from engine.recipes.base import Expansion
from engine.recipes.resources import concurrent_calls, fuses, group_resources, group_stages
from engine.recipes.spec import StageSpec
from engine.run import accounting, pipeline
from engine.run.chain import StageChain
from engine.run.counts import RoundCounts
from engine.run.progress import ProgressBoard, progress_mode
from engine.state.layout import RunLayout
from engine.state.ledger import commit_shard, done_keys, without_done
from engine.state.segments import in_segment
from engine.state.storage import Storage
from engine.write.sinks import join_parts, split_round, split_shard

log = logging.getLogger("engine.run.runner")
CHEAP_TASK_CPUS = 0.25  # read, commit, split and expansion tasks


def run(cfg: Config, config_text: str | None = None) -> dict:
    """Run `cfg`'s recipe on Ray (engine/run/pipeline.py); returns the run summary."""
    return pipeline.run(cfg, RayExecutor(cfg), config_text)


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


class ReportProgress:
    """What a StageChain calls after each batch: tells the board without waiting for it."""

    def __init__(self, board):
        self.board = board

    def __call__(self, stage: str, rows: int, engine: dict | None = None) -> None:
        self.board.add.remote(stage, rows, engine, f"{socket.gethostname()}:{os.getpid()}")


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
            totals, engines = ray.get([board.totals.remote(), board.engine_snapshots.remote()])
            for stage, done in totals.items():
                log.info("%s", accounting.progress_line(round_num, stage, done, expected,
                                                         time.perf_counter() - started, engines.get(stage)))

    thread = threading.Thread(target=watch, name="progress", daemon=True)
    thread.start()
    try:
        yield ReportProgress(board)
    finally:
        stop.set()
        thread.join()
        ray.kill(board)


def stage_sized(ds, specs: list[StageSpec]) -> "ray.data.Dataset":
    """Rows in blocks of the first stage's batch, so stages pipeline and every actor of a pool gets work."""
    return ds.repartition(target_num_rows_per_block=group_resources(specs[:1]).batch_size)


def _cheap_chain(batch, specs: list[StageSpec], progress=None, execution: str = ""):
    return StageChain(specs, progress=progress, execution=execution)(batch)


class RayExecutor:
    """Runs the pipeline's requests on Ray Data with the cluster's failure policy: a dead actor is restarted and
    its batches retried; a dead task is retried."""

    def __init__(self, cfg: Config):
        self.cfg = cfg
        self.cluster = cfg.cluster
        self.started_ray = False
        self._storage: Storage | None = None

    @property
    def storage(self) -> Storage:
        """The filesystem of run.output_dir, handed to every task that reads or writes the run folder."""
        if self._storage is None:
            self._storage = Storage.resolve(self.cfg.run.output_dir)
        return self._storage

    # --- the cluster
    def start(self) -> int:
        """Build/convert embedded models once (actors then only load them), join or start Ray, set Ray Data's
        context; returns the number of live nodes."""
        check_backend_available(self.cfg)  # vLLM installed, paths and GPU sizes given: one sentence, not a crash
        resolve_model_path(self.cfg.model)
        if self.cfg.scoring.enabled:
            resolve_model_path(self.cfg.scorer)
        self.started_ray = init_ray(self.cfg)
        context = DataContext.get_current()
        context.max_errored_blocks = self.cluster.max_errored_blocks
        set_progress(context, self.cfg)
        return max(1, sum(1 for node in ray.nodes() if node.get("Alive")))

    def stop(self) -> None:
        if self.started_ray:
            ray.shutdown()
            self.started_ray = False

    # --- a round's input
    def seeds(self, plan: SeedPlan) -> "ray.data.Dataset":
        """The seed dataset: one read task per input file."""
        ds = ray.data.from_items(plan.items, override_num_blocks=max(1, len(plan.items)))
        return ds.map_batches(partial(read_files, plan=plan), batch_size=1, **self._task_args())

    def rows(self, batch: dict) -> "ray.data.Dataset":
        return ray.data.from_arrow(pa.table(batch))

    def read(self, files: list[Path]) -> "ray.data.Dataset":
        return ray.data.read_parquet([str(f) for f in files], filesystem=self.storage.ray_filesystem)

    def segment(self, ds, lo: int, hi: int) -> "ray.data.Dataset":
        """The rows of `ds` whose seed position is in [lo, hi) (one segment of a big round)."""
        return ds.map_batches(partial(in_segment, lo=lo, hi=hi), batch_format="pyarrow", batch_size=None,
                              **self._task_args())

    def drop_done(self, ds, files: list[Path], round_num: int) -> "ray.data.Dataset":
        """The round's input without the rows committed shards already hold (resume)."""
        done = ray.put(done_keys(files, round_num, self.storage))
        return ds.map_batches(partial(_drop_rows, done=done), batch_format="pyarrow", batch_size=None,
                              **self._task_args())

    def expand(self, ds, expansion: Expansion) -> "ray.data.Dataset":
        return ds.map_batches(partial(expansion.fn, **expansion.kwargs), batch_size=None,
                              udf_modifying_row_count=True, **self._task_args())

    # --- the stages
    def apply_stages(self, ds, specs: list[StageSpec], progress=None) -> "ray.data.Dataset":
        """The stages as map_batches calls: one actor pool per model stage, sized by its own resources (the
        cheap stages after it run in the same actors). `progress` is handed to every stage chain, and a new
        execution id, which their timing records carry."""
        execution = uuid.uuid4().hex[:8]
        for group in group_stages(specs, fuses(self.cluster.fuse_stages, specs)):
            ds = self._apply_group(ds, group, progress, execution)
        return ds

    def _apply_group(self, ds, group: list[StageSpec], progress=None, execution: str = "") -> "ray.data.Dataset":
        res = group_resources(group)
        if not any(spec.uses_model for spec in group):
            # batch_size=None: each block as it comes (blocks are stage-batch sized), never waiting to fill a batch.
            return ds.map_batches(partial(_cheap_chain, specs=group, progress=progress, execution=execution),
                                  batch_size=None, udf_modifying_row_count=False, **res.ray_options(),
                                  **self._task_retries())
        return ds.map_batches(
            StageChain,
            fn_constructor_kwargs={"specs": group, "torch_threads": res.torch_threads, "pooled": True,
                                   "progress": progress, "execution": execution},
            batch_size=res.batch_size,
            compute=stage_pool(res.pool_size, concurrent_calls(group)),
            udf_modifying_row_count=False,  # stages are one-to-one; GuardedStage enforces it
            **res.ray_options(), **self._actor_retries(),
        )

    def stream(self, ds, specs: list[StageSpec], round_num: int, expected: int, ledger: Path, shard_rows: int):
        """Stream the round through its stages into ledger shards of about `shard_rows` rows; yields each
        committed shard's (file, rows, ok) as it lands, so the pipeline journals it at once."""
        ds = stage_sized(ds, specs)
        with progress_lines(self.cfg, round_num, expected) as progress:
            ds = self.apply_stages(ds, specs, progress)
            commit = partial(commit_shard, ledger=str(ledger), storage=self.storage)
            written = ds.map_batches(commit, batch_format="pyarrow", batch_size=shard_rows,
                                     udf_modifying_row_count=True, **self._task_args())
            for row in written.iter_rows():
                yield row["file"], int(row["rows"]), int(row["ok"])

    def apply(self, files: list[Path], spec: StageSpec, folder: Path) -> list[Path]:
        """A whole-round step's stage over the round's shards, written to `folder`; returns its files."""
        self.apply_stages(self.read(files), [spec]).write_parquet(str(folder),
                                                                  filesystem=self.storage.ray_filesystem)
        return self.storage.files(folder, ".parquet")

    def grouped(self, files: list[Path], columns: list[str], explode, key: str, reduce) -> pa.Table:
        """A whole-round step's group-by (recipes/steps.Grouping): read `columns`, explode each block into keyed
        rows, shuffle them by `key` on Ray Data (hash-partitioned: no node holds every row), reduce each group;
        only the reduce outputs (small by construction: e.g. duplicate pairs) come back to the driver."""
        if not files:
            return pa.table({})
        ds = self.read(files).select_columns(columns)
        keyed = ds.map_batches(explode, batch_format="numpy", batch_size=None, udf_modifying_row_count=True,
                               **self._task_args())
        out = keyed.groupby(key).map_groups(reduce, batch_format="numpy", **self._task_args())
        parts = [t for t in ray.get(out.to_arrow_refs()) if t.num_rows]
        return pa.concat_tables(parts) if parts else pa.table({})

    def split(self, files: list[Path], layout: RunLayout, round_num: int) -> RoundCounts:
        """The round's outputs from its shards: one task per shard writes its data, export and rejects parts (the
        driver never holds rows), then the driver adds up the counts and joins the parts."""
        storage = layout.store
        if not files:
            return split_round([], storage, round_num)
        items = [{"file": str(f), "index": i} for i, f in enumerate(files)]
        done = ray.data.from_items(items, override_num_blocks=len(items)).map_batches(
            partial(_split_shards, out=storage, round_num=round_num), batch_size=1, **self._task_args())
        counts = RoundCounts(round=round_num)
        for row in done.iter_rows():
            counts.merge(RoundCounts.from_state(json.loads(row["counts"])))
        join_parts(storage, round_num, len(files))
        return counts

    def call(self, spec: StageSpec, method: str, *args):
        """Build `spec`'s stage in one actor (with its resources), call `method(*args)` there, return the result:
        a recipe's one-off model work such as the Auto Evol-Instruct optimizer."""
        options = spec.resources.ray_options()
        actor = ray.remote(_Holder).options(**options).remote(spec, spec.resources.torch_threads)
        try:
            return ray.get(actor.call.remote(method, *args))
        finally:
            ray.kill(actor)

    # --- failure policy
    def _task_args(self) -> dict:
        return {"num_cpus": CHEAP_TASK_CPUS, **self._task_retries()}

    def _task_retries(self) -> dict:
        return _given(max_retries=self.cluster.task_max_retries)

    def _actor_retries(self) -> dict:
        return _given(max_restarts=self.cluster.actor_max_restarts,
                      max_task_retries=self.cluster.actor_max_task_retries)


def stage_pool(size: int, calls: int = 1) -> ActorPoolStrategy:
    """A fixed pool of `size` stage actors whose batches run on the thread that built the stage chain.

    By default Ray Data builds a callable class on the actor's main thread and then calls it on a helper thread
    (its single-threaded wrapper). torch's OpenMP then keeps two thread teams in the process, one per calling
    thread; with more OpenMP threads than cores, libgomp stops spinning between parallel regions and every
    region waits on a sleeping worker. On 2 cores that made the same generate() 1.4x slower in wall time for the
    same CPU seconds. `enable_true_multi_threading` calls the class on the actor's own thread; with one call per
    actor at a time (max_concurrency 1) nothing else changes.

    `calls` > 1 (a vLLM stage, recipes/resources.py concurrent_calls): that many batches run at once in each
    actor, on threads, so its engine's feeder always has the next batch's rows to admit while one drains."""
    if calls > 1:
        return ActorPoolStrategy(size=size, enable_true_multi_threading=True, max_concurrent_calls_per_actor=calls)
    return ActorPoolStrategy(size=size, enable_true_multi_threading=True)


def _given(**settings) -> dict:
    """Only the retry bounds a user set: Ray Data's own unbounded policy otherwise, and then no deprecated
    ray_remote_args (Ray 2.60 has no named map_batches parameter for them)."""
    return {name: value for name, value in settings.items() if value is not None}


class _Holder:
    """One stage object in an actor, for `RayExecutor.call`."""

    def __init__(self, spec: StageSpec, torch_threads):
        self.stage = spec.build(torch_threads=torch_threads)

    def call(self, method: str, *args):
        return getattr(self.stage, method)(*args)


def _drop_rows(batch: pa.Table, done) -> pa.Table:
    return without_done(batch, ray.get(done))


def _split_shards(batch, out: Storage, round_num: int) -> dict:
    counts = [split_shard(Path(f), out, round_num, int(i)) for f, i in zip(batch["file"], batch["index"])]
    return {"counts": np.array([json.dumps(c.state()) for c in counts], dtype=object)}


def analyse(cfg: Config, source: list[Path] | pa.Table, columns: list[str] | None, specs: list[StageSpec],
            sink) -> None:
    """The analysis suite's model stages (engine.commands.analyze, engine.commands.pairwise) over rows read from `source` (Parquet
    files, reading `columns`, or a table built on the driver): run `specs` in actor pools, and hand each output
    batch to `sink` on the driver as it arrives."""
    if any(spec.stage.__name__ in ("Judge", "PairwiseJudge") for spec in specs):
        check_backend_available(cfg)
        resolve_model_path(cfg.model)
    started = init_ray(cfg)
    executor = RayExecutor(cfg)
    try:
        set_progress(DataContext.get_current(), cfg)
        if isinstance(source, pa.Table):
            ds = ray.data.from_arrow(source)
        else:
            ds = ray.data.read_parquet([str(f) for f in source]).select_columns(columns)
        ds = stage_sized(ds, specs)
        for batch in executor.apply_stages(ds, specs).iter_batches(batch_size=None, batch_format="numpy"):
            batch.pop(accounting.STATS_COLUMN, None)  # the stages' timings, not a column of the analysis
            sink(batch)
    finally:
        if started:
            ray.shutdown()
