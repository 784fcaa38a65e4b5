"""Quantiles as the analysis writes them and the report reads them back: one set of levels, one empty case."""

from __future__ import annotations

import numpy as np

QUANTILES = {"p10": 0.10, "p25": 0.25, "p50": 0.50, "p75": 0.75, "p90": 0.90}


def quantiles(values) -> dict[str, float | None]:
    """p10..p90 of `values` (finite numbers); every key is there and None when there are no values, so a reader
    finds the same keys either way."""
    values = np.asarray(values, dtype=np.float64)
    if not values.size:
        return dict.fromkeys(QUANTILES)
    return {key: float(v) for key, v in zip(QUANTILES, np.quantile(values, list(QUANTILES.values())))}
