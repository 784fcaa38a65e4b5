"""The shape of a record as it flows between stages: column names, id scheme, lineage, status."""

from __future__ import annotations

import hashlib

import numpy as np

# Alpaca fields (LLaMA-Factory's format) that every record carries.
ALPACA_FIELDS = ("instruction", "input", "output")
# The text a record carries: the alpaca fields plus a conversation's system prompt ("" when none), which is kept
# and written to every output unchanged (no stage puts it into a prompt).
TEXT_FIELDS = ALPACA_FIELDS + ("system",)

# Lineage: where a row came from and how it was made.
LINEAGE_FIELDS = (
    "id",  # unique per row; derived from the parent's id, so a retried task reproduces it
    "seed_id",  # id of the seed row at the root of this row's chain
    "parent_id",  # id of the row this one was evolved from ("" for seeds)
    "seed_index",  # position of the seed in the seed set; drives the method rotation
    "round",  # 0 for seeds, r for the r-th evolution
    "method",  # evolution method that produced the instruction ("" for seeds)
    "evolver",  # model name that evolved it
    "parent_instruction",  # the instruction this one was evolved from
    "source_file",
    "source_line",
)

# Every row carries a status; rejected rows travel on as data and end in the rejects sink.
STATUS_OK = "ok"
STATUS_REJECTED = "rejected"
# `reason` is a short code that summaries count by; `detail` is the human message (file, line, field).
STATUS_FIELDS = ("status", "reason", "detail", "rejected_at")


def seed_row_id(instruction: str, input_text: str, position: int) -> str:
    """Stable id of a seed row: its content digest plus its position, so duplicates stay distinct."""
    digest = hashlib.blake2b(f"{instruction}\x1f{input_text}".encode("utf-8", "surrogatepass"), digest_size=6)
    return f"s{position:07d}-{digest.hexdigest()}"


def evolved_row_id(parent_id: str, round_num: int) -> str:
    """Id of the row evolved from `parent_id` in `round_num`: unique and reproducible on retry."""
    return f"{parent_id}.r{round_num}"


def ok_mask(batch: dict[str, np.ndarray]) -> np.ndarray:
    """Rows a stage should work on (earlier stages did not reject them)."""
    return np.asarray(batch["status"]) == STATUS_OK


def has_output(batch: dict[str, np.ndarray]) -> np.ndarray:
    """Rows whose `output` holds more than whitespace."""
    return np.array([bool(str(text).strip()) for text in batch["output"]], dtype=bool)


def reject(batch: dict[str, np.ndarray], mask, reasons, details, stage: str) -> None:
    """Mark the rows under `mask` rejected by `stage`, in place.

    `reasons` and `details` are either one string for all masked rows or full-length sequences aligned with
    the batch (only the masked entries are used)."""
    mask = np.asarray(mask, dtype=bool)
    if not mask.any():
        return
    for name, value in (("status", STATUS_REJECTED), ("reason", reasons), ("detail", details), ("rejected_at", stage)):
        col = np.asarray(batch[name], dtype=object).copy()
        col[mask] = value if isinstance(value, str) else np.asarray(value, dtype=object)[mask]
        batch[name] = col


def reject_with_reasons(batch: dict[str, np.ndarray], reasons: list[str], details: list[str], stage: str) -> None:
    """Reject, in place, every row whose entry in the full-length `reasons` is non-empty."""
    reject(batch, np.array([bool(r) for r in reasons], dtype=bool), reasons, details, stage)


def column(values, dtype=object) -> np.ndarray:
    """A batch column; strings as object arrays so Arrow keeps them as strings."""
    return np.asarray(list(values), dtype=dtype)


def default_columns(n: int, defaults: dict) -> dict[str, np.ndarray]:
    """Columns a stage adds, filled with each one's default (rows the stage skips keep it)."""
    return {
        name: np.full(n, value, dtype=object if isinstance(value, str) else type(value))
        for name, value in defaults.items()
    }
