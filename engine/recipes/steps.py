"""Whole-round steps a recipe declares after a round: deduplication and the selection cut over every row (with
select.min_distance, over their embeddings too)."""

from __future__ import annotations

import logging
import math
from abc import ABC, abstractmethod
from functools import partial
from pathlib import Path
from typing import Any, Callable, Optional, Protocol

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from engine.config import DedupConfig, SelectConfig
from engine.recipes.spec import Resources, StageSpec
from engine.rows.records import STATUS_OK
from engine.stages.curation import dedup
from engine.stages.curation.dedup import DedupPlan, DropDuplicates
from engine.stages.scoring.select import EMBEDDING_COLUMN, RANKINGS, Cut, Select, plan_cut
from engine.state.storage import Storage

log = logging.getLogger("engine.recipes")


class Grouping(Protocol):
    """What a whole-round step may ask of the executor while it plans: a distributed group-by over the round's
    shards (Ray Data's groupby on a cluster, plain Arrow in process), so a plan never holds every row itself."""

    def grouped(self, files: list[Path], columns: list[str], explode: Callable[[dict], dict], key: str,
                reduce: Callable[[dict], dict]) -> pa.Table:
        """Read `columns` of `files`; `explode(batch) -> batch` turns each batch into any number of rows carrying
        `key`; rows sharing a key reach one `reduce(group) -> batch` call; returns every reduce output, joined."""
        ...


def grouped_in_process(table: pa.Table, explode: Callable[[dict], dict], key: str,
                       reduce: Callable[[dict], dict]) -> pa.Table:
    """Grouping.grouped over one in-memory table (tests and in-process executors): the same explode, group by
    `key` and reduce as the Ray executor's, without a shuffle."""
    keyed = explode({name: table[name].to_numpy(zero_copy_only=False) for name in table.column_names})
    keys = np.asarray(keyed[key])
    if not len(keys):
        return pa.table({})
    order = np.argsort(keys, kind="stable")
    bounds = np.flatnonzero(keys[order][1:] != keys[order][:-1]) + 1
    parts = []
    for rows in np.split(order, bounds):
        out = reduce({name: np.asarray(values)[rows] for name, values in keyed.items()})
        if out and len(next(iter(out.values()))):
            parts.append(pa.table(out))
    return pa.concat_tables(parts) if parts else pa.table({})


def embedding_matrix(column: pa.ChunkedArray) -> np.ndarray:
    """[rows, dim] float32 of an embedding column as a Parquet file holds it: Ray Data's tensor column (an
    extension type over a list of floats, or that list when Ray's types are not registered) or a (fixed-size)
    list column, as the in-process executors write it."""
    parts = []
    for chunk in column.chunks:
        if isinstance(chunk, pa.ExtensionArray):
            chunk = chunk.storage
        kind = chunk.type
        if not (pa.types.is_list(kind) or pa.types.is_large_list(kind) or pa.types.is_fixed_size_list(kind)):
            raise ValueError(f"column {EMBEDDING_COLUMN!r} holds {kind}, not one vector per row")
        if chunk.null_count:
            raise ValueError(f"column {EMBEDDING_COLUMN!r}: {chunk.null_count} rows have no vector")
        lengths = np.unique(pc.list_value_length(chunk).to_numpy(zero_copy_only=False))
        if len(lengths) > 1:
            raise ValueError(f"column {EMBEDDING_COLUMN!r}: vectors of different sizes {lengths.tolist()}")
        dim = int(lengths[0]) if len(lengths) else 0
        values = chunk.flatten().to_numpy(zero_copy_only=False)
        parts.append(np.asarray(values, dtype=np.float32).reshape(len(chunk), dim))
    parts = [part for part in parts if len(part)]
    if len({part.shape[1] for part in parts}) > 1:
        raise ValueError(f"column {EMBEDDING_COLUMN!r}: vectors of different sizes across files")
    return np.concatenate(parts) if parts else np.zeros((0, 0), dtype=np.float32)


class WholeRoundStep(ABC):
    """A step that needs every row of a round at once (the selection cut, deduplication): planned on the driver
    from the round's committed shards, then applied row by row as one stage."""

    name: str = "whole_round"

    def prepare(self) -> Optional[StageSpec]:
        """A row-wise stage run over the round's shards before `plan` (columns the plan reads, such as embeddings);
        None: the plan reads the shards as they are."""
        return None

    @abstractmethod
    def plan(self, files: list[Path], storage: Storage, executor: Grouping) -> Any:
        """Read what the step needs from the round's shards (a few columns, on `storage`; a group-by through
        `executor` when the step must not hold every row) and decide."""

    @abstractmethod
    def spec(self, plan: Any) -> StageSpec:
        """The stage that applies the decision to each row."""

    def record(self, plan: Any) -> Optional[dict]:
        """What the round's counts keep about the decision, under the step's name (summary.json["selection"] for
        the cut, summary.json["dedup"] for deduplication)."""
        return None


