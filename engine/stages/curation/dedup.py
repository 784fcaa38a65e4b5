"""Deduplication: exact and near-duplicate rows of a round, the first occurrence kept (lowest seed position, then
row id, so the result is the same for any sharding).

Planned by engine/recipes/steps.py's Deduplicate from two group-bys on the executor, so no process holds every
row: (1) `candidate_keys` gives each ok row a digest of its normalised instruction + input and one key per LSH band
of its MinHash signature (datasketch; bands x rows picked by datasketch for `dedup.threshold`), and
`candidate_pairs` turns rows sharing a key into candidate pairs; (2) `pair_rows` brings each candidate pair's two
rows together and `checked_pairs` keeps the pairs that really are duplicates: the same normalised text (exact), or
shingle sets whose Jaccard is at least the threshold (near). MinHash only proposes; the real sets decide, so the
threshold means the same thing with any number of permutations. `plan_drops` walks the checked rows in order and
drops a row that duplicates a row already kept; the DropDuplicates stage rejects it as `duplicate`, naming it."""

from __future__ import annotations

import hashlib
import zlib
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np

from engine.config import ConfigError, DedupConfig
from engine.rows.records import ok_mask, reject
from engine.stages.generation.eliminate import normalise

SHINGLES = ("word", "char")
MINHASH_SEED = 1  # datasketch's default permutations: signatures of one run are comparable with each other
# A bucket of at most this many rows is checked pair by pair; a bigger one (an exact duplicate repeated many times,
# a very common phrase) only against its first row, so a bucket never costs more than this squared.
ALL_PAIRS_MAX = 8
# Keyed rows per group the executor reduces at once: groups are hash partitions of the keys, so a reduce call
# stays this size at any number of rows, and there are few calls (not one per key).
GROUP_ROWS = 200_000
_MASK64 = np.uint64(0xFFFFFFFFFFFFFFFF)


def dedup_active(cfg: DedupConfig, recipe_default: bool) -> bool:
    """Whether a run deduplicates: dedup.enabled when set, else the recipe's default (recipe=curate: on)."""
    return recipe_default if cfg.enabled is None else bool(cfg.enabled)


def check_dedup(cfg: DedupConfig) -> None:
    """Refuse, before any model loads, dedup.* settings that could not run."""
    if not (cfg.exact or cfg.near):
        raise ConfigError("dedup.exact and dedup.near are both false: turn one on, or set dedup.enabled=false")
    if not 0.0 < cfg.threshold <= 1.0:
        raise ConfigError(f"dedup.threshold={cfg.threshold} must be a Jaccard similarity in (0, 1]")
    if cfg.shingle not in SHINGLES:
        raise ConfigError(f"dedup.shingle={cfg.shingle!r} is not one of {SHINGLES}")
    if cfg.shingle_size < 1:
        raise ConfigError(f"dedup.shingle_size={cfg.shingle_size} must be at least 1")
    if not 0.0 <= cfg.recall_weight <= 1.0:
        raise ConfigError(f"dedup.recall_weight={cfg.recall_weight} must be in [0, 1]")
    if cfg.num_perm < 2:
        raise ConfigError(f"dedup.num_perm={cfg.num_perm} must be at least 2")
    if cfg.near:
        try:
            lsh_shape(cfg.threshold, cfg.num_perm, cfg.recall_weight)
        except ValueError as err:
            raise ConfigError(f"dedup.num_perm={cfg.num_perm}, dedup.threshold={cfg.threshold}: {err}") from err


@lru_cache(maxsize=16)
def lsh_shape(threshold: float, num_perm: int, recall_weight: float) -> tuple[int, int]:
    """(bands, rows per band) datasketch's MinHashLSH picks for the threshold, weighing a missed pair
    `recall_weight` and a false candidate the rest (false candidates are checked away afterwards)."""
    from datasketch import MinHashLSH

    weights = (1.0 - recall_weight, recall_weight)
    weights = (weights[0], 1.0 - weights[0])  # exactly 1.0 in sum, as datasketch asks
    lsh = MinHashLSH(threshold=threshold, num_perm=num_perm, weights=weights)
    return lsh.b, lsh.r


def normalised(instruction: str, input_text: str) -> str:
    """What "the same row" means: the normalised instruction and input (lower case, no punctuation, single
    spaces: eliminate.normalise), kept apart by a separator."""
    return f"{normalise(str(instruction))}\x1f{normalise(str(input_text))}"


