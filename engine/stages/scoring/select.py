"""Select: keep the top of the data by IC-IFD (default), IFD, or the paper's baselines, with one global cut.

The cut is planned over every scored row of the round at once (phase 1), then applied batch by batch in any
actor (phase 2), so the kept set is exactly the top of the union whatever the sharding. Ties are broken by
row id, so the same data always gives the same selection.

With `select.min_distance` the plan is DEITA's score-first diversity rule: walk the rows in that same order and
keep one only if its embedding is at cosine distance > min_distance from every row already kept, until the
cut's count is kept; the rows skipped on the way are `too_similar`, each with its nearest kept row."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from engine.config import ConfigError, SelectConfig
from engine.rows.records import ok_mask, reject

# What each selection kind ranks by, and whether the highest (True) or the lowest values are kept.
RANKINGS = {
    "ic_ifd": ("ic_ifd", True),
    "ifd": ("ifd", True),
    "instruction_length": ("q_tokens", False),  # paper baseline: shortest instructions
    "instruction_loss": ("l_q", False),  # paper baseline: lowest instruction loss (perplexity)
}


# The column SelectTop's prepare step adds (engine/stages/analysis/diversity.py's Embed) and Select drops.
EMBEDDING_COLUMN = "embedding"
# Cosine distances below this count as 0: the float32 dot product of a unit vector with itself is 1 only to
# ~1e-7, and an exact duplicate must be too similar even at min_distance=0.
SAME_VECTOR = 1e-6
WALK_BLOCK_ROWS = 1024  # candidates compared with the kept rows in one matrix product


@dataclass(frozen=True)
class Cut:
    """A planned selection: eligible rows ranking at or above (value, last_id) are kept, except the ones listed
    in `too_similar` (select.min_distance)."""

    by: str
    column: str
    descending: bool
    value: float | None  # the score of the last row walked: the last kept one without min_distance (None: none)
    last_id: str | None
    kept: int
    candidates: int
    ifd_below_one: bool
    min_distance: float | None = None
    # id -> (its nearest kept row's id, their cosine distance): rows above the cut skipped for similarity
    too_similar: dict[str, tuple[str, float]] = field(default_factory=dict)

    def as_dict(self) -> dict:
        return {"by": self.by, "cut_value": self.value, "cut_last_id": self.last_id, "kept": self.kept,
                "candidates": self.candidates, "ifd_below_one": self.ifd_below_one,
                "min_distance": self.min_distance, "too_similar": len(self.too_similar)}


def selection_active(cfg: SelectConfig) -> bool:
    """True when the config asks for any cut at all."""
    return (cfg.fraction is not None or cfg.top_k is not None or cfg.threshold is not None or cfg.ifd_below_one
            or cfg.min_distance is not None)


def check_select(cfg: SelectConfig, scoring_enabled: bool) -> None:
    """Refuse, before any generation runs, a selection that could not be applied."""
    if cfg.by not in RANKINGS:
        raise ConfigError(f"select.by={cfg.by!r} is not one of {sorted(RANKINGS)}")
    if selection_active(cfg) and not scoring_enabled:
        raise ConfigError("select.* needs scores: set scoring.enabled=true or drop the selection settings")
    if cfg.fraction is not None and not 0.0 < cfg.fraction <= 1.0:
        raise ConfigError(f"select.fraction={cfg.fraction} must be in (0, 1]")
    if cfg.min_distance is not None and not 0.0 <= cfg.min_distance < 2.0:
        raise ConfigError(f"select.min_distance={cfg.min_distance} must be a cosine distance in [0, 2) (null: off)")


def eligible(scores: np.ndarray, ifd: np.ndarray, ifd_below_one: bool) -> np.ndarray:
    """Rows that can be selected: a finite score, and IFD < 1 when the Superfiltering filter is on."""
    ok = np.isfinite(scores)
    if ifd_below_one:
        ok &= np.isfinite(ifd) & (ifd < 1.0)
    return ok


def plan_cut(scores: np.ndarray, ids: np.ndarray, ifd: np.ndarray, cfg: SelectConfig,
             embeddings: np.ndarray | None = None) -> Cut:
    """Phase 1: the exact cut over all candidate rows (scores and ids of every ok row of the round; with
    select.min_distance, their unit embeddings [rows, dim] too, aligned with them)."""
    check_select(cfg, scoring_enabled=True)
    column, descending = RANKINGS[cfg.by]
    scores = np.asarray(scores, dtype=np.float64)
    ids = np.asarray(ids, dtype=object)
    mask = eligible(scores, np.asarray(ifd, dtype=np.float64), cfg.ifd_below_one)
    s, i = scores[mask], ids[mask]
    order = np.lexsort((i.astype(str), -s if descending else s))  # by score, then id: deterministic ties
    quota = len(order)  # how many rows to keep, from the candidates (every ok row, eligible or not)
    if cfg.fraction is not None:
        quota = min(quota, math.ceil(cfg.fraction * len(scores) - 1e-9))
    if cfg.top_k is not None:
        quota = min(quota, cfg.top_k)
    walk = len(order)  # how far down the ranking rows may be kept: a threshold is a score floor
    if cfg.threshold is not None:
        walk = int(np.sum(s >= cfg.threshold) if descending else np.sum(s <= cfg.threshold))
    similar: dict[str, tuple[str, float]] = {}
    if cfg.min_distance is None:
        walked = k = max(0, min(quota, walk))
    else:
        if embeddings is None or len(embeddings) != len(scores):
            raise ValueError(f"select.min_distance needs one embedding per candidate row ({len(scores)}), got "
                             f"{None if embeddings is None else len(embeddings)}")
        ranked = order[:walk]
        walked, skipped = diverse_walk(np.asarray(embeddings)[np.flatnonzero(mask)[ranked]], i[ranked], quota,
                                       cfg.min_distance)
        similar = {str(i[ranked[p]]): (str(i[ranked[q]]), d) for p, (q, d) in skipped.items()}
        k = walked - len(similar)
    if walked <= 0:
        return Cut(cfg.by, column, descending, None, None, 0, len(scores), cfg.ifd_below_one, cfg.min_distance)
    last = order[walked - 1]
    return Cut(cfg.by, column, descending, float(s[last]), str(i[last]), k, len(scores), cfg.ifd_below_one,
               cfg.min_distance, similar)


def diverse_walk(vectors: np.ndarray, ids: np.ndarray, quota: int, min_distance: float,
                 block_rows: int = WALK_BLOCK_ROWS) -> tuple[int, dict[int, tuple[int, float]]]:
    """DEITA's score-first rule over `vectors` [rows, dim] (unit embeddings, best-ranked first): a row is kept
    when its cosine distance to every row kept before it is > min_distance, until `quota` rows are kept.

    Returns (rows walked, {skipped position: (nearest kept position, cosine distance)}); rows past the walk were
    never looked at. Candidates are compared with the kept rows a block at a time (one matrix product), then
    with the rows kept earlier in their own block one by one, so the result is the sequential walk's, for any
    block size. Ties for the nearest kept row go to the better-ranked one."""
    rows = len(vectors)
    skipped: dict[int, tuple[int, float]] = {}
    if rows == 0 or quota <= 0:
        return 0, skipped
    vectors = np.asarray(vectors, dtype=np.float32)
    check_unit(vectors, ids)
    capacity = min(quota, rows)
    kept = np.empty(capacity, dtype=np.int64)
    kept_vectors = np.empty((capacity, vectors.shape[1]), dtype=np.float32)
    n_kept, start = 0, 0
    while start < rows and n_kept < quota:
        end = min(start + block_rows, rows)
        block = vectors[start:end]
        if n_kept:
            dots = block @ kept_vectors[:n_kept].T
            before = dots.argmax(axis=1)  # the first of equal maxima: the best-ranked kept row
            before_dot = dots[np.arange(end - start), before]
        else:
            before, before_dot = np.zeros(end - start, dtype=np.int64), np.full(end - start, -np.inf)
        inner = block @ block.T
        fresh: list[int] = []  # block offsets kept in this block
        for j in range(end - start):
            best_dot = float(before_dot[j])
            nearest = int(kept[before[j]]) if n_kept - len(fresh) else -1
            if fresh:
                dots_in = inner[j, fresh]
                t = int(dots_in.argmax())
                if dots_in[t] > best_dot:
                    best_dot, nearest = float(dots_in[t]), start + fresh[t]
            distance = max(0.0, 1.0 - best_dot)
            if distance < SAME_VECTOR:
                distance = 0.0
            if nearest >= 0 and distance <= min_distance:
                skipped[start + j] = (nearest, distance)
                continue
            kept[n_kept], kept_vectors[n_kept] = start + j, block[j]
            n_kept += 1
            fresh.append(j)
            if n_kept == quota:
                end = start + j + 1
                break
        start = end
    return start, skipped


def check_unit(vectors: np.ndarray, ids: np.ndarray) -> None:
    """Refuse embeddings that are not finite unit vectors (a NaN row, a model without normalisation), naming one."""
    squared = np.einsum("ij,ij->i", vectors, vectors)
    bad = np.flatnonzero(~(np.abs(squared - 1.0) <= 1e-3))
    if len(bad):
        raise ValueError(f"select.min_distance: the embedding of row {ids[bad[0]]!r} has squared norm "
                         f"{squared[bad[0]]:.6g}, not 1 ({len(bad)} such rows); the walk needs unit vectors")


def keep_mask(scores: np.ndarray, ids: np.ndarray, ifd: np.ndarray, cut: Cut) -> np.ndarray:
    """Phase 2: which rows of a batch the planned cut keeps."""
    scores = np.asarray(scores, dtype=np.float64)
    if cut.value is None:
        return np.zeros(len(scores), dtype=bool)
    ids = np.asarray(ids, dtype=object).astype(str)
    better = scores > cut.value if cut.descending else scores < cut.value
    tied = (scores == cut.value) & (ids <= cut.last_id)
    walked = (better | tied) & eligible(scores, np.asarray(ifd, dtype=np.float64), cut.ifd_below_one)
    return walked & ~similar_mask(ids, cut)


def similar_mask(ids: np.ndarray, cut: Cut) -> np.ndarray:
    """Phase 2: which rows of a batch the walk skipped as too similar to a kept row."""
    if not cut.too_similar:
        return np.zeros(len(ids), dtype=bool)
    return np.fromiter((str(row) in cut.too_similar for row in ids), dtype=bool, count=len(ids))


class Select:
    """Rejects the ok rows the cut does not keep: `too_similar` (select.min_distance, naming the nearest kept
    row) or `not_selected`; drops the embedding column of the prepare step, so it never reaches the outputs."""

    uses_model = False

    def __init__(self, cut: Cut, torch_threads: int | None = None):
        self.cut = cut

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        batch.pop(EMBEDDING_COLUMN, None)
        ok = ok_mask(batch)
        similar = ok & similar_mask(batch["id"], self.cut)
        drop = ok & ~keep_mask(batch[self.cut.column], batch["id"], batch["ifd"], self.cut) & ~similar
        detail = f"below the {self.cut.by} cut {self.cut.value!r} (kept {self.cut.kept} of {self.cut.candidates})"
        reject(batch, drop, "not_selected", detail, stage="select")
        if similar.any():
            details = np.full(len(ok), "", dtype=object)
            for row in np.flatnonzero(similar):
                nearest, distance = self.cut.too_similar[str(batch["id"][row])]
                details[row] = (f"cosine distance {distance:.4f} <= select.min_distance={self.cut.min_distance} "
                                f"to kept row {nearest}")
            reject(batch, similar, "too_similar", details, stage="select")
        return batch
