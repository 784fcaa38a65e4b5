"""Kept rows in the formats trainers read: alpaca, ShareGPT and OpenAI-messages JSONL, plus the LLaMA-Factory
`dataset_info.json` entries that register each. The Parquet data keeps the lineage; these keep the text."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path

import pyarrow.parquet as pq

from engine.state.layout import EXPORT_KINDS, RunLayout

EXPORT_FORMATS = EXPORT_KINDS
TEXT_COLUMNS = ("instruction", "input", "output", "system")
READ_ROWS = 8192


def prompt_text(row: dict) -> str:
    """The user turn of a row: the instruction, then the input on the next line (as LLaMA-Factory joins them)."""
    return "\n".join(part for part in (row.get("instruction") or "", row.get("input") or "") if part)


def alpaca_row(row: dict) -> dict:
    """{"instruction", "input", "output"}, plus "system" when the row carries a system prompt."""
    out = {"instruction": row["instruction"], "input": row.get("input") or "", "output": row.get("output") or ""}
    if row.get("system"):
        out["system"] = row["system"]
    return out


def sharegpt_row(row: dict) -> dict:
    """LLaMA-Factory's sharegpt shape: a human and a gpt turn under "conversations", the system prompt beside."""
    turns = [{"from": "human", "value": prompt_text(row)}, {"from": "gpt", "value": row.get("output") or ""}]
    return {"conversations": turns, "system": row.get("system") or ""}


def messages_row(row: dict) -> dict:
    """OpenAI chat messages: an optional system message, then the user and the assistant message."""
    system = [{"role": "system", "content": row["system"]}] if row.get("system") else []
    turns = [{"role": "user", "content": prompt_text(row)}, {"role": "assistant", "content": row.get("output") or ""}]
    return {"messages": system + turns}


ROW_FORMATS = {"alpaca": alpaca_row, "sharegpt": sharegpt_row, "messages": messages_row}

# How LLaMA-Factory's data/dataset_info.json describes each file (its defaults spelled out for the chat formats).
DATASET_INFO = {
    "alpaca": {},
    "sharegpt": {"formatting": "sharegpt", "columns": {"messages": "conversations", "system": "system"},
                 "tags": {"role_tag": "from", "content_tag": "value", "user_tag": "human", "assistant_tag": "gpt",
                          "system_tag": "system"}},
    "messages": {"formatting": "sharegpt", "columns": {"messages": "messages"},
                 "tags": {"role_tag": "role", "content_tag": "content", "user_tag": "user",
                          "assistant_tag": "assistant", "system_tag": "system"}},
}


def dataset_info_entries(rounds: Iterable[int], prefix: str, formats: Iterable[str] = EXPORT_FORMATS) -> dict:
    """LLaMA-Factory dataset_info.json entries for each round's files: `<prefix>_round_R` (alpaca, as before),
    `<prefix>_round_R_sharegpt`, `<prefix>_round_R_messages`."""
    info, relative = {}, RunLayout(Path())
    for r in rounds:
        for fmt in formats:
            name = f"{prefix}_round_{r}" + ("" if fmt == "alpaca" else f"_{fmt}")
            info[name] = {"file_name": relative.export(fmt, r).as_posix(), **DATASET_INFO[fmt]}
    return info


def write_lines(handle, rows: Iterable[dict], fmt: str) -> int:
    """Write `rows` (dicts with the text columns) to an open file as `fmt` JSONL; returns how many."""
    convert, n = ROW_FORMATS[fmt], 0
    for row in rows:
        handle.write(json.dumps(convert(row), ensure_ascii=False) + "\n")
        n += 1
    return n


def export_files(files: list[Path], fmt: str, target: Path) -> int:
    """The rows of the given Parquet files as `fmt` JSONL in `target` (written atomically, streamed in batches);
    returns the number of rows."""
    if fmt not in ROW_FORMATS:
        raise ValueError(f"unknown export format {fmt!r} (one of {', '.join(EXPORT_FORMATS)})")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp, n = target.with_name(target.name + ".tmp"), 0
    with open(tmp, "w", encoding="utf-8") as handle:
        for path in files:
            pf = pq.ParquetFile(path)
            columns = [c for c in TEXT_COLUMNS if c in pf.schema_arrow.names]
            for batch in pf.iter_batches(batch_size=READ_ROWS, columns=columns):
                n += write_lines(handle, batch.to_pylist(), fmt)
    os.replace(tmp, target)
    return n


def register(output_dir: Path, entries: dict) -> None:
    """Add `entries` to the run's dataset_info.json (kept entries of other files stay)."""
    path = RunLayout(output_dir).dataset_info
    info = json.loads(path.read_text()) if path.exists() else {}
    info.update(entries)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(info, indent=2) + "\n")
    os.replace(tmp, path)
