"""Diversity (paper Fig. 4, after Magpie): each row's minimum neighbour distance (MND) in embedding space.

The distance is squared L2 between unit-normalised sentence embeddings, d = |a - b|^2 = 2 - 2 a.b in [0, 4], as
the seed's faiss `IndexFlat` (L2) returns it; a row's near duplicates are the other rows with d < threshold
(0.05 in the seed). Unlike the seed, which takes hit 0 of the search as the row itself (wrong when an exact
duplicate ties with it), the row itself is excluded by position, so a duplicate row with another id has d = 0
and counts as a near duplicate. The search is exact and blocked, queries x database, so memory stays
O(block^2) rather than O(n^2) and a 1M-row memmap works.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from engine.backends.embedder import load_embedder
from engine.config import EmbedderConfig
from engine.measure.stats import quantiles
from engine.rows.records import ok_mask

UNIT_NORM_TOLERANCE = 1e-3  # on the squared norm; sentence-transformers' normalised float32 output is ~1e-7 off


def embedding_text(instruction: str, input_text: str) -> str:
    """The text embedded per row, as the seed's eval_diversity.py builds it (newline even with no input)."""
    return instruction + "\n" + input_text


@dataclass(frozen=True)
class EmbedArgs:
    """What Embed uses: the sentence-embedding model's settings."""

    embedder: EmbedderConfig


class Embed:
    """Adds `embedding`, a [rows, dim] float32 column of unit vectors, to ok rows; other rows get NaN vectors.

    NaN rather than zeros: a zero vector would sit at distance 2 from everything and pass as a diverse row,
    while the search refuses a NaN row with an error naming it."""

    uses_model = True

    def __init__(self, args: EmbedArgs, torch_threads: int | None = None):
        self.embedder = load_embedder(args.embedder, torch_threads=torch_threads)
        self.model_name = self.embedder.name

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        rows = np.flatnonzero(ok_mask(batch))
        vectors = np.full((len(batch["status"]), self.embedder.dim), np.nan, dtype=np.float32)
        if len(rows):
            texts = [embedding_text(str(batch["instruction"][i]), str(batch["input"][i])) for i in rows]
            vectors[rows] = self.embedder.encode(texts)
        batch["embedding"] = vectors
        return batch


