"""Per-row random seeds derived from the run seed, the step and the row's id, so the same command on the same
data samples every row the same way, whatever batch or actor the row lands in."""

from __future__ import annotations

import hashlib


def row_seed(run_seed: int, step: str, round_num: int, row_id: str) -> int:
    """A 63-bit seed for one row's sampling in one step (e.g. "evolve") of one round."""
    digest = hashlib.blake2b(f"{run_seed}\x1f{step}\x1f{round_num}\x1f{row_id}".encode(), digest_size=8)
    return int.from_bytes(digest.digest(), "big") & 0x7FFF_FFFF_FFFF_FFFF


def row_seeds(run_seed: int, step: str, round_num: int, row_ids) -> list[int]:
    """`row_seed` for each id, in order."""
    return [row_seed(run_seed, step, round_num, str(row_id)) for row_id in row_ids]