def shingles(text: str, kind: str, size: int) -> set[bytes]:
    """The shingle set of a normalised text: runs of `size` words (kind word) or characters (kind char); a text
    shorter than one shingle is one shingle; an empty text has none."""
    words = text.replace("\x1f", " ").split()
    if kind == "char":
        joined = " ".join(words)
        units = [joined[i:i + size] for i in range(max(1, len(joined) - size + 1))] if joined else []
    else:
        units = [" ".join(words[i:i + size]) for i in range(max(1, len(words) - size + 1))] if words else []
    return {unit.encode("utf-8", "surrogatepass") for unit in units}


def jaccard(a: set, b: set) -> float:
    """Jaccard similarity of two shingle sets (two empty sets: 1)."""
    if not a and not b:
        return 1.0
    return len(a & b) / len(a | b)


def signatures(sets: list[set[bytes]], num_perm: int) -> np.ndarray:
    """MinHash signatures (datasketch, one row per set), as a (rows, num_perm) uint32 array. Shingles are hashed
    with CRC-32 rather than datasketch's default SHA-1 (a third of the time here, measured): datasketch's affine32
    scheme mixes every input hash with the MurmurHash3 finalizer before permuting it."""
    from datasketch import MinHash

    out = np.empty((len(sets), num_perm), dtype=np.uint32)
    for row, minhash in enumerate(MinHash.generator(sets, num_perm=num_perm, seed=MINHASH_SEED, hashfunc=zlib.crc32)):
        out[row] = minhash.hashvalues
    return out


def _mix(values: np.ndarray) -> np.ndarray:
    """A 64-bit avalanche of each value (the MurmurHash3 finalizer), for bucket keys."""
    values = values ^ (values >> np.uint64(33))
    values = values * np.uint64(0xFF51AFD7ED558CCD)
    values = values ^ (values >> np.uint64(33))
    values = values * np.uint64(0xC4CEB9FE1A85EC53)
    return values ^ (values >> np.uint64(33))


def band_keys(signature: np.ndarray, bands: int, rows: int) -> np.ndarray:
    """One 64-bit key per LSH band of each signature, (n, bands): equal bands give equal keys, and band i's keys
    never meet band j's."""
    n = signature.shape[0]
    keys = np.empty((n, bands), dtype=np.uint64)
    with np.errstate(over="ignore"):
        for band in range(bands):
            key = np.full(n, _mix(np.array([band + 1], dtype=np.uint64))[0], dtype=np.uint64)
            for col in range(band * rows, (band + 1) * rows):
                key = _mix((key * np.uint64(0x9E3779B97F4A7C15)) ^ signature[:, col].astype(np.uint64))
            keys[:, band] = key
    return keys


def digest64(text: str) -> int:
    """A 64-bit digest of a string (an exact-text key, a row id's handle) as a signed int64 value."""
    raw = hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=8).digest()
    return int.from_bytes(raw, "little", signed=True)


def _ok_rows(batch: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str]]:
    """(ids, seed positions, handles, normalised texts) of the ok rows of a batch."""
    ok = ok_mask(batch)
    ids = np.asarray(batch["id"], dtype=object)[ok]
    positions = np.asarray(batch["seed_index"], dtype=np.int64)[ok]
    texts = [normalised(i, x) for i, x in zip(np.asarray(batch["instruction"], dtype=object)[ok],
                                              np.asarray(batch["input"], dtype=object)[ok])]
    handles = np.fromiter((digest64(str(i)) for i in ids), dtype=np.int64, count=len(ids))
    return ids, positions, handles, texts


def candidate_keys(batch: dict, cfg: DedupConfig, parts: int) -> dict:
    """Pass 1 explode: each ok row once per key (its exact-text digest, its LSH bands), with its seed position
    and id handle; `part` (the key's hash partition) is what the executor groups by."""
    _, positions, handles, texts = _ok_rows(batch)
    keys, owners = [], []
    if cfg.exact:
        keys.append(np.fromiter((digest64(t) for t in texts), dtype=np.int64, count=len(texts)).view(np.uint64))
        owners.append(np.arange(len(texts)))
    if cfg.near and texts:
        bands, rows = lsh_shape(cfg.threshold, cfg.num_perm, cfg.recall_weight)
        sets = [shingles(t, cfg.shingle, cfg.shingle_size) for t in texts]
        has = np.flatnonzero([bool(s) for s in sets])  # a row without shingles has no signature to band
        banded = band_keys(signatures([sets[i] for i in has], cfg.num_perm), bands, rows)
        keys.append(banded.reshape(-1))
        owners.append(np.repeat(has, bands))
    key = np.concatenate(keys) if keys else np.zeros(0, dtype=np.uint64)
    owner = np.concatenate(owners) if owners else np.zeros(0, dtype=np.int64)
    return {"part": (key % np.uint64(parts)).astype(np.int64), "key": key.view(np.int64),
            "pos": positions[owner], "handle": handles[owner]}


