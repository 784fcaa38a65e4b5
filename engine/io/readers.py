"""Seed readers: alpaca rows from .jsonl, .json, .parquet or saved HF datasets, each row valid or rejected.

Nothing is lost silently: a bad row becomes a rejected record whose `detail` names the file, the line and the
field, and the good rows around it go on."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from engine.records import ALPACA_FIELDS, LINEAGE_FIELDS, STATUS_FIELDS, STATUS_OK, STATUS_REJECTED, seed_row_id

log = logging.getLogger("engine.io")
SUPPORTED = (".jsonl", ".json", ".parquet")
COLUMNS = ALPACA_FIELDS + LINEAGE_FIELDS + STATUS_FIELDS
INT_COLUMNS = {"seed_index", "round", "source_line"}
REJECT_LOG_LIMIT = 20


class InputError(ValueError):
    """The input cannot be read at all (missing path, unsupported type, nothing to read): fail fast."""


def _is_hf_dataset(path: Path) -> bool:
    return path.is_dir() and ((path / "dataset_info.json").exists() or (path / "state.json").exists())


def list_input_files(path: str | Path) -> tuple[list[Path], list[Path]]:
    """The readable inputs under `path` and the files skipped as unsupported (for the caller to report)."""
    path = Path(path)
    supported = ", ".join(SUPPORTED) + " or a saved HF dataset directory"
    if not path.exists():
        raise InputError(f"input path {path} does not exist (expected {supported})")
    if path.is_file():
        if path.suffix.lower() not in SUPPORTED:
            raise InputError(f"{path}: unsupported file type {path.suffix or '(none)'!r}; supported: {supported}")
        return [path], []
    if _is_hf_dataset(path):
        return [path], []
    inputs, skipped = [], []
    for child in sorted(path.iterdir()):
        if child.name.startswith("."):
            continue
        if child.is_dir():
            sub_inputs, sub_skipped = list_input_files(child) if any(child.iterdir()) else ([], [])
            inputs += sub_inputs
            skipped += sub_skipped
        elif child.suffix.lower() in SUPPORTED:
            inputs.append(child)
        else:
            skipped.append(child)
    if not inputs:
        raise InputError(f"directory {path} holds no readable input files (expected {supported})")
    return inputs, skipped


def count_rows(path: Path) -> int:
    """Row slots in one input, counted cheaply: positions of later files start after them."""
    if _is_hf_dataset(path):
        import datasets

        return datasets.load_from_disk(str(path)).num_rows
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        import pyarrow.parquet as pq

        return pq.ParquetFile(path).metadata.num_rows
    if suffix == ".jsonl":
        with open(path, "rb") as handle:
            return sum(1 for line in handle if line.strip())
    return sum(1 for _ in _json_items(path))


class _Batch:
    """Accumulates records column by column and emits numpy batches."""

    def __init__(self, path: Path):
        self.path = path
        self.columns: dict[str, list] = {name: [] for name in COLUMNS}
        self.rejected = 0

    def add(self, position: int, line: int, fields: dict, reason: str = "", detail: str = "") -> None:
        instruction, input_text = fields.get("instruction", ""), fields.get("input", "")
        row_id = seed_row_id(instruction, input_text, position)
        values = {
            **{name: fields.get(name, "") for name in ALPACA_FIELDS},
            "id": row_id, "seed_id": row_id, "parent_id": "", "seed_index": position, "round": 0, "method": "",
            "evolver": "", "parent_instruction": "", "source_file": str(self.path), "source_line": line,
            "status": STATUS_REJECTED if reason else STATUS_OK, "reason": reason, "detail": detail,
            "rejected_at": "read" if reason else "",
        }
        for name in COLUMNS:
            self.columns[name].append(values[name])
        if reason:
            self.rejected += 1
            if self.rejected <= REJECT_LOG_LIMIT:
                log.warning("%s", detail)

    def __len__(self) -> int:
        return len(self.columns["id"])

    def flush(self) -> dict[str, np.ndarray]:
        batch = {
            name: np.asarray(values, dtype=np.int64 if name in INT_COLUMNS else object)
            for name, values in self.columns.items()
        }
        self.columns = {name: [] for name in COLUMNS}
        return batch

    def close(self) -> None:
        if self.rejected > REJECT_LOG_LIMIT:
            log.warning("%d more rejected rows in %s (see rejects)", self.rejected - REJECT_LOG_LIMIT, self.path)


def validate(record, where: str) -> tuple[dict, str, str]:
    """(text fields, reason code, detail) for one parsed row; reason "" means valid."""
    if not isinstance(record, dict):
        return {}, "not_an_object", f"{where}: expected a JSON object, got {type(record).__name__}"
    fields = {}
    for name in ALPACA_FIELDS:
        value = record.get(name)
        if isinstance(value, str):
            fields[name] = value
        elif value is None:
            fields[name] = ""
    if "instruction" not in record or record["instruction"] is None:
        return fields, "missing_field", f"{where}: missing field 'instruction'"
    for name in ALPACA_FIELDS:
        value = record.get(name)
        if value is not None and not isinstance(value, str):
            return fields, "not_a_string", f"{where}: field {name!r} is a {type(value).__name__}, expected a string"
    for name in ALPACA_FIELDS:
        if "\x00" in fields[name]:
            return {k: v.replace("\x00", "") for k, v in fields.items()}, "nul_character", \
                f"{where}: field {name!r} contains a NUL character"
    if not fields["instruction"].strip():
        return fields, "empty_instruction", f"{where}: field 'instruction' is empty"
    return fields, "", ""


def _jsonl_rows(path: Path) -> Iterator[tuple[int, dict | None, str, str]]:
    """(line number, parsed record or None, reason, detail) per non-blank line, decoding line by line."""
    with open(path, "rb") as handle:
        for number, raw in enumerate(handle, start=1):
            if not raw.strip():
                continue
            where = f"{path.name}:{number}"
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as err:
                yield number, None, "invalid_utf8", f"{where}: invalid UTF-8 at byte {err.start}"
                continue
            try:
                yield number, json.loads(text), "", ""
            except json.JSONDecodeError as err:
                yield number, None, "malformed_json", f"{where}: malformed JSON ({err.msg} at column {err.colno})"


def _json_items(path: Path) -> Iterator[tuple[int, object, str, str]]:
    """(line, item, reason, detail) per element of a JSON list; one rejected slot if the file is not a list."""
    raw = path.read_bytes()
    if not raw.strip():
        return
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        yield 1, None, "invalid_utf8", f"{path.name}: invalid UTF-8 at byte {err.start}"
        return
    try:
        document = json.loads(text)
    except json.JSONDecodeError as err:
        yield err.lineno, None, "malformed_json", f"{path.name}:{err.lineno}: malformed JSON ({err.msg})"
        return
    if not isinstance(document, list):
        yield 1, None, "not_an_object", f"{path.name}:1: expected a JSON list of objects, got {type(document).__name__}"
        return
    # Line where each item starts: decode item by item to keep line numbers for the messages.
    decoder, index = json.JSONDecoder(), text.index("[") + 1
    for item in document:
        while text[index] in " \t\r\n,":
            index += 1
        _, end = decoder.raw_decode(text, index)
        yield text.count("\n", 0, index) + 1, item, "", ""
        index = end


def _table_rows(path: Path) -> Iterator[tuple[int, object, str, str]]:
    """(row number, record, "", "") per row of a parquet file or saved HF dataset, streamed in batches."""
    if _is_hf_dataset(path):
        import datasets

        dataset = datasets.load_from_disk(str(path))
        columns = dataset.column_names
        batches = (dataset[i:i + 4096] for i in range(0, dataset.num_rows, 4096))
        batches = ({k: b[k] for k in columns} for b in batches)
    else:
        import pyarrow.parquet as pq

        handle = pq.ParquetFile(path)
        columns = handle.schema_arrow.names
        batches = (b.to_pydict() for b in handle.iter_batches(batch_size=4096))
    number = 0
    for batch in batches:
        for k in range(len(next(iter(batch.values()))) if batch else 0):
            number += 1
            yield number, {name: batch[name][k] for name in columns}, "", ""


def iter_records(path: Path, position_offset: int, batch_rows: int = 1000) -> Iterator[dict[str, np.ndarray]]:
    """Batches of records (valid or rejected) from one input; positions continue from `position_offset`."""
    if _is_hf_dataset(path) or path.suffix.lower() == ".parquet":
        rows = _table_rows(path)
    elif path.suffix.lower() == ".jsonl":
        rows = _jsonl_rows(path)
    else:
        rows = _json_items(path)
    batch = _Batch(path)
    for slot, (line, record, reason, detail) in enumerate(rows):
        if not reason:
            fields, reason, detail = validate(record, f"{path.name}:{line}")
        else:
            fields = {}
        batch.add(position_offset + slot, line, fields, reason, detail)
        if len(batch) >= batch_rows:
            yield batch.flush()
    if len(batch):
        yield batch.flush()
    batch.close()
