"""Seed readers: every row slot of a .jsonl, .json, .parquet, .csv, .tsv, HF .arrow file or saved HF dataset becomes
one record, valid or rejected with a reason code and a `file:line: ...` detail; `count_rows` counts the same slots.
A `Shape` (engine/read/shapes.py) says which source field fills which record field."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from engine.read.shapes import MISSING, Shape, kind, lookup
from engine.read.tables import Table, TableError, open_table
from engine.read.validate import REJECT_LOG_LIMIT, ReadPolicy, given_id, record_batches

__all__ = ["REJECT_LOG_LIMIT", "InputError", "ReadPolicy", "count_rows", "find_duplicate_ids", "first_rows",
           "iter_records", "list_input_files"]

SUPPORTED = (".jsonl", ".json", ".parquet", ".csv", ".tsv", ".arrow")
SUPPORTED_TEXT = ".jsonl, .json, .parquet, .csv, .tsv, .arrow or a saved HF dataset directory"
TABLES = (".parquet", ".csv", ".tsv", ".arrow", "hf")
HF_MARKERS = ("dataset_info.json", "state.json")
HF_DICT_META = "dataset_dict.json"  # top file of a saved DatasetDict: metadata, its split dirs are the data
BOM = b"\xef\xbb\xbf"
_WS = re.compile(r"[ \t\n\r]*")  # JSON whitespace, as the json module defines it


class InputError(ValueError):
    """A fatal problem with the seed path itself (missing, unsupported, unreadable, nothing to read)."""


def is_hf_dataset_dir(path: Path) -> bool:
    """Whether `path` is a directory written by `Dataset.save_to_disk`."""
    return path.is_dir() and any((path / marker).is_file() for marker in HF_MARKERS)


def list_input_files(path: str | Path) -> tuple[list[Path], list[Path]]:
    """The seed inputs under `path` (files and HF dataset dirs, sorted) and the unsupported files skipped."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"seed path {path} does not exist (supported: {SUPPORTED_TEXT})")
    if is_hf_dataset_dir(path) or (path.is_file() and path.suffix.lower() in SUPPORTED):
        return [path], []
    if path.is_file():
        kind = repr(path.suffix) if path.suffix else "without a suffix"
        raise InputError(f"cannot read {path}: file type {kind} is not supported (supported: {SUPPORTED_TEXT})")
    inputs, skipped = [], []
    _walk(path, inputs, skipped, set())
    if not inputs:
        raise InputError(f"no supported seed files found in directory {path} (supported: {SUPPORTED_TEXT})")
    return sorted(inputs), sorted(skipped)


def _walk(folder: Path, inputs: list[Path], skipped: list[Path], seen: set[Path]) -> None:
    if (real := folder.resolve()) in seen:  # a symlink loop
        return
    seen.add(real)
    for entry in folder.iterdir():
        if entry.name.startswith(".") or entry.name == HF_DICT_META:
            continue
        if is_hf_dataset_dir(entry):
            inputs.append(entry)
        elif entry.is_dir():
            _walk(entry, inputs, skipped, seen)
        elif entry.is_file():
            (inputs if entry.suffix.lower() in SUPPORTED else skipped).append(entry)


def count_rows(path: Path) -> int:
    """Row slots in one input (valid or not), cheaply, so positions can be assigned before reading."""
    path = Path(path)
    fmt = _format(path)
    if fmt in TABLES:
        table = _table(path, fmt)
        return table.num_rows + len(table.invalid)
    if fmt == ".jsonl":
        return sum(1 for _ in _jsonl_lines(path))
    return len(_json_slots(path)) if fmt == ".json" else 0


