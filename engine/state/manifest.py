"""The run manifest: an append-only JSON-lines journal that makes a run's output exactly-once and resumable.

Line 1 names the run (config hash, input fingerprint). Then, in order of commit:
  {"kind": "shard", "round": R, "file": "part-<digest>.parquet", "rows": n, ...}  a ledger shard is complete
  {"kind": "round", "round": R, "counts": {...}}                                round R's outputs are written
A shard file counts only once its line is here: files without one (a crash between rename and journal) are
orphans that resume deletes and recomputes. Each line is flushed and fsynced; a torn last line is ignored.
On an object store (engine/state/storage.py), which cannot append, every entry rewrites the whole journal object
(it is small): the upload completing is the commit."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

from engine.state.storage import Storage

log = logging.getLogger("engine.state")

MANIFEST = "manifest.jsonl"
VERSION = 1


class ResumeRefused(ValueError):
    """The output directory holds a run this one cannot continue; the message says what to do."""


def input_fingerprint(files: list[Path]) -> list[dict]:
    """What the seed inputs were: path, size and modification time of each file (or dataset directory)."""
    out = []
    for path in files:
        parts = sorted(p for p in Path(path).rglob("*") if p.is_file()) if Path(path).is_dir() else [Path(path)]
        out.append({
            "path": str(Path(path).resolve()),
            "bytes": sum(p.stat().st_size for p in parts),
            "mtime_ns": max((p.stat().st_mtime_ns for p in parts), default=0),
        })
    return out


class Manifest:
    """The journal of one output directory."""

    def __init__(self, path: Path, header: dict, entries: list[dict], storage: Storage | None = None):
        self.path = path
        self.header = header
        self.entries = entries
        self.storage = storage or Storage.resolve(path.parent)

    @classmethod
    def open(cls, output_dir: "Path | str | Storage", config_hash: str, inputs: list[dict], resume: bool,
             data_shape: dict | None = None) -> "Manifest":
        """The manifest to continue (same config and inputs) or a new one; refuses a mismatch when resuming.
        `output_dir` is a local folder, a URI or a Storage. `data_shape` is the field mapping the rows are read
        with (part of `config_hash`, kept readable here)."""
        storage = Storage.resolve(output_dir)
        output_dir = storage.describe()
        path = storage.root / MANIFEST
        header = {"kind": "run", "version": VERSION, "config_hash": config_hash, "inputs": inputs,
                  "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        if data_shape is not None:
            header["data_shape"] = data_shape
        if resume and storage.exists(path):
            lines = read_lines(path, storage)
            if lines and lines[0].get("kind") == "run":
                old = lines[0]
                _check_same(old, config_hash, inputs, output_dir, data_shape)
                log.info("resuming %s: %d journal entries", output_dir, len(lines) - 1)
                _rewrite(storage, path, lines)  # without a torn last line: new entries start on a line of their own
                return cls(path, old, lines[1:], storage)
        storage.makedirs(path.parent)
        _rewrite(storage, path, [header])
        return cls(path, header, [], storage)

    def append(self, entry: dict) -> None:
        if self.storage.local:
            self.storage.append_text(self.path, json.dumps(entry, ensure_ascii=False) + "\n")
        else:
            _rewrite(self.storage, self.path, [self.header, *self.entries, entry])
        self.entries.append(entry)

    def record_shard(self, round_num: int, file: str, rows: int, ok: int) -> None:
        self.append({"kind": "shard", "round": round_num, "file": file, "rows": rows, "ok": ok,
                     "committed": round(time.time(), 3)})

    def shards(self, round_num: int) -> dict[str, dict]:
        """The committed ledger shards of a round since its last reset, by file name (a file journaled twice
        counts once)."""
        shards: dict[str, dict] = {}
        for e in self.entries:
            if e["round"] == round_num and e["kind"] == "reset":
                shards = {}
            elif e["round"] == round_num and e["kind"] == "shard":
                shards[e["file"]] = e
        return shards

    def recommitted(self) -> int:
        """Shard commits journaled again under a name already journaled (since the round's last reset): a commit
        task Ray ran again after its first result arrived, e.g. to rebuild output lost with a node. The same rows
        give the same name, so the shard counts once."""
        seen: set[tuple[int, str]] = set()
        again = 0
        for e in self.entries:
            if e["kind"] == "reset":
                seen = {key for key in seen if key[0] != e["round"]}
            elif e["kind"] == "shard":
                key = (e["round"], e["file"])
                again += key in seen
                seen.add(key)
        return again

    def reset_round(self, round_num: int) -> None:
        """Forget a round's committed shards (a round whose rows cannot be matched to its input restarts)."""
        self.append({"kind": "reset", "round": round_num, "committed": round(time.time(), 3)})

    def record_round(self, round_num: int, counts: dict) -> None:
        self.append({"kind": "round", "round": round_num, "counts": counts, "committed": round(time.time(), 3)})

    def record_setup(self, decisions: dict) -> None:
        """What a recipe's set-up step decided (the Auto Evol-Instruct optimizer's method): journaled as round 0,
        so a resumed run reuses it and the hashed config is never changed."""
        self.append({"kind": "setup", "round": 0, "decisions": decisions, "committed": round(time.time(), 3)})

    def setup_decisions(self) -> dict | None:
        """The set-up step's decisions, or None if it has not run in this output directory."""
        found = [e for e in self.entries if e["kind"] == "setup"]
        return found[-1]["decisions"] if found else None

    def round_counts(self, round_num: int) -> dict | None:
        """The counts round `round_num` finished with, or None if it has not finished."""
        done = [e for e in self.entries if e["kind"] == "round" and e["round"] == round_num]
        return done[-1]["counts"] if done else None


def _rewrite(storage: Storage, path: Path, entries: list[dict]) -> None:
    storage.write_text(path, "".join(json.dumps(entry, ensure_ascii=False) + "\n" for entry in entries), durable=True)


def read_lines(path: Path, storage: Storage | None = None) -> list[dict]:
    """The journal's entries; a torn last line (the process died mid-write) is dropped."""
    entries = []
    raw = (storage or Storage.resolve(Path(path).parent)).read_text(path).split("\n")
    for number, line in enumerate(raw, 1):
        if not line.strip():
            continue
        try:
            entries.append(json.loads(line))
        except json.JSONDecodeError:
            if number < len(raw) - 1:  # only the last line may be torn
                raise ResumeRefused(f"{path}:{number}: the run manifest is corrupt; rerun with run.resume=false")
            log.warning("%s:%d: dropping a torn last line", path, number)
    return entries


def _check_same(old: dict, config_hash: str, inputs: list[dict], output_dir: Path, data_shape: dict | None) -> None:
    fresh = "rerun with run.resume=false to start over, or choose another run.output_dir"
    if data_shape is not None and old.get("data_shape", data_shape) != data_shape:
        raise ResumeRefused(
            f"{output_dir} holds a run that read its rows with a different field mapping ({old['data_shape']}; this "
            f"run {data_shape}); {fresh}"
        )
    if old.get("config_hash") != config_hash:
        raise ResumeRefused(
            f"{output_dir} holds a run with a different configuration (config hash {old.get('config_hash')}, this "
            f"run {config_hash}; compare its config.yaml); {fresh}"
        )
    before = {entry["path"]: entry for entry in old.get("inputs", [])}
    now = {entry["path"]: entry for entry in inputs}
    if before.keys() != now.keys():
        added, removed = sorted(now.keys() - before.keys()), sorted(before.keys() - now.keys())
        raise ResumeRefused(f"the seed files changed since {output_dir} was started (added {added}, removed "
                            f"{removed}); {fresh}")
    for name, entry in now.items():
        if entry != before[name]:
            raise ResumeRefused(f"seed file {name} changed since {output_dir} was started (size or modification "
                                f"time differ); {fresh}")