def min_neighbour_distances(
    embeddings: np.ndarray,
    ids=None,
    threshold: float = 0.05,
    block_rows: int = 4096,
    db_block_rows: int | None = None,
    queries: slice | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """(mnd float64[q], near_duplicates int64[q]) of each query row against all other rows, exactly.

    `embeddings` is [n, d] of unit vectors (an ndarray or an np.memmap; blocks are read as float32).
    A row is never its own neighbour; with `ids`, rows sharing an id are treated as the same row too (a record
    that was read twice is not its own near duplicate). A row with no other row to compare gets NaN and 0.
    `queries` (a slice of row positions, default all) computes only those rows, against all n rows, so callers
    can split the work across processes. Peak extra memory: block_rows x db_block_rows float32 plus two blocks.
    """
    if getattr(embeddings, "ndim", 0) != 2:
        raise ValueError(f"embeddings must be a 2-D [rows, dim] array, got shape {getattr(embeddings, 'shape', None)}")
    n = embeddings.shape[0]
    codes = _shared_id_codes(ids, n)
    q_lo, q_hi, step = (queries or slice(None)).indices(n)
    if step != 1:
        raise ValueError("queries must be a contiguous slice (step 1)")
    return _search(embeddings, None, codes, threshold, block_rows, db_block_rows or block_rows, q_lo, q_hi, ids)


def grouped_min_neighbour_distances(
    embeddings: np.ndarray,
    groups,
    ids=None,
    threshold: float = 0.05,
    block_rows: int = 4096,
    db_block_rows: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """MND and near-duplicate counts with neighbours searched only among rows of the same group.

    The paper measures MND within one dataset, so the analysis groups by evolver: each evolver's rows are
    compared with each other, never with another evolver's. Results are aligned with the input rows."""
    n = embeddings.shape[0]
    groups = np.asarray(groups)
    if groups.shape != (n,):
        raise ValueError(f"groups must hold one label per row ({n}), got shape {groups.shape}")
    id_array = None if ids is None else np.asarray(ids)
    if id_array is not None and id_array.shape != (n,):
        raise ValueError(f"ids must hold one id per row ({n}), got shape {id_array.shape}")
    mnd = np.full(n, np.nan)
    near = np.zeros(n, dtype=np.int64)
    for label in np.unique(groups):
        rows = np.flatnonzero(groups == label)
        group_ids = None if id_array is None else id_array[rows]
        codes = _shared_id_codes(group_ids, len(rows))
        mnd[rows], near[rows] = _search(embeddings, rows, codes, threshold, block_rows, db_block_rows or block_rows,
                                        0, len(rows), group_ids)
    return mnd, near


def diversity_summary(mnd: np.ndarray, near_duplicates: np.ndarray) -> dict:
    """The analysis summary of one evolver: n (rows with a neighbour), mean and p10..p90 of MND, and how many
    rows have at least one near duplicate. Rows without a neighbour (NaN) are left out of n and the stats."""
    mnd = np.asarray(mnd, dtype=np.float64)
    measured = mnd[np.isfinite(mnd)]
    return {
        "n": int(len(measured)),
        "mean": float(measured.mean()) if len(measured) else None,
        "quantiles": quantiles(measured),
        "near_duplicate_rows": int(np.count_nonzero(np.asarray(near_duplicates) > 0)),
    }


def dot_cutoff(threshold: float) -> np.float32:
    """The float32 dot product c such that a dot v is a near duplicate iff v > c.

    Chosen so the count agrees exactly with the reported distance max(0, 2 - 2v) < threshold (computed in
    float64 from the float32 dot): a row has a near duplicate iff its MND is below the threshold."""
    if not math.isfinite(threshold):
        raise ValueError(f"analysis.diversity.threshold must be a finite number, not {threshold!r}")
    if threshold <= 0:
        return np.float32(np.inf)
    cut = np.float32(1.0 - threshold / 2.0)
    while 2.0 - 2.0 * float(cut) < threshold:  # cut itself would count: step down
        cut = np.nextafter(cut, np.float32(-np.inf))
    while 2.0 - 2.0 * float(np.nextafter(cut, np.float32(np.inf))) >= threshold:
        cut = np.nextafter(cut, np.float32(np.inf))
    return cut


def _shared_id_codes(ids, n: int) -> np.ndarray | None:
    """Per row: a code shared by the rows that carry the same id, or -1 for a unique id; None if all unique."""
    if ids is None:
        return None
    ids = np.asarray(ids)
    if ids.shape != (n,):
        raise ValueError(f"ids must hold one id per row ({n}), got shape {ids.shape}")
    _, inverse, counts = np.unique(ids, return_inverse=True, return_counts=True)
    if n == 0 or counts.max() == 1:
        return None
    return np.where(counts[inverse] > 1, inverse, -1)


def _block(embeddings, picks: np.ndarray | None, lo: int, hi: int) -> np.ndarray:
    """Rows [lo, hi) of the searched set as float32: a view where they are contiguous, else a gathered copy."""
    if picks is None:
        rows = slice(lo, hi)
    elif picks[hi - 1] - picks[lo] == hi - 1 - lo:  # picks are sorted and unique
        rows = slice(int(picks[lo]), int(picks[hi - 1]) + 1)
    else:
        rows = picks[lo:hi]
    return np.asarray(embeddings[rows], dtype=np.float32)


def _check_unit(block: np.ndarray, lo: int, picks: np.ndarray | None, ids) -> None:
    squared = np.einsum("ij,ij->i", block, block)
    bad = np.flatnonzero(~(np.abs(squared - 1.0) <= UNIT_NORM_TOLERANCE))  # NaN fails too
    if len(bad):
        pos = lo + int(bad[0])
        row = pos if picks is None else int(picks[pos])
        label = f"row {row}" + ("" if ids is None else f" (id {ids[pos]!r})")
        raise ValueError(
            f"embedding {label} has squared norm {squared[bad[0]]:.6g}, not 1: the search needs finite, unit-"
            f"normalised vectors ({len(bad)} such rows in this block); rows the Embed stage skipped "
            "(status != ok) hold NaN and must be left out"
        )


def _search(embeddings, picks, codes, threshold, block_rows, db_block_rows, q_lo, q_hi, ids):
    """Blocked exact search over rows [0, n) of `embeddings` (or of embeddings[picks]) for queries [q_lo, q_hi)."""
    if block_rows < 1 or db_block_rows < 1:
        raise ValueError(f"analysis.diversity.block_rows must be >= 1, not {min(block_rows, db_block_rows)}")
    n = embeddings.shape[0] if picks is None else len(picks)
    cut = dot_cutoff(threshold)
    best = np.full(q_hi - q_lo, -np.inf, dtype=np.float32)
    near = np.zeros(q_hi - q_lo, dtype=np.int64)
    scratch = np.empty((min(block_rows, max(q_hi - q_lo, 1)), min(db_block_rows, max(n, 1))), dtype=np.float32)
    for qs in range(q_lo, q_hi, block_rows):
        qe = min(qs + block_rows, q_hi)
        query = _block(embeddings, picks, qs, qe)
        q_best, q_near = best[qs - q_lo: qe - q_lo], near[qs - q_lo: qe - q_lo]
        for ds in range(0, n, db_block_rows):
            de = min(ds + db_block_rows, n)
            base = query if (ds, de) == (qs, qe) else _block(embeddings, picks, ds, de)
            if qs == q_lo:  # every row passes through the first query block's database sweep once
                _check_unit(base, ds, picks, ids)
            dots = scratch[: qe - qs, : de - ds]
            np.matmul(query, base.T, out=dots)
            lo, hi = max(qs, ds), min(qe, de)
            if lo < hi:  # the query rows themselves
                own = np.arange(lo, hi)
                dots[own - qs, own - ds] = -np.inf
            if codes is not None:  # other rows with the query's id
                q_dup, d_dup = np.flatnonzero(codes[qs:qe] >= 0), np.flatnonzero(codes[ds:de] >= 0)
                if len(q_dup) and len(d_dup):
                    same_r, same_c = np.nonzero(codes[qs:qe][q_dup][:, None] == codes[ds:de][d_dup][None, :])
                    dots[q_dup[same_r], d_dup[same_c]] = -np.inf
            block_best = dots.max(axis=1)
            np.maximum(q_best, block_best, out=q_best)
            close = np.flatnonzero(block_best > cut)  # near duplicates are rare: count only rows that have one
            if len(close):
                q_near[close] += np.count_nonzero(dots[close] > cut, axis=1)
    mnd = np.maximum(0.0, 2.0 - 2.0 * best.astype(np.float64))
    mnd[best == -np.inf] = np.nan
    return mnd, near
