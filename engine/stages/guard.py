"""The wrapper every stage runs in: it checks the map_batches contract and isolates rows that make a stage raise.

A batch that raises is split in halves until the failing rows are alone; each is rejected with reason
`stage_error` and the exception text, and the rest of the batch goes on. When every row of a batch fails on
its own the stage itself is broken, and the original exception propagates (the run fails loudly)."""

from __future__ import annotations

import logging
import os

import numpy as np

from engine.config import Config
from engine.records import ok_mask, reject

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

    def __init__(self, stage: type, cfg: Config, torch_threads: int | None = None, **kwargs):
        self.name = stage.__name__
        self.stage = stage(cfg, torch_threads=torch_threads or os.cpu_count(), **kwargs)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        rows_in = len(batch["id"])
        try:
            out = self.stage(dict(batch))
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


class StageChain:
    """Several guarded stages run one after another on each batch, in one task or actor: a model stage and the
    cheap stages after it share its actor, so they neither wait for a batch of their own nor cost a task each."""

    def __init__(self, steps: list[tuple[type, dict]], cfg: Config, torch_threads: int | None = None):
        self.stages = [GuardedStage(stage, cfg, torch_threads=torch_threads, **kwargs) for stage, kwargs in steps]

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        for stage in self.stages:
            batch = stage(batch)
        return batch