def candidate_pairs(group: dict) -> dict:
    """Pass 1 reduce: (first, other) id handles of rows sharing a key, first before other in seed order."""
    key, pos, handle = (np.asarray(group[c], dtype=np.int64) for c in ("key", "pos", "handle"))
    order = np.lexsort((handle, pos, key))
    key, pos, handle = key[order], pos[order], handle[order]
    starts = np.flatnonzero(np.r_[True, key[1:] != key[:-1]])
    ends = np.r_[starts[1:], len(key)]
    first, other = [], []
    for lo, hi in zip(starts[ends - starts > 1], ends[ends - starts > 1]):
        members = handle[lo:hi]
        if hi - lo <= ALL_PAIRS_MAX:
            for i in range(len(members) - 1):
                first.extend([members[i]] * (len(members) - 1 - i))
                other.extend(members[i + 1:])
        else:
            first.extend([members[0]] * (len(members) - 1))
            other.extend(members[1:])
    return {"first": np.asarray(first, dtype=np.int64), "other": np.asarray(other, dtype=np.int64)}


@dataclass(frozen=True)
class PairIndex:
    """The candidate pairs, by the handles at either end: what pass 2's explode needs to find a row's pairs."""

    handles: np.ndarray  # both ends of every pair, sorted
    pairs: np.ndarray  # the pair number of each entry of `handles`

    @classmethod
    def of(cls, first: np.ndarray, other: np.ndarray) -> "PairIndex":
        ends = np.concatenate([first, other])
        numbers = np.concatenate([np.arange(len(first)), np.arange(len(other))])
        order = np.argsort(ends, kind="stable")
        return cls(ends[order], numbers[order])

    def __len__(self) -> int:
        return len(self.handles) // 2


def unique_pairs(table) -> tuple[np.ndarray, np.ndarray]:
    """Distinct (first, other) handle pairs of pass 1's output (a pair shares several bands)."""
    if not table.num_rows:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    both = np.stack([table["first"].to_numpy(), table["other"].to_numpy()], axis=1)
    both = np.unique(both, axis=0)
    return both[:, 0], both[:, 1]


def pair_rows(batch: dict, index: PairIndex, parts: int) -> dict:
    """Pass 2 explode: each ok row that is in a candidate pair, once per pair, with its normalised text."""
    ids, positions, handles, texts = _ok_rows(batch)
    lo = np.searchsorted(index.handles, handles, side="left")
    hi = np.searchsorted(index.handles, handles, side="right")
    count = hi - lo
    rows = np.repeat(np.arange(len(handles)), count)
    starts = np.repeat(lo, count)
    offsets = np.arange(len(rows)) - np.repeat(np.cumsum(count) - count, count)
    pair = index.pairs[starts + offsets].astype(np.int64)
    text = np.asarray(texts, dtype=object)[rows] if len(rows) else np.zeros(0, dtype=object)
    return {"part": pair % parts, "pair": pair, "pos": positions[rows], "id": np.asarray(ids[rows], dtype=str),
            "text": np.asarray(text, dtype=str)}