class SelectTop(WholeRoundStep):
    """Keep the top of the round by a score (select.*): the exact global cut over every ok row (phase 1, three
    columns read on the driver), then the Select stage rejects the rest with `not_selected` (phase 2). With
    select.min_distance, `embed` (the Embed stage) first adds each ok row's embedding, and the plan walks the
    ranking keeping only rows far enough from the ones kept before (`too_similar` for the others)."""

    name = "select"

    def __init__(self, settings: SelectConfig, resources: Resources, embed: Optional[StageSpec] = None):
        if settings.min_distance is not None and embed is None:
            raise ValueError("select.min_distance needs the embedding stage (specs.embed) to prepare the plan")
        self.settings, self.resources = settings, resources
        self.embed = embed if settings.min_distance is not None else None

    def prepare(self) -> Optional[StageSpec]:
        return self.embed

    def plan(self, files: list[Path], storage: Storage, executor: Grouping) -> Cut:
        column = RANKINGS[self.settings.by][0]
        columns = ["status", "id", "ifd", column] + ([EMBEDDING_COLUMN] if self.embed is not None else [])
        table = pa.concat_tables(storage.read_table(f, columns=columns) for f in files)
        ok = np.asarray(table["status"].to_numpy(zero_copy_only=False) == STATUS_OK, dtype=bool)
        embeddings = None
        if self.embed is not None:  # only ok rows' vectors are kept: [ok rows, dim] float32 on the driver
            embeddings = embedding_matrix(table[EMBEDDING_COLUMN])[ok]
            table = table.drop_columns([EMBEDDING_COLUMN])
        table = table.filter(pa.array(ok))
        scores = table[column].to_numpy(zero_copy_only=False).astype(np.float64)
        cut = plan_cut(scores, table["id"].to_numpy(zero_copy_only=False),
                       table["ifd"].to_numpy(zero_copy_only=False), self.settings, embeddings)
        log.info("selection by %s: keep %d of %d, cut value %s%s", cut.by, cut.kept, cut.candidates, cut.value,
                 "" if cut.min_distance is None else
                 f", {len(cut.too_similar)} too similar (cosine distance <= {cut.min_distance})")
        return cut

    def spec(self, plan: Cut) -> StageSpec:
        return StageSpec(Select, plan, self.resources)

    def record(self, plan: Cut) -> dict:
        return plan.as_dict()


class Deduplicate(WholeRoundStep):
    """Drop exact and near duplicates among the round's ok rows (dedup.*), the first occurrence kept: two group-bys
    on the executor find and check the duplicate pairs (engine/stages/curation/dedup.py), so the driver holds data
    per duplicate pair, never per row; the DropDuplicates stage then rejects the rest as `duplicate`."""

    name = "dedup"
    columns = ["status", "id", "seed_index", "instruction", "input"]

    def __init__(self, settings: DedupConfig, resources: Resources):
        self.settings, self.resources = settings, resources

    def plan(self, files: list[Path], storage: Storage, executor: Grouping) -> DedupPlan:
        cfg = self.settings
        bands, rows_per_band = dedup.lsh_shape(cfg.threshold, cfg.num_perm, cfg.recall_weight) if cfg.near else (0, 0)
        rows = sum(storage.parquet_file(f).metadata.num_rows for f in files)
        parts = max(1, math.ceil(rows * (int(cfg.exact) + bands) / dedup.GROUP_ROWS))
        found = executor.grouped(files, self.columns, partial(dedup.candidate_keys, cfg=cfg, parts=parts), "part",
                                 dedup.candidate_pairs)
        first, other = dedup.unique_pairs(found)
        del found
        checked = pa.table({})
        if len(first):
            index = dedup.PairIndex.of(first, other)
            parts = max(1, math.ceil(2 * len(first) / dedup.GROUP_ROWS))
            checked = executor.grouped(files, self.columns, partial(dedup.pair_rows, index=index, parts=parts), "part",
                                       partial(dedup.checked_pairs, cfg=cfg))
        plan = DedupPlan(dedup.plan_drops(checked), cfg.threshold, bands, rows_per_band, len(first), checked.num_rows)
        log.info("dedup: %d candidate pairs, %d duplicates, dropping %s", plan.candidate_pairs, plan.duplicate_pairs,
                 {k: v for k, v in plan.as_dict().items() if k in ("exact", "near")})
        return plan

    def spec(self, plan: DedupPlan) -> StageSpec:
        return StageSpec(DropDuplicates, plan, self.resources)

    def record(self, plan: DedupPlan) -> dict:
        return plan.as_dict()
