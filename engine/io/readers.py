"""Seed readers: every row slot of a .jsonl, .json, .parquet or saved HF dataset becomes one record, valid or
rejected with a reason code and a `file:line: ...` detail; `count_rows` counts the same slots."""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from engine.records import ALPACA_FIELDS, LINEAGE_FIELDS, STATUS_FIELDS, STATUS_OK, STATUS_REJECTED
from engine.records import column, seed_row_id

log = logging.getLogger("engine.io")

SUPPORTED = (".jsonl", ".json", ".parquet")
SUPPORTED_TEXT = ".jsonl, .json, .parquet or a saved HF dataset directory"
REJECT_LOG_LIMIT = 20
RECORD_FIELDS = ALPACA_FIELDS + LINEAGE_FIELDS + STATUS_FIELDS
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
    the position of every row whose `id` field repeats an earlier row's to where that earlier row is."""

    max_chars: int = 20000
    long_rows: str = "reject"
    duplicates: dict[int, str] = field(default_factory=dict)

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
    if fmt == "hf":
        return _load_hf(path).num_rows
    if fmt == ".jsonl":
        return sum(1 for _ in _jsonl_lines(path))
    if fmt == ".json":
        return len(_json_slots(path))
    return _open_parquet(path).metadata.num_rows if fmt == ".parquet" else 0


def _id_slots(path: Path, batch_rows: int = 10000) -> Iterator[tuple[int, int, object]]:
    """(index within the file, line, id value) of every row slot that carries an `id` field."""
    fmt = _format(path)
    if fmt == ".jsonl":
        for index, (lineno, raw) in enumerate(_jsonl_lines(path)):
            if b'"id"' in raw:  # cheap pre-check: most seed files carry no ids at all
                value = _parse(raw.decode("utf-8", "replace"))[0]
                if isinstance(value, dict) and value.get("id") is not None:
                    yield index, lineno, value["id"]
    elif fmt == ".json":
        for index, (lineno, value, _) in enumerate(_json_slots(path)):
            if isinstance(value, dict) and value.get("id") is not None:
                yield index, lineno, value["id"]
    elif fmt in (".parquet", "hf"):
        source = _open_parquet(path) if fmt == ".parquet" else _load_hf(path)
        names = source.schema_arrow.names if fmt == ".parquet" else source.column_names
        if "id" not in names:
            return
        batches = (
            (b.to_pydict() for b in source.iter_batches(batch_size=batch_rows, columns=["id"]))
            if fmt == ".parquet" else source.select_columns(["id"]).iter(batch_size=batch_rows)
        )
        index = 0
        for batch in batches:
            for value in batch["id"]:
                if value is not None:
                    yield index, index + 1, value
                index += 1


def find_duplicate_ids(inputs: list[tuple[Path, int]]) -> dict[int, str]:
    """Positions of rows whose `id` repeats an earlier row's, each with "file:line" of the first one.

    Memory: 8 bytes of digest per row that has an id (8 MB per million), plus the duplicates themselves."""
    digests, positions, places = [], [], {}
    for path, offset in inputs:
        for index, line, value in _id_slots(Path(path)):
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
    return [(line, value, ("not_an_object", f"the file holds {_kind(value)}, expected a JSON list of objects"))]


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


def _open_parquet(path: Path) -> pq.ParquetFile:
    try:
        return pq.ParquetFile(path)
    except Exception as err:
        raise InputError(f"cannot read parquet file {path}: {err}") from err


def _load_hf(path: Path):
    import datasets  # heavy: only when a dataset dir is read

    try:
        ds = datasets.load_from_disk(str(path))
    except Exception as err:
        raise InputError(f"cannot load the saved HF dataset in {path}: {err}") from err
    return ds.with_format(None)


def _columnar_slots(names: list[str], read_batches, num_rows: int) -> Iterator[tuple]:
    """Row slots of a table (parquet or HF): one per row, numbered from 1."""
    problem = f"field 'instruction' is missing: no 'instruction' column ({', '.join(names)})"
    error = None if "instruction" in names else ("missing_field", problem)
    present = [name for name in ALPACA_FIELDS if name in names]
    if not present:
        yield from ((row, {}, error) for row in range(1, num_rows + 1))
        return
    row = 0
    for batch in read_batches(present):
        for i in range(len(batch[present[0]])):
            row += 1
            yield row, {name: batch[name][i] for name in present}, error


def _parquet_slots(path: Path, batch_rows: int) -> Iterator[tuple]:
    with _open_parquet(path) as pf:
        read = lambda cols: (b.to_pydict() for b in pf.iter_batches(batch_size=batch_rows, columns=cols))  # noqa: E731
        yield from _columnar_slots(pf.schema_arrow.names, read, pf.metadata.num_rows)


def _hf_slots(path: Path, batch_rows: int) -> Iterator[tuple]:
    ds = _load_hf(path)
    read = lambda cols: ds.select_columns(cols).iter(batch_size=batch_rows)  # noqa: E731
    yield from _columnar_slots(list(ds.column_names), read, ds.num_rows)


def _slots(path: Path, batch_rows: int) -> Iterator[tuple]:
    fmt = _format(path)
    if fmt == "hf":
        return _hf_slots(path, batch_rows)
    if fmt == ".jsonl":
        return _jsonl_slots(path)
    if fmt == ".json":
        return iter(_json_slots(path))
    return _parquet_slots(path, batch_rows) if fmt == ".parquet" else iter(())