def checked_pairs(group: dict, cfg: DedupConfig) -> dict:
    """Pass 2 reduce: the candidate pairs that are duplicates, (first, other) in seed order, with their kind
    (exact: the same normalised text; near: shingle Jaccard >= threshold) and Jaccard."""
    pair, pos = np.asarray(group["pair"], dtype=np.int64), np.asarray(group["pos"], dtype=np.int64)
    ids, texts = np.asarray(group["id"], dtype=str), np.asarray(group["text"], dtype=object)
    order = np.lexsort((ids, pos, pair))
    out: dict[str, list] = {"first": [], "first_pos": [], "other": [], "other_pos": [], "kind": [], "jaccard": []}
    starts = np.flatnonzero(np.r_[True, pair[order][1:] != pair[order][:-1]])
    for rows in np.split(order, starts[1:]):
        for i in range(len(rows) - 1):  # two rows; more only when two ids share a 64-bit handle
            for j in range(i + 1, len(rows)):
                a, b = rows[i], rows[j]
                if ids[a] == ids[b]:
                    continue
                found = duplicate_kind(str(texts[a]), str(texts[b]), cfg)
                if found is not None:
                    for name, value in zip(out, (ids[a], pos[a], ids[b], pos[b], *found)):
                        out[name].append(value)
    return {"first": np.asarray(out["first"], dtype=str), "first_pos": np.asarray(out["first_pos"], dtype=np.int64),
            "other": np.asarray(out["other"], dtype=str), "other_pos": np.asarray(out["other_pos"], dtype=np.int64),
            "kind": np.asarray(out["kind"], dtype=str), "jaccard": np.asarray(out["jaccard"], dtype=np.float64)}


def duplicate_kind(a: str, b: str, cfg: DedupConfig) -> tuple[str, float] | None:
    """("exact", 1.0), ("near", Jaccard) or None for two normalised texts under the dedup settings."""
    if cfg.exact and a == b:
        return "exact", 1.0
    if cfg.near:
        similarity = jaccard(shingles(a, cfg.shingle, cfg.shingle_size), shingles(b, cfg.shingle, cfg.shingle_size))
        if similarity >= cfg.threshold:
            return "near", similarity
    return None


@dataclass(frozen=True)
class DedupPlan:
    """What deduplication drops: row id -> (the kept id it duplicates, kind, Jaccard), and what it looked at."""

    drops: dict = field(default_factory=dict)
    threshold: float = 0.0
    bands: int = 0
    rows_per_band: int = 0
    candidate_pairs: int = 0  # distinct pairs that shared a key
    duplicate_pairs: int = 0  # of those, the pairs the check confirmed

    def as_dict(self) -> dict:
        kinds = [kind for _, kind, _ in self.drops.values()]
        return {"exact": kinds.count("exact"), "near": kinds.count("near"), "dropped": len(self.drops),
                "threshold": self.threshold, "bands": self.bands, "rows_per_band": self.rows_per_band,
                "candidate_pairs": self.candidate_pairs, "duplicate_pairs": self.duplicate_pairs}


def plan_drops(table) -> dict:
    """The drop map from the confirmed pairs: rows in seed order (position, then id); a row is dropped when it
    duplicates a row already kept, naming the earliest such row. A row that only duplicates dropped rows is kept,
    so every drop names a kept row it really duplicates (no chains)."""
    if not table.num_rows:
        return {}
    cols = {name: table[name].to_pylist() for name in table.column_names}
    earlier: dict[str, list] = {}
    order: dict[str, tuple] = {}
    for first, first_pos, other, other_pos, kind, similarity in zip(
            cols["first"], cols["first_pos"], cols["other"], cols["other_pos"], cols["kind"], cols["jaccard"]):
        order[first], order[other] = (first_pos, first), (other_pos, other)
        earlier.setdefault(other, []).append(((first_pos, first), kind, similarity))
    kept, drops = set(), {}
    for rank in sorted(order.values()):
        row = rank[1]
        matches = sorted(m for m in earlier.get(row, []) if m[0][1] in kept)
        if matches:
            (_, kept_id), kind, similarity = matches[0]
            drops[row] = (kept_id, kind, float(similarity))
        else:
            kept.add(row)
    return drops


def describe(kept_id: str, kind: str, similarity: float) -> str:
    """A dropped row's detail: the id it duplicates, and how."""
    return f"duplicate of {kept_id} ({kind})" if kind == "exact" else \
        f"duplicate of {kept_id} (near, Jaccard {similarity:.3f})"


class DropDuplicates:
    """Rejects the ok rows the plan drops, with reason `duplicate` and the kept id they duplicate."""

    uses_model = False

    def __init__(self, plan: DedupPlan, torch_threads: int | None = None):
        self.plan = plan

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        found = [self.plan.drops.get(str(i)) for i in batch["id"]]
        drop = ok_mask(batch) & np.array([f is not None for f in found], dtype=bool)
        details = np.array([describe(*f) if f is not None else "" for f in found], dtype=object)
        reject(batch, drop, "duplicate", details, stage="dedup")
        return batch
