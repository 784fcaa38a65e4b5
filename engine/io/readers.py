"""Seed readers: every row slot of a .jsonl, .json, .parquet, .csv, .tsv, HF .arrow file or saved HF dataset becomes
one record, valid or rejected with a reason code and a `file:line: ...` detail; `count_rows` counts the same slots.
A `Shape` (engine/io/shapes.py) says which source field fills which record field."""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from engine.io.shapes import MISSING, Shape, kind, lookup
from engine.io.tables import Table, TableError, open_table
from engine.records import LINEAGE_FIELDS, STATUS_FIELDS, STATUS_OK, STATUS_REJECTED, TEXT_FIELDS
from engine.records import column, seed_row_id

log = logging.getLogger("engine.io")

SUPPORTED = (".jsonl", ".json", ".parquet", ".csv", ".tsv", ".arrow")
SUPPORTED_TEXT = ".jsonl, .json, .parquet, .csv, .tsv, .arrow or a saved HF dataset directory"
TABLES = (".parquet", ".csv", ".tsv", ".arrow", "hf")
REJECT_LOG_LIMIT = 20
RECORD_FIELDS = TEXT_FIELDS + LINEAGE_FIELDS + STATUS_FIELDS
HF_MARKERS = ("dataset_info.json", "state.json")
HF_DICT_META = "dataset_dict.json"  # top file of a saved DatasetDict: metadata, its split dirs are the data
BOM = b"\xef\xbb\xbf"
_SURROGATE = re.compile(r"[\ud800-\udfff]")  # lone ones (JSON escapes) can't be written as UTF-8: kept as \udxxx
_ODD_CHAR = re.compile(r"[\x00\ud800-\udfff]")
_WS = re.compile(r"[ \t\n\r]*")  # JSON whitespace, as the json module defines it


class InputError(ValueError):
    """A fatal problem with the seed path itself (missing, unsupported, unreadable, nothing to read)."""


@dataclass(frozen=True)
class ReadPolicy:
    """How rows that parse but cannot go on as they are get handled.

    `max_chars` bounds instruction + input (a 1 MB instruction exceeds any model context): `long_rows`
    "reject" rejects them (reason too_long), "truncate" cuts them and notes it in `detail`. `duplicates` maps
    the position of every row whose `id` field repeats an earlier row's to where that earlier row is. `shape`
    maps source fields to record fields."""

    max_chars: int = 20000
    long_rows: str = "reject"
    duplicates: dict[int, str] = field(default_factory=dict)
    shape: Shape = field(default_factory=Shape)

    def __post_init__(self):
        if self.long_rows not in ("reject", "truncate"):
            raise ValueError(f"data.long_rows must be reject or truncate, not {self.long_rows!r}")


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
            key = _user_id(value)
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


def _user_id(value) -> str | None:
    """The row id a seed's `id` field gives (strings and integers), or None when it has none usable."""
    if isinstance(value, str) and value.strip():
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return None


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


def _text(value) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return value if isinstance(value, str) else ""


def _check(value, error, shape: Shape) -> tuple[tuple[str, ...], dict, tuple[str, str] | None]:
    """The row's text fields (what could be recovered), its fields under the record's names, and its problem
    as (reason, message), or None."""
    is_dict = isinstance(value, dict)
    fields, problem = shape.project(value) if is_dict else ({}, None)
    error = error or problem
    raw = tuple(fields.get(name) for name in TEXT_FIELDS)
    texts = tuple(_text(v) for v in raw)
    joined = "".join(texts)
    odd = _ODD_CHAR.search(joined) is not None  # rare: only then look for which field holds what
    if odd and _SURROGATE.search(joined):
        texts = tuple(text.encode("utf-8", "backslashreplace").decode("utf-8") for text in texts)
    if error:
        return texts, fields, error
    if not is_dict:
        return texts, fields, ("not_an_object", f"the value is {kind(value)}, expected a JSON object")
    label = shape.label
    if raw[0] is None:
        state = "null" if "instruction" in fields else "missing"
        return texts, fields, ("missing_field", f"field {label('instruction')} is {state}")
    for name, v in zip(TEXT_FIELDS, raw):
        if isinstance(v, bytes):
            return texts, fields, ("invalid_utf8", f"field {label(name)} is not valid UTF-8")
        if v is not None and not isinstance(v, str):
            return texts, fields, ("not_a_string", f"field {label(name)} is {kind(v)}, expected a string")
    for name, text, v in zip(TEXT_FIELDS, texts, raw) if odd else ():
        if "\x00" in text:
            where = f"position {text.index(chr(0))}"
            return texts, fields, ("nul_character", f"field {label(name)} contains a NUL character at {where}")
        if v is not None and text != v:
            return texts, fields, ("invalid_utf8", f"field {label(name)} holds an unpaired surrogate, which is not "
                                                   "valid UTF-8")
    if not texts[0].strip():
        blank = " (whitespace only)" if texts[0] else ""
        return texts, fields, ("empty_instruction", f"field {label('instruction')} is empty{blank}")
    return texts, fields, None


