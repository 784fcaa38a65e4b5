"""The seed inputs of a run, planned on the driver: where they are, each file's first global row position, the
rows the seed dataset will hold, and how reading must treat them (field mapping, long rows, repeated ids)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np

from engine.config import Config
from engine.read.readers import InputError, ReadPolicy, count_rows, find_duplicate_ids, iter_records
from engine.read.shapes import Shape
from engine.rows.records import STATUS_OK

log = logging.getLogger("engine.read")


def seed_source(cfg: Config) -> Path:
    """The seed data path: data.path, or the demo seeds packaged with the engine. Seeds are read from a local or
    mounted path (on a cluster, one every node reads at the same place); a URI is refused in one sentence."""
    if cfg.data.path:
        if "://" in str(cfg.data.path):
            raise InputError(f"data.path={cfg.data.path}: seed inputs must be a local or mounted path (on a "
                             "cluster, shared storage every node reads at the same path); object-store URIs are "
                             "supported for run.output_dir only")
        return Path(cfg.data.path).expanduser()
    return Path(str(resources.files("engine") / "data" / "demo_seeds.jsonl"))


@dataclass(frozen=True)
class SeedPlan:
    """The seed inputs, each with the position of its first row, and what reading them must know."""

    items: list[dict]  # {"path", "offset"} per input
    expected: int  # rows the seed dataset will hold (after data.limit)
    policy: ReadPolicy
    limit: int | None = None  # data.limit: rows past this position are not read
    batch_rows: int = 1000  # rows per block a read task yields


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
    return SeedPlan(items, expected, policy, cfg.data.limit, cfg.cluster.read_batch_rows)


def read_files(batch, plan: SeedPlan):
    """Parse seed files into records (valid or rejected); a generator, so big files stream as many blocks. The
    body of one read task: `batch` holds the task's {"path", "offset"} items."""
    for path, offset in zip(batch["path"], batch["offset"]):
        for records in iter_records(Path(path), int(offset), plan.batch_rows, plan.policy):
            if plan.limit is not None:
                keep = np.asarray(records["seed_index"]) < plan.limit
                if not keep.all():
                    records = {name: values[keep] for name, values in records.items()}
            if len(records["id"]):
                yield records


def first_instructions(files: list[Path], n: int, shape: Shape | None = None) -> list[str]:
    """The instructions of the first `n` valid seed rows, read on the driver (a recipe's small warm-up sample)."""
    found: list[str] = []
    for path in files:
        for records in iter_records(path, 0, batch_rows=max(1, n), policy=ReadPolicy(shape=shape or Shape())):
            found += [str(t) for t, s in zip(records["instruction"], records["status"]) if s == STATUS_OK]
            if len(found) >= n:
                return found[:n]
    return found
