"""Segments: a round over more than `run.segment_rows` input rows runs as several Ray Data executions, each over
the rows of one range of seed positions. Ray Data keeps per-block bookkeeping (stats objects for every block an
operator emits) on the driver for the whole of an execution, so one execution per million-row round makes the
driver grow with the rows; an execution per segment bounds it. Each segment starts its stage actors anew (one
model load per segment), so segments are large. Ray-free: the pipeline plans them, the executor filters by them.

A row's `seed_index` (its seed's position) never changes along a round, so a segment is a half-open range of
positions, and the committed shards of an interrupted run say which of a segment's rows are done."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from engine.state.storage import Storage


@dataclass(frozen=True)
class Segment:
    """Rows whose seed_index is in [lo, hi): `rows` of the round's input, `done` already in committed shards."""

    index: int
    lo: int
    hi: int
    rows: int
    done: int = 0

    @property
    def remaining(self) -> int:
        return self.rows - self.done


def plan_segments(positions: np.ndarray, size: int, done: np.ndarray | None = None) -> list[Segment]:
    """Cut the input rows' seed positions into ranges of about `size` rows each (a position shared by several
    rows never straddles two); `done`, the positions of rows already committed, is counted per segment."""
    if size < 1:
        raise ValueError(f"run.segment_rows must be at least 1, not {size}")
    ordered = np.sort(np.asarray(positions, dtype=np.int64))
    done_sorted = np.sort(np.asarray(done if done is not None else [], dtype=np.int64))
    segments, start = [], 0
    while start < len(ordered):
        lo = int(ordered[start])
        end = min(start + size, len(ordered))
        if end < len(ordered):  # the next segment begins at the next new position
            end = int(np.searchsorted(ordered, ordered[end - 1], side="right"))
        hi = int(ordered[end - 1]) + 1 if end == len(ordered) else int(ordered[end])
        finished = int(np.searchsorted(done_sorted, hi) - np.searchsorted(done_sorted, lo))
        segments.append(Segment(len(segments), lo, hi, end - start, finished))
        start = end
    return segments


def in_segment(batch: pa.Table, lo: int, hi: int) -> pa.Table:
    """The rows of `batch` whose seed_index is in [lo, hi)."""
    position = batch["seed_index"]
    return batch.filter(pc.and_(pc.greater_equal(position, lo), pc.less(position, hi)))


def seed_positions(files: list[Path], storage: Storage) -> np.ndarray:
    """The seed_index column of Parquet files (a round's input, or its committed shards), read on the driver:
    8 bytes a row."""
    columns = [storage.read_table(path, columns=["seed_index"])["seed_index"].to_numpy() for path in files]
    return np.concatenate(columns) if columns else np.zeros(0, dtype=np.int64)