def iter_records(
    path: Path, position_offset: int, batch_rows: int = 1000, policy: ReadPolicy | None = None
) -> Iterator[dict[str, np.ndarray]]:
    """Stream one input as record batches (valid and rejected rows), positions starting at `position_offset`."""
    path, batch_rows, policy = Path(path), max(1, int(batch_rows)), policy or ReadPolicy()
    yield from _records(_slots(path, batch_rows, policy.shape), str(path), position_offset, batch_rows, policy)


def records_from_rows(rows: list[dict], source: str = "<memory>", position_offset: int = 0,
                      policy: ReadPolicy | None = None) -> dict[str, np.ndarray]:
    """One batch of seed records from in-memory alpaca dicts (tests, benchmarks), checked as a file's rows are."""
    slots = ((i + 1, row, None) for i, row in enumerate(rows))
    batches = _records(slots, source, position_offset, max(1, len(rows)), policy or ReadPolicy())
    return next(batches, None) or _batch([], source)


def _apply_policy(texts: tuple[str, ...], fields: dict, position: int, policy: ReadPolicy):
    """(texts, user id, problem or None, note for ok rows) after the id and length rules."""
    raw_id = fields.get("id")
    user_id = _user_id(raw_id)
    if raw_id is not None and user_id is None and raw_id != "":
        what = f"field {policy.shape.label('id')} is {kind(raw_id)}, expected a string or an integer"
        return texts, None, ("not_a_string", what), ""
    if position in policy.duplicates:
        first = policy.duplicates[position]
        return texts, f"{user_id}#dup{position}", ("duplicate_id", f"field 'id' {user_id!r} repeats {first}"), ""
    size = len(texts[0]) + len(texts[1])
    if size <= policy.max_chars:
        return texts, user_id, None, ""
    if policy.long_rows == "reject":
        return texts, user_id, ("too_long", f"fields 'instruction' + 'input' hold {size} characters, over "
                                f"data.max_chars={policy.max_chars} (data.long_rows=truncate cuts them instead)"), ""
    instruction = texts[0][: policy.max_chars]
    input_text = texts[1][: max(0, policy.max_chars - len(instruction))]
    note = f"truncated: fields 'instruction' + 'input' cut from {size} to data.max_chars={policy.max_chars} characters"
    return (instruction, input_text, *texts[2:]), user_id, None, note


def _records(slots: Iterator[tuple], source_file: str, offset: int, batch_rows: int,
             policy: ReadPolicy) -> Iterator[dict]:
    name, rows, rejected = Path(source_file).name, [], 0
    for index, (line, value, error) in enumerate(slots):
        texts, fields, problem = _check(value, error, policy.shape)
        user_id, note = None, ""
        if problem is None:
            texts, user_id, problem, note = _apply_policy(texts, fields, offset + index, policy)
        reason, detail = (problem[0], f"{name}:{line}: {problem[1]}") if problem else ("", "")
        if note:
            detail = f"{name}:{line}: {note}"
        rejected += bool(problem)
        if problem and rejected <= REJECT_LOG_LIMIT:
            log.warning("%s", detail)
        rows.append((*texts, offset + index, line, reason, detail, user_id))
        if len(rows) >= batch_rows:
            yield _batch(rows, source_file)
            rows = []
    if rejected > REJECT_LOG_LIMIT:
        log.warning("%d more rejected rows in %s (see rejects)", rejected - REJECT_LOG_LIMIT, source_file)
    if rows:
        yield _batch(rows, source_file)


def _batch(rows: list[tuple], source_file: str) -> dict[str, np.ndarray]:
    instructions, inputs, outputs, systems, positions, lines, reasons, details, user_ids = list(zip(*rows)) or [()] * 9
    n = len(rows)
    ids = [uid if uid is not None else seed_row_id(ins, inp, pos)
           for ins, inp, pos, uid in zip(instructions, inputs, positions, user_ids)]
    cols = {name: column([""] * n) for name in ("parent_id", "method", "evolver", "parent_instruction")}
    cols.update(instruction=column(instructions), input=column(inputs), output=column(outputs), system=column(systems))
    cols.update(id=column(ids), seed_id=column(ids), seed_index=column(positions, np.int64))
    cols.update(round=np.zeros(n, dtype=np.int64), source_file=column([source_file] * n))
    cols.update(source_line=column(lines, np.int64), reason=column(reasons), detail=column(details))
    cols["status"] = column(STATUS_REJECTED if r else STATUS_OK for r in reasons)
    cols["rejected_at"] = column("read" if r else "" for r in reasons)
    return {name: cols[name] for name in RECORD_FIELDS}  # exactly the record schema, in its order

