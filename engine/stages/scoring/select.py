"""Select: keep the top of the data by IC-IFD (default), IFD, or the paper's baselines, with one global cut.

The cut is planned over every scored row of the round at once (phase 1), then applied batch by batch in any
actor (phase 2), so the kept set is exactly the top of the union whatever the sharding. Ties are broken by
row id, so the same data always gives the same selection."""

from __future__ import annotations

import math
from dataclasses import dataclass

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


@dataclass(frozen=True)
class Cut:
    """A planned selection: rows ranking at or above (value, last_id) are kept."""

    by: str
    column: str
    descending: bool
    value: float | None  # the score of the last kept row (None: nothing kept)
    last_id: str | None
    kept: int
    candidates: int
    ifd_below_one: bool

    def as_dict(self) -> dict:
        return {"by": self.by, "cut_value": self.value, "cut_last_id": self.last_id, "kept": self.kept,
                "candidates": self.candidates, "ifd_below_one": self.ifd_below_one}


def selection_active(cfg: SelectConfig) -> bool:
    """True when the config asks for any cut at all."""
    return cfg.fraction is not None or cfg.top_k is not None or cfg.threshold is not None or cfg.ifd_below_one


def check_select(cfg: SelectConfig, scoring_enabled: bool) -> None:
    """Refuse, before any generation runs, a selection that could not be applied."""
    if cfg.by not in RANKINGS:
        raise ConfigError(f"select.by={cfg.by!r} is not one of {sorted(RANKINGS)}")
    if selection_active(cfg) and not scoring_enabled:
        raise ConfigError("select.* needs scores: set scoring.enabled=true or drop the selection settings")
    if cfg.fraction is not None and not 0.0 < cfg.fraction <= 1.0:
        raise ConfigError(f"select.fraction={cfg.fraction} must be in (0, 1]")


def eligible(scores: np.ndarray, ifd: np.ndarray, ifd_below_one: bool) -> np.ndarray:
    """Rows that can be selected: a finite score, and IFD < 1 when the Superfiltering filter is on."""
    ok = np.isfinite(scores)
    if ifd_below_one:
        ok &= np.isfinite(ifd) & (ifd < 1.0)
    return ok


def plan_cut(scores: np.ndarray, ids: np.ndarray, ifd: np.ndarray, cfg: SelectConfig) -> Cut:
    """Phase 1: the exact cut over all candidate rows (scores and ids of every ok row of the round)."""
    check_select(cfg, scoring_enabled=True)
    column, descending = RANKINGS[cfg.by]
    scores = np.asarray(scores, dtype=np.float64)
    ids = np.asarray(ids, dtype=object)
    mask = eligible(scores, np.asarray(ifd, dtype=np.float64), cfg.ifd_below_one)
    s, i = scores[mask], ids[mask]
    order = np.lexsort((i.astype(str), -s if descending else s))  # by score, then id: deterministic ties
    k = len(order)
    if cfg.fraction is not None:
        k = min(k, math.ceil(cfg.fraction * len(scores) - 1e-9))
    if cfg.top_k is not None:
        k = min(k, cfg.top_k)
    if cfg.threshold is not None:
        k = min(k, int(np.sum(s >= cfg.threshold) if descending else np.sum(s <= cfg.threshold)))
    if k <= 0:
        return Cut(cfg.by, column, descending, None, None, 0, len(scores), cfg.ifd_below_one)
    last = order[k - 1]
    return Cut(cfg.by, column, descending, float(s[last]), str(i[last]), k, len(scores), cfg.ifd_below_one)


def keep_mask(scores: np.ndarray, ids: np.ndarray, ifd: np.ndarray, cut: Cut) -> np.ndarray:
    """Phase 2: which rows of a batch the planned cut keeps."""
    scores = np.asarray(scores, dtype=np.float64)
    if cut.value is None:
        return np.zeros(len(scores), dtype=bool)
    ids = np.asarray(ids, dtype=object).astype(str)
    better = scores > cut.value if cut.descending else scores < cut.value
    tied = (scores == cut.value) & (ids <= cut.last_id)
    return (better | tied) & eligible(scores, np.asarray(ifd, dtype=np.float64), cut.ifd_below_one)


class Select:
    """Rejects the ok rows the cut does not keep, with reason `not_selected`."""

    uses_model = False

    def __init__(self, cut: Cut, torch_threads: int | None = None):
        self.cut = cut

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        keep = keep_mask(batch[self.cut.column], batch["id"], batch["ifd"], self.cut)
        drop = ok_mask(batch) & ~keep
        detail = f"below the {self.cut.by} cut {self.cut.value!r} (kept {self.cut.kept} of {self.cut.candidates})"
        reject(batch, drop, "not_selected", detail, stage="select")
        return batch
