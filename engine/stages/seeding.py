"""Per-batch random seeds derived from the run seed and the rows' ids, so reruns sample the same way."""

from __future__ import annotations

import hashlib


def batch_seed(run_seed: int, round_num: int, row_ids) -> int:
    """A 31-bit seed from the run seed, the round and the ids of the rows being generated."""
    digest = hashlib.blake2b(f"{run_seed}|{round_num}|".encode(), digest_size=4)
    for row_id in row_ids:
        digest.update(str(row_id).encode())
        digest.update(b"\x1f")
    return int.from_bytes(digest.digest(), "big") & 0x7FFFFFFF
