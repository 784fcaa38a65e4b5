"""A round's ledger: the committed shards a round streams into before its outputs are split out, and what a
resumed run learns from them. Ray-free; engine/run/runner.py runs these functions in tasks."""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from engine.rows.records import STATUS_OK
from engine.state.storage import Storage

log = logging.getLogger("engine.state")
COMMITTED = pa.schema([("file", pa.string()), ("rows", pa.int64()), ("ok", pa.int64())])


def shard_name(ids: list[str]) -> str:
    """A shard's file name: a digest of its row ids, so a retried task rewrites the same file instead of adding
    a second copy of its rows."""
    digest = hashlib.blake2b(digest_size=10)
    for row_id in ids:
        digest.update(row_id.encode("utf-8", "surrogatepass") + b"\x1f")
    return f"part-{digest.hexdigest()}.parquet"


def commit_shard(batch: pa.Table, ledger: str, storage: Storage | None = None) -> pa.Table:
    """Write one shard of the round's ledger; returns its (file, rows, ok). Locally it is atomic by itself (write,
    then rename); on an object store it is written under its final name, and only the manifest entry the driver
    adds for it makes it count (`drop_orphans` deletes it otherwise). Either way a retry rewrites the same name."""
    if batch.num_rows == 0:
        return COMMITTED.empty_table()
    storage = storage or Storage.resolve(ledger)
    name = shard_name(batch["id"].to_pylist())
    target = Path(ledger) / name
    storage.makedirs(target.parent)
    storage.write_table(batch, target, tmp_name=f".{name}.{os.getpid()}.tmp")
    ok = int(pc.sum(pc.equal(batch["status"], STATUS_OK)).as_py() or 0)
    return pa.table({"file": [name], "rows": [batch.num_rows], "ok": [ok]}, schema=COMMITTED)


def drop_orphans(ledger: Path, committed: dict, storage: Storage | None = None) -> None:
    """Delete ledger files the manifest does not list: written, but the run died before journaling them."""
    storage = storage or Storage.resolve(ledger)
    for path in storage.files(ledger):
        if path.name not in committed:
            log.info("removing uncommitted %s", storage.describe(path))
            storage.remove(path)


def done_keys(files: list[Path], round_num: int, storage: Storage | None = None) -> pa.Array:
    """The round-input ids the committed shards already hold: the parent of an evolved row, else its own id."""
    keys = []
    for path in files:
        table = (storage or Storage.resolve(path)).read_table(path, columns=["id", "parent_id", "round"])
        evolved = pc.equal(table["round"], round_num)
        keys.append(pc.if_else(evolved, table["parent_id"], table["id"]).combine_chunks())
    return pa.concat_arrays(keys) if keys else pa.array([], pa.string())


def without_done(batch: pa.Table, done: pa.Array) -> pa.Table:
    """The rows of `batch` whose id is not in `done`."""
    return batch.filter(pc.invert(pc.is_in(batch["id"], value_set=done)))