def _id_slots(path: Path, id_path: str, batch_rows: int = 10000) -> Iterator[tuple[int, int, object]]:
    """(index within the file, line, id value) of every row slot that carries an id at `id_path`."""
    fmt = _format(path)
    if fmt == ".jsonl":
        needle = f'"{id_path.split(".")[-1]}"'.encode()
        for index, (lineno, raw) in enumerate(_jsonl_lines(path)):
            if needle in raw:  # cheap pre-check: most seed files carry no ids at all
                value = _parse(raw.decode("utf-8", "replace"))[0]
                if isinstance(value, dict) and (found := lookup(value, id_path)) not in (None, MISSING):
                    yield index, lineno, found
    elif fmt == ".json":
        for index, (lineno, value, _) in enumerate(_json_slots(path)):
            if isinstance(value, dict) and (found := lookup(value, id_path)) not in (None, MISSING):
                yield index, lineno, found
    elif fmt in TABLES:
        table = _table(path, fmt)
        columns = Shape("alpaca", (("id", id_path),)).columns(table.names)
        if not columns:
            return
        index = 0
        for batch in table.read(columns, batch_rows):
            for values in zip(*batch.values()):
                found = lookup(dict(zip(columns, values)), id_path)
                if found not in (None, MISSING):
                    yield index, index + 1, found
                index += 1


def find_duplicate_ids(inputs: list[tuple[Path, int]], shape: Shape | None = None) -> dict[int, str]:
    """Positions of rows whose id (the `id` field, or where `shape` maps it) repeats an earlier row's, each with
    "file:line" of the first one.

    Memory: 8 bytes of digest per row that has an id (8 MB per million), plus the duplicates themselves."""
    id_path = (shape or Shape()).path("id")
    if not id_path:
        return {}
    digests, positions, places = [], [], {}
    for path, offset in inputs:
        for index, line, value in _id_slots(Path(path), id_path):
            key = given_id(value)
            if key is None:
                continue
            digest = hashlib.blake2b(key.encode("utf-8", "surrogatepass"), digest_size=8).digest()
            digests.append(int.from_bytes(digest, "big"))
            positions.append(offset + index)
            places[offset + index] = (Path(path).name, line)
    if not digests:
        return {}
    keys, where = np.asarray(digests, dtype=np.uint64), np.asarray(positions, dtype=np.int64)
    order = np.lexsort((where, keys))  # by digest, then position: the first of each run is the original
    keys, where = keys[order], where[order]
    repeat = np.flatnonzero(keys[1:] == keys[:-1]) + 1
    first = np.maximum.accumulate(np.where(np.r_[True, keys[1:] != keys[:-1]], np.arange(len(keys)), 0))
    return {int(where[i]): "{}:{}".format(*places[int(where[first[i]])]) for i in repeat}


def _format(path: Path) -> str:
    if is_hf_dataset_dir(path):
        return "hf"
    if not path.is_file() or path.suffix.lower() not in SUPPORTED:
        raise InputError(f"cannot read {path}: not a supported seed file (supported: {SUPPORTED_TEXT})")
    return path.suffix.lower() if path.stat().st_size else "empty"


def _jsonl_lines(path: Path) -> Iterator[tuple[int, bytes]]:
    """Non-blank lines with their physical line numbers. Slots, per format: (line, value, problem or None)."""
    with open(path, "rb") as handle:
        for lineno, raw in enumerate(handle, 1):
            raw = raw.removeprefix(BOM) if lineno == 1 else raw
            if raw.strip():
                yield lineno, raw


def _jsonl_slots(path: Path) -> Iterator[tuple]:
    for lineno, raw in _jsonl_lines(path):
        try:
            value, error, _ = _parse(raw.decode("utf-8"))
        except UnicodeDecodeError as err:  # keep what the rest of the line says, for the rejects file
            bad = ("invalid_utf8", f"invalid UTF-8 at byte {err.start + 1}")
            value, error = _parse(raw.decode("utf-8", "replace"))[0], bad
        yield lineno, value, error


def _parse(text: str) -> tuple[object, tuple[str, str] | None, int]:
    """(value, None, 1) or (None, malformed_json problem, line of the error within `text`)."""
    try:
        return json.loads(text), None, 1
    except json.JSONDecodeError as err:
        return None, ("malformed_json", f"malformed JSON ({err.msg} at column {err.colno})"), err.lineno
    except (ValueError, RecursionError) as err:  # e.g. nesting too deep, an int too long
        return None, ("malformed_json", f"malformed JSON ({err})"), 1