_KINDS = {type(None): "null", bool: "a boolean", int: "an int", float: "a float", str: "a string"}
_KINDS.update({list: "a list", dict: "an object"})


def _kind(value) -> str:
    """The JSON-ish name of a value's type, for messages (bool is checked before int, its base class)."""
    return next((name for kind, name in _KINDS.items() if isinstance(value, kind)), f"a {type(value).__name__}")


def _check(value, error) -> tuple[tuple[str, str, str], tuple[str, str] | None]:
    """The row's text fields (what could be recovered) and its problem as (reason, message), or None."""
    is_dict = isinstance(value, dict)
    raw = tuple(value.get(name) for name in ALPACA_FIELDS) if is_dict else (None, None, None)
    texts = tuple(v if isinstance(v, str) else "" for v in raw)
    joined = "".join(texts)
    odd = _ODD_CHAR.search(joined) is not None  # rare: only then look for which field holds what
    if odd and _SURROGATE.search(joined):
        texts = tuple(text.encode("utf-8", "backslashreplace").decode("utf-8") for text in texts)
    if error:
        return texts, error
    if not is_dict:
        return texts, ("not_an_object", f"the value is {_kind(value)}, expected a JSON object")
    if raw[0] is None:
        return texts, ("missing_field", "field 'instruction' is " + ("null" if "instruction" in value else "missing"))
    for name, v in zip(ALPACA_FIELDS, raw):
        if v is not None and not isinstance(v, str):
            return texts, ("not_a_string", f"field '{name}' is {_kind(v)}, expected a string")
    for name, text, v in zip(ALPACA_FIELDS, texts, raw) if odd else ():
        if "\x00" in text:
            return texts, ("nul_character", f"field '{name}' contains a NUL character at position {text.index(chr(0))}")
        if v is not None and text != v:
            return texts, ("invalid_utf8", f"field '{name}' holds an unpaired surrogate, which is not valid UTF-8")
    if not texts[0].strip():
        return texts, ("empty_instruction", "field 'instruction' is empty" + (" (whitespace only)" if texts[0] else ""))
    return texts, None


def iter_records(
    path: Path, position_offset: int, batch_rows: int = 1000, policy: ReadPolicy | None = None
) -> Iterator[dict[str, np.ndarray]]:
    """Stream one input as record batches (valid and rejected rows), positions starting at `position_offset`."""
    path, batch_rows = Path(path), max(1, int(batch_rows))
    yield from _records(_slots(path, batch_rows), str(path), position_offset, batch_rows, policy or ReadPolicy())


def records_from_rows(rows: list[dict], source: str = "<memory>", position_offset: int = 0,
                      policy: ReadPolicy | None = None) -> dict[str, np.ndarray]:
    """One batch of seed records from in-memory alpaca dicts (tests, benchmarks), checked as a file's rows are."""
    slots = ((i + 1, row, None) for i, row in enumerate(rows))
    batches = _records(slots, source, position_offset, max(1, len(rows)), policy or ReadPolicy())
    return next(batches, None) or _batch([], source)


def _apply_policy(texts: tuple[str, str, str], value, position: int, policy: ReadPolicy):
    """(texts, user id, problem or None, note for ok rows) after the id and length rules."""
    raw_id = value.get("id") if isinstance(value, dict) else None
    user_id = _user_id(raw_id)
    if raw_id is not None and user_id is None and raw_id != "":
        return texts, None, ("not_a_string", f"field 'id' is {_kind(raw_id)}, expected a string or an integer"), ""
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
    return (instruction, input_text, texts[2]), user_id, None, note


def _records(slots: Iterator[tuple], source_file: str, offset: int, batch_rows: int,
             policy: ReadPolicy) -> Iterator[dict]:
    name, rows, rejected = Path(source_file).name, [], 0
    for index, (line, value, error) in enumerate(slots):
        texts, problem = _check(value, error)
        user_id, note = None, ""
        if problem is None:
            texts, user_id, problem, note = _apply_policy(texts, value, offset + index, policy)
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
    instructions, inputs, outputs, positions, lines, reasons, details, user_ids = list(zip(*rows)) or [()] * 8
    n = len(rows)
    ids = [uid if uid is not None else seed_row_id(ins, inp, pos)
           for ins, inp, pos, uid in zip(instructions, inputs, positions, user_ids)]
    cols = {name: column([""] * n) for name in ("parent_id", "method", "evolver", "parent_instruction")}
    cols.update(instruction=column(instructions), input=column(inputs), output=column(outputs))
    cols.update(id=column(ids), seed_id=column(ids), seed_index=column(positions, np.int64))
    cols.update(round=np.zeros(n, dtype=np.int64), source_file=column([source_file] * n))
    cols.update(source_line=column(lines, np.int64), reason=column(reasons), detail=column(details))
    cols["status"] = column(STATUS_REJECTED if r else STATUS_OK for r in reasons)
    cols["rejected_at"] = column("read" if r else "" for r in reasons)
    return {name: cols[name] for name in RECORD_FIELDS}  # exactly the record schema, in its order

