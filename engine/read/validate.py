"""Row checks shared by every seed source: a parsed row slot becomes one record, valid or rejected with a reason
code and a `file:line: ...` detail, under the id and length rules of a ReadPolicy (engine/read/readers.py finds the
slots of files; records_from_rows below checks in-memory rows the same way)."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from engine.read.shapes import Shape, kind
from engine.rows.records import (
    LINEAGE_FIELDS,
    STATUS_FIELDS,
    STATUS_OK,
    STATUS_REJECTED,
    TEXT_FIELDS,
    column,
    seed_row_id,
)

log = logging.getLogger("engine.read")

REJECT_LOG_LIMIT = 20
RECORD_FIELDS = TEXT_FIELDS + LINEAGE_FIELDS + STATUS_FIELDS
_SURROGATE = re.compile(r"[\ud800-\udfff]")  # lone ones (JSON escapes) can't be written as UTF-8: kept as \udxxx
_ODD_CHAR = re.compile(r"[\x00\ud800-\udfff]")


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


def given_id(value) -> str | None:
    """The row id a seed's `id` field gives (strings and integers), or None when it has none usable."""
    if isinstance(value, str) and value.strip():
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return None


def _text(value) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return value if isinstance(value, str) else ""


def check_row(value, error, shape: Shape) -> tuple[tuple[str, ...], dict, tuple[str, str] | None]:
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


def _apply_policy(texts: tuple[str, ...], fields: dict, position: int, policy: ReadPolicy):
    """(texts, user id, problem or None, note for ok rows) after the id and length rules."""
    raw_id = fields.get("id")
    user_id = given_id(raw_id)
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


def record_batches(slots: Iterator[tuple], source_file: str, offset: int, batch_rows: int,
                   policy: ReadPolicy) -> Iterator[dict]:
    """Record batches of `batch_rows` from (line, parsed value, parse error) slots, positions from `offset`."""
    name, rows, rejected = Path(source_file).name, [], 0
    for index, (line, value, error) in enumerate(slots):
        texts, fields, problem = check_row(value, error, policy.shape)
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
            yield record_batch(rows, source_file)
            rows = []
    if rejected > REJECT_LOG_LIMIT:
        log.warning("%d more rejected rows in %s (see rejects)", rejected - REJECT_LOG_LIMIT, source_file)
    if rows:
        yield record_batch(rows, source_file)


def record_batch(rows: list[tuple], source_file: str) -> dict[str, np.ndarray]:
    """Rows of (texts..., position, line, reason, detail, user id) as one batch of the record schema."""
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


def records_from_rows(rows: list[dict], source: str = "<memory>", position_offset: int = 0,
                      policy: ReadPolicy | None = None) -> dict[str, np.ndarray]:
    """One batch of seed records from in-memory alpaca dicts (AutoIF's augmented queries, tests, benchmarks),
    checked as a file's rows are, under `policy` (default: ReadPolicy's defaults)."""
    slots = ((i + 1, row, None) for i, row in enumerate(rows))
    batches = record_batches(slots, source, position_offset, max(1, len(rows)), policy or ReadPolicy())
    return next(batches, None) or record_batch([], source)
