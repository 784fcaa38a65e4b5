"""Output-space analysis (paper Fig. 5): the evolver's top-1 probability and entropy at every generated position.

The backend streams each completion's positions into fixed-bin histograms (`OutputStats`); this module stores
them on the row as one JSON column, and adds rows' histograms up per evolver for the round summary."""

from __future__ import annotations

import json

import numpy as np

from engine.backends.base import ENTROPY_EDGES, TOP1_EDGES, Generation

COLUMN = "output_space"  # JSON per row: {"top1": [...], "entropy": [...], "top1_sum", "entropy_sum", "positions"}


def record_output_space(batch: dict[str, np.ndarray], rows, generations: list[Generation]) -> None:
    """Set the output-space column of the generated rows (aligned with `rows`), "" elsewhere; in place."""
    values = np.full(len(batch["id"]), "", dtype=object)
    for i, generation in zip(rows, generations):
        stats = generation.stats
        if stats is not None and stats.positions:
            values[i] = json.dumps({
                "top1": stats.top1_counts.tolist(), "entropy": stats.entropy_counts.tolist(),
                "top1_sum": stats.top1_sum, "entropy_sum": stats.entropy_sum, "positions": stats.positions,
            })
    batch[COLUMN] = values


def empty_histograms() -> dict:
    return {"top1_counts": [0] * (len(TOP1_EDGES) - 1), "entropy_counts": [0] * (len(ENTROPY_EDGES) - 1),
            "top1_sum": 0.0, "entropy_sum": 0.0, "positions": 0}


def _add(total: dict, top1: list[int], entropy: list[int], sums: dict) -> None:
    """Add histogram counts and the sums in `sums` (top1_sum, entropy_sum, positions) to `total`, in place."""
    total["top1_counts"] = [a + b for a, b in zip(total["top1_counts"], top1)]
    total["entropy_counts"] = [a + b for a, b in zip(total["entropy_counts"], entropy)]
    for key in ("top1_sum", "entropy_sum", "positions"):
        total[key] += sums[key]


def add_row(total: dict, value: str) -> None:
    """Add one row's JSON histograms to a per-evolver total (as `empty_histograms` makes)."""
    row = json.loads(value)
    _add(total, row["top1"], row["entropy"], row)


def merge_totals(mine: dict, other: dict) -> None:
    """Add per-evolver totals `other` into `mine`, in place."""
    for evolver, total in other.items():
        _add(mine.setdefault(evolver, empty_histograms()), total["top1_counts"], total["entropy_counts"], total)


def histogram_summary(totals: dict) -> dict:
    """summary.json["output_space"]: per evolver, the histograms with their bin edges and the means."""
    out = {}
    for evolver, total in sorted(totals.items()):
        n = total["positions"]
        out[evolver] = {
            "top1_edges": TOP1_EDGES.tolist(), "top1_counts": total["top1_counts"],
            "entropy_edges": ENTROPY_EDGES.tolist(), "entropy_counts": total["entropy_counts"],
            "positions": n,
            "mean_top1": total["top1_sum"] / n if n else None,
            "mean_entropy": total["entropy_sum"] / n if n else None,
        }
    return out