def _json_slots(path: Path) -> list[tuple]:
    data = path.read_bytes().removeprefix(BOM)
    if not data.strip():
        return []
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        line, col = data.count(b"\n", 0, err.start) + 1, err.start - data.rfind(b"\n", 0, err.start)
        return [(line, None, ("invalid_utf8", f"invalid UTF-8 at byte {col} of the line"))]
    try:
        return _scan_list(text)
    except (ValueError, RecursionError):
        pass  # not a clean list: let json.loads say exactly what is wrong
    value, error, line = _parse(text)
    if error:
        return [(line, None, error)]
    if isinstance(value, list):  # the scanner should have taken it; fall back to item numbers
        return [(i + 1, item, None) for i, item in enumerate(value)]
    line = text.count("\n", 0, _WS.match(text).end()) + 1
    return [(line, value, ("not_an_object", f"the file holds {kind(value)}, expected a JSON list of objects"))]


def _scan_list(text: str) -> list[tuple]:
    """Parse a top-level JSON list item by item, noting the line each item starts on; ValueError if not clean."""
    decoder, slots, line, counted = json.JSONDecoder(), [], 1, 0
    pos = _WS.match(text).end()
    if text[pos : pos + 1] != "[":
        raise ValueError("not a list")
    pos, sep = _WS.match(text, pos + 1).end(), ","
    if text[pos : pos + 1] == "]":
        pos, sep = _WS.match(text, pos + 1).end(), "]"
    while sep == ",":
        line, counted = line + text.count("\n", counted, pos), pos
        value, pos = decoder.raw_decode(text, pos)
        slots.append((line, value, None))
        pos = _WS.match(text, pos).end()
        sep, pos = text[pos : pos + 1], _WS.match(text, pos + 1).end()
    if sep != "]" or pos != len(text):
        raise ValueError("not a clean list")
    return slots


def _table(path: Path, fmt: str) -> Table:
    try:
        return open_table(path, fmt)
    except TableError as err:
        raise InputError(str(err)) from err


def _table_slots(path: Path, fmt: str, batch_rows: int, shape: Shape | None) -> Iterator[tuple]:
    """Row slots of a table: one per row, numbered from 1, then the lines a CSV/TSV parser could not split.
    Only the columns `shape` reads are read (all of them when `shape` is None)."""
    table = _table(path, fmt)
    names = table.names
    present = shape.columns(names) if shape else names
    error, root = None, shape.root(names) if shape else ""
    if shape and root not in names:
        field_name = "conversation" if shape.turns else "instruction"
        error = ("missing_field", f"field {shape.label(field_name)} is missing: no '{root}' column ({', '.join(names)})")
    row, lines = 0, table.lines()
    for batch in table.read(present, batch_rows) if present else ():
        for values in zip(*(batch[name] for name in present)):
            row += 1
            yield next(lines), dict(zip(present, values)), error
    yield from ((next(lines), {}, error) for _ in range(row, table.num_rows))  # no column of the shape is here
    for line, message in table.invalid:
        yield line, None, ("malformed_csv", message)


def _slots(path: Path, batch_rows: int, shape: Shape | None) -> Iterator[tuple]:
    fmt = _format(path)
    if fmt in TABLES:
        return _table_slots(path, fmt, batch_rows, shape)
    if fmt == ".jsonl":
        return _jsonl_slots(path)
    return iter(_json_slots(path)) if fmt == ".json" else iter(())


def first_rows(files: list[Path], n: int) -> list:
    """The first `n` source rows of the inputs as parsed (dicts, or whatever a line held; None if unparsable),
    for guessing their shape and naming their columns."""
    rows: list = []
    for path in files:
        for _, value, _ in _slots(Path(path), max(1, n), None):
            if len(rows) >= n:
                return rows
            rows.append(value)
    return rows


def iter_records(
    path: Path, position_offset: int, batch_rows: int = 1000, policy: ReadPolicy | None = None
) -> Iterator[dict[str, np.ndarray]]:
    """Stream one input as record batches (valid and rejected rows), positions starting at `position_offset`."""
    path, batch_rows, policy = Path(path), max(1, int(batch_rows)), policy or ReadPolicy()
    yield from record_batches(_slots(path, batch_rows, policy.shape), str(path), position_offset, batch_rows,
                              policy)
