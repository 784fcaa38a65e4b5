"""The wrapper every stage runs in: it checks the map_batches contract and isolates rows that make a stage raise.

A batch that raises is split in halves until the failing rows are alone; each is rejected with reason
`stage_error` and the exception text, and the rest of the batch goes on. When every row of a batch fails on
its own the stage itself is broken, and the original exception propagates (the run fails loudly)."""

from __future__ import annotations

import itertools
import json
import logging
import os
import socket
import threading
import time
import uuid

import numpy as np

from engine.backends import metered_backends, shared_backends
from engine.backends.feeder import EngineFailure
from engine.recipes.spec import StageSpec
from engine.rows.records import ok_mask, reject
from engine.run.accounting import STATS_COLUMN, batch_record

log = logging.getLogger("engine.stages")
DETAIL_LIMIT = 2000


class RowsLost(RuntimeError):
    """A stage or round returned a different number of rows than it was given."""


def take(batch: dict[str, np.ndarray], rows: np.ndarray) -> dict[str, np.ndarray]:
    """The sub-batch of `rows` (fresh arrays, so a stage may change them freely)."""
    return {name: np.asarray(values)[rows] for name, values in batch.items()}


def concat(pieces: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Pieces of one batch, rejoined column by column."""
    names = pieces[0].keys()
    return {name: np.concatenate([piece[name] for piece in pieces]) for name in names}


class GuardedStage:
    """Runs a stage on a batch, row-count checked, with poison rows isolated into rejects."""

    def __init__(self, spec: StageSpec, torch_threads: int | None = None):
        self.name = spec.name
        with metered_backends() as self.meters:  # whatever models the stage loads, whichever engine: counted
            self.stage = spec.build(torch_threads=torch_threads or os.cpu_count())
        # A vLLM stage actor runs several batches at once; its model stages are built for that (the engine's
        # feeder), a cheap stage after it need not be: one batch at a time there.
        self._serial = None if spec.uses_model else threading.Lock()

    def tokens(self) -> tuple[int, int]:
        """(prompt, generated) tokens the stage's models handled for this thread since its last call."""
        counts = [meter.take() for meter in self.meters]
        return sum(c[0] for c in counts), sum(c[1] for c in counts)

    def engine_stats(self) -> dict | None:
        """How full the stage's engine has been (a vLLM engine's occupancy so far), or None (static batches)."""
        stats = [s for s in (meter.engine_stats() for meter in self.meters) if s is not None]
        return stats[0] if stats else None

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        if self._serial is None:
            return self._guarded(batch)
        with self._serial:
            return self._guarded(batch)

    def _guarded(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        rows_in = len(batch["id"])
        try:
            out = self.stage(dict(batch))
        except EngineFailure as err:  # the engine is gone: no row is to blame, and no retry of a half batch helps
            raise EngineFailure(f"stage {self.name}: {err}") from err
        except Exception as err:  # noqa: BLE001 - isolated below, or re-raised when the stage itself is broken
            out = self._isolate(batch, err)
        lengths = {name: len(values) for name, values in out.items()}
        if set(lengths.values()) != {rows_in}:
            raise RowsLost(f"stage {self.name} returned column lengths {lengths} for a batch of {rows_in} rows")
        return out

    def _isolate(self, batch: dict[str, np.ndarray], err: Exception) -> dict[str, np.ndarray]:
        candidates = np.flatnonzero(ok_mask(batch))
        failed: list[tuple[int, Exception]] = []
        pieces: list[tuple[np.ndarray, dict]] = []
        self._split(batch, np.arange(len(batch["id"])), err, pieces, failed)  # the whole batch just failed
        if failed and len(failed) == len(candidates) and len(candidates) > 1:
            raise err  # not a poison row: every row fails, so the stage is broken
        for row, row_err in failed:
            one = take(batch, np.array([row]))
            source = f"{os.path.basename(str(one['source_file'][0]))}:{one['source_line'][0]}"  # the seed it came from
            detail = f"{source}: {self.name} raised {type(row_err).__name__}: {row_err}"[:DETAIL_LIMIT]
            reject(one, np.array([True]), "stage_error", detail, stage=self.name.lower())
            log.warning("row %s rejected: %s", one["id"][0], detail)
            pieces.append((np.array([row]), self.stage(one)))  # a rejected row passes through, columns added
        order = np.argsort(np.concatenate([rows for rows, _ in pieces]), kind="stable")
        joined = concat([piece for _, piece in pieces])
        return {name: values[order] for name, values in joined.items()}

    def _bisect(self, batch, rows: np.ndarray, pieces: list, failed: list) -> None:
        try:
            pieces.append((rows, self.stage(take(batch, rows))))
        except Exception as err:  # noqa: BLE001 - narrowed to single rows, each rejected with its error
            self._split(batch, rows, err, pieces, failed)

    def _split(self, batch, rows: np.ndarray, err: Exception, pieces: list, failed: list) -> None:
        """`rows` raised `err` together: a single row has failed; more are retried as two halves."""
        if len(rows) == 1:
            failed.append((int(rows[0]), err))
            return
        half = len(rows) // 2
        self._bisect(batch, rows[:half], pieces, failed)
        self._bisect(batch, rows[half:], pieces, failed)


class BusyShares:
    """An actor's busy time in one stage, split among the calls that overlap in it (a vLLM stage actor runs
    several batches at once): while k calls are active each accrues 1/k of the wall time, so the calls' shares
    add up to the time the stage was busy at all, never to k times it."""

    def __init__(self, clock=time.time):
        self.clock = clock
        self._lock = threading.Lock()
        self._active: dict[int, float] = {}
        self._ids = itertools.count()
        self._last = 0.0

    def start(self) -> int:
        with self._lock:
            self._advance()
            token = next(self._ids)
            self._active[token] = 0.0
            return token

    def stop(self, token: int) -> float:
        """The call's share of the busy time since it started."""
        with self._lock:
            self._advance()
            return self._active.pop(token)

    def _advance(self) -> None:
        now = self.clock()
        if self._active:
            share = (now - self._last) / len(self._active)
            for token in self._active:
                self._active[token] += share
        self._last = now


class StageChain:
    """Several guarded stages run one after another on each batch, in one task or actor: a model stage and the
    cheap stages after it share its actor, so they neither wait for a batch of their own nor cost a task each.

    It times its own work: each stage's constructor (the model load) and each call, with rows and tokens, as
    records in the STATS_COLUMN of the batch's first row (engine/run/accounting.py adds them up), tagged with the
    `execution` (round or segment) whose pool it belongs to. `progress`, when given, is called with (stage name,
    rows) after every batch."""

    def __init__(self, specs: list[StageSpec], torch_threads: int | None = None, pooled: bool = False,
                 progress=None, execution: str = ""):
        # A pooled actor is one instance; cheap-stage tasks build a chain per block, so they count per worker
        # process (a million-row round must not list a million instances).
        self.instance = uuid.uuid4().hex[:12] if pooled else f"{socket.gethostname()}:{os.getpid()}"
        self.pooled, self.progress, self.execution = pooled, progress, execution
        self.started = time.time()
        self.stages, self.load_s = [], []
        with shared_backends():  # two stages of one model in this actor: one load
            for spec in specs:
                began = time.perf_counter()
                self.stages.append(GuardedStage(spec, torch_threads=torch_threads))
                self.load_s.append(time.perf_counter() - began)
        self.busy = [BusyShares() for _ in self.stages]

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        records = []
        for stage, load_s, busy in zip(self.stages, self.load_s, self.busy):
            ok_in = int(ok_mask(batch).sum())
            token, t0 = busy.start(), time.time()
            try:
                batch = stage(batch)
            finally:
                busy_s = busy.stop(token)  # a call that raised must not stay counted as active
            t1 = time.time()
            rows = len(batch["id"])
            prompt_tokens, generated_tokens = stage.tokens()
            engine = stage.engine_stats()
            records.append(batch_record(stage.name, self.instance, self.pooled, self.started, load_s, t0, t1, rows,
                                        ok_in, int(ok_mask(batch).sum()), prompt_tokens, generated_tokens,
                                        self.execution, busy_s=busy_s, engine=engine))
            if self.progress is not None:
                self.progress(stage.name, rows, engine)
        return with_records(batch, records)


def with_records(batch: dict[str, np.ndarray], records: list[dict]) -> dict[str, np.ndarray]:
    """The batch with `records` appended to those its first row already carries (an earlier actor's)."""
    rows = len(batch["id"])
    held = batch.get(STATS_COLUMN)
    column = np.full(rows, "", dtype=object) if held is None else np.asarray(held, dtype=object).copy()
    if rows:
        column[0] = json.dumps((json.loads(column[0]) if column[0] else []) + records)
    batch[STATS_COLUMN] = column
    return batch
