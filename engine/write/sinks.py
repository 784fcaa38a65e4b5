"""Round sinks: split a round's ledger into Parquet data shards, the alpaca / ShareGPT / messages JSONL exports
and the rejects file."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from engine.rows.records import STATUS_OK
from engine.run.counts import RoundCounts, count_table, take_timings
from engine.state.layout import RunLayout
from engine.state.storage import Storage
from engine.write.exporters import EXPORT_FORMATS, TEXT_COLUMNS, dataset_info_entries, write_lines

READ_ROWS = 8192


def _jsonl(handle, rows: list[dict]) -> None:
    for row in rows:
        handle.write(json.dumps(row, ensure_ascii=False) + "\n")


def split_shard(ledger_file: Path, output_dir: "Path | str | Storage", round_num: int, index: int) -> RoundCounts:
    """Split one ledger shard (every row, ok or rejected) into the round's outputs: the kept rows as
    data/round_R/part-<index>.parquet, and the alpaca, sharegpt, messages and rejects lines as numbered parts that
    `join_parts` concatenates. Streams in batches of READ_ROWS rows: bounded memory. Safe to rerun (every file is
    replaced whole: renamed into place locally, uploaded under its name on an object store)."""
    counts = RoundCounts(round=round_num)
    layout = RunLayout.at(output_dir)
    storage = layout.store
    data_dir = layout.data(round_num)
    storage.makedirs(data_dir)
    parts = {kind: storage.output(layout.part(kind, round_num, index), text=True)
             for kind in (*EXPORT_FORMATS, "rejects")}
    rejects = parts["rejects"].handle
    final, writer = None, None
    try:
        for batch in storage.parquet_file(ledger_file).iter_batches(batch_size=READ_ROWS):
            table = pa.Table.from_batches([batch])
            table = take_timings(counts, table)  # stage timings: counted, never written out
            ok = pc.equal(table["status"], STATUS_OK)
            good, bad = table.filter(ok), table.filter(pc.invert(ok))
            counts.rows_in += table.num_rows
            counts.rows_out += good.num_rows
            counts.rows_rejected += bad.num_rows
            if good.num_rows:
                if writer is None:
                    final = storage.output(data_dir / f"part-{index:05d}.parquet")
                    writer = pq.ParquetWriter(final.handle, good.schema)
                writer.write_table(good)
                texts = good.select([c for c in TEXT_COLUMNS if c in good.column_names]).to_pylist()
                for kind in EXPORT_FORMATS:
                    write_lines(parts[kind].handle, texts, kind)
            _jsonl(rejects, bad.to_pylist())
            count_table(counts, table, ok)
    except BaseException:
        for pending in (*parts.values(), *([final] if final else [])):
            pending.discard()
        raise
    if writer is not None:
        writer.close()
        final.commit()
    for pending in parts.values():
        pending.commit()
    return counts


def join_parts(output_dir: "Path | str | Storage", round_num: int, shards: int) -> None:
    """Concatenate the export and rejects parts of a round, in shard order, into one file each (byte copies:
    constant memory), then drop the parts."""
    layout = RunLayout.at(output_dir)
    storage = layout.store
    for kind in (*EXPORT_FORMATS, "rejects"):
        with storage.output(layout.export(kind, round_num)) as joined:
            for index in range(shards):
                with storage.open_input(layout.part(kind, round_num, index)) as part:
                    shutil.copyfileobj(part, joined, 1 << 20)
        storage.remove(layout.part(kind, round_num, 0).parent)


def split_round(ledger_files: list[Path], output_dir: "Path | str | Storage", round_num: int) -> RoundCounts:
    """Every shard of a round split in this process, then joined (the runner does the shards in Ray tasks)."""
    counts = RoundCounts(round=round_num)
    for index, ledger_file in enumerate(ledger_files):
        counts.merge(split_shard(ledger_file, output_dir, round_num, index))
    join_parts(output_dir, round_num, len(ledger_files))
    return counts


def write_dataset_info(output_dir: "Path | str | Storage", rounds: list[int], prefix: str) -> None:
    """LLaMA-Factory's dataset_info.json, so `dataset_dir=OUTPUT` can train on any round directly, in any of the
    exported formats."""
    info = dataset_info_entries(rounds, prefix)
    layout = RunLayout.at(output_dir)
    layout.store.write_text(layout.dataset_info, json.dumps(info, indent=2) + "\n")
