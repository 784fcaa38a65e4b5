"""Round sinks: split a round's ledger into Parquet data shards, the alpaca / ShareGPT / messages JSONL exports
and the rejects file."""

from __future__ import annotations

import json
import shutil
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from engine.io.exporters import EXPORT_FORMATS, TEXT_COLUMNS, dataset_info_entries, write_lines
from engine.io.layout import RunLayout
from engine.io.storage import Storage
from engine import throughput
from engine.records import STATUS_OK
from engine import output_space

TOKEN_COLUMNS = ("evolve_prompt_tokens", "evolve_tokens", "respond_prompt_tokens", "response_tokens")
SCORE_COLUMNS = ("l_q", "l_a_given_q", "l_a", "ifd", "ic_ifd")
# Per-row counters some stages write (AutoIF's cross-validation); summed over the round.
SUMMED_COLUMNS = ("cv_generations", "cv_parsed", "cv_funcs", "cv_funcs_executable", "cv_cases", "cv_cases_kept",
                  "cv_funcs_kept")
READ_ROWS = 8192


@dataclass
class RoundCounts:
    """What happened to the rows of one round: counters the summary is built from."""

    round: int
    rows_in: int = 0
    rows_out: int = 0
    rows_rejected: int = 0
    rejected_by_reason: Counter = field(default_factory=Counter)
    rejected_by_stage: Counter = field(default_factory=Counter)
    rejected_by_method: dict = field(default_factory=lambda: defaultdict(Counter))  # method -> reason -> n
    rejected_by_model: dict = field(default_factory=lambda: defaultdict(Counter))  # evolver -> reason -> n
    per_method: dict = field(default_factory=lambda: defaultdict(Counter))
    tokens: Counter = field(default_factory=Counter)
    score_sums: Counter = field(default_factory=Counter)
    score_counts: Counter = field(default_factory=Counter)
    selection: dict | None = None
    reused_shards: int = 0  # ledger shards a resumed run found committed and did not recompute
    reused_rows: int = 0
    sums: Counter = field(default_factory=Counter)  # SUMMED_COLUMNS, plus counts a recipe adds between phases
    output_space: dict = field(default_factory=dict)  # evolver -> output-space histogram totals
    stages: dict = field(default_factory=dict)  # stage -> timing totals from its actors (engine/throughput.py)

    def score_means(self) -> dict:
        """Mean scores over the round's kept rows (paper Table 15 reports mean IFD and IC-IFD)."""
        return {f"mean_{k}": self.score_sums[k] / self.score_counts[k] for k in SCORE_COLUMNS if self.score_counts[k]}

    def as_dict(self) -> dict:
        return {
            "round": self.round,
            "rows_in": self.rows_in,
            "rows_out": self.rows_out,
            "rows_rejected": self.rows_rejected,
            "rejected_by_reason": dict(sorted(self.rejected_by_reason.items())),
            "rejected_by_stage": dict(sorted(self.rejected_by_stage.items())),
            "rejected_by_method": _nested(self.rejected_by_method),
            "rejected_by_model": _nested(self.rejected_by_model),
            "per_method": _nested(self.per_method),
            "tokens": dict(self.tokens),
            "counts": dict(sorted(self.sums.items())),
            "scores": self.score_means(),
            "selection": self.selection,
            "resumed": {"shards_reused": self.reused_shards, "rows_reused": self.reused_rows},
            "output_space": self.output_space,
        }

    def state(self) -> dict:
        """Everything needed to rebuild these counts (the manifest stores it when a round completes)."""
        return {**self.as_dict(), "score_sums": dict(self.score_sums), "score_counts": dict(self.score_counts),
                "stages": self.stages}

    def merge(self, other: "RoundCounts") -> None:
        """Add another shard's counts of the same round to these."""
        self.rows_in += other.rows_in
        self.rows_out += other.rows_out
        self.rows_rejected += other.rows_rejected
        for name in ("rejected_by_reason", "rejected_by_stage", "tokens", "score_sums", "score_counts", "sums"):
            getattr(self, name).update(getattr(other, name))
        for name in ("rejected_by_method", "rejected_by_model", "per_method"):
            mine = getattr(self, name)
            for key, counter in getattr(other, name).items():
                mine[key].update(counter)
        output_space.merge_totals(self.output_space, other.output_space)
        throughput.merge(self.stages, other.stages)

    @classmethod
    def from_state(cls, state: dict) -> "RoundCounts":
        nested = lambda d: defaultdict(Counter, {k: Counter(v) for k, v in d.items()})  # noqa: E731
        return cls(
            round=state["round"], rows_in=state["rows_in"], rows_out=state["rows_out"],
            rows_rejected=state["rows_rejected"], rejected_by_reason=Counter(state["rejected_by_reason"]),
            rejected_by_stage=Counter(state["rejected_by_stage"]),
            rejected_by_method=nested(state["rejected_by_method"]), rejected_by_model=nested(state["rejected_by_model"]),
            per_method=nested(state["per_method"]), tokens=Counter(state["tokens"]), sums=Counter(state["counts"]),
            score_sums=Counter(state["score_sums"]), score_counts=Counter(state["score_counts"]),
            selection=state["selection"], reused_shards=state["resumed"]["shards_reused"],
            reused_rows=state["resumed"]["rows_reused"], output_space=state.get("output_space", {}),
            stages=state.get("stages", {}),
        )


def _nested(counters: dict) -> dict:
    return {key: dict(sorted(counter.items())) for key, counter in sorted(counters.items())}


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
            if throughput.STATS_COLUMN in table.column_names:  # stage timings: counted here, never written out
                throughput.add_column(counts.stages, table[throughput.STATS_COLUMN].to_pylist())
                table = table.drop_columns([throughput.STATS_COLUMN])
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
            _count(counts, table, ok)
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


def _count(counts: RoundCounts, table: pa.Table, ok: pa.ChunkedArray) -> None:
    status_ok = ok.to_pylist()
    for method, is_ok in zip(table["method"].to_pylist(), status_ok):
        if method:
            counts.per_method[method]["in"] += 1
            counts.per_method[method]["out" if is_ok else "rejected"] += 1
    columns = ("reason", "rejected_at", "method", "evolver")
    for (reason, stage, method, model), is_ok in zip(zip(*(table[c].to_pylist() for c in columns)), status_ok):
        if not is_ok:
            counts.rejected_by_reason[reason] += 1
            counts.rejected_by_stage[stage] += 1
            if method:
                counts.rejected_by_method[method][reason] += 1
            if model:
                counts.rejected_by_model[model][reason] += 1
    for name in TOKEN_COLUMNS:
        if name in table.column_names:
            counts.tokens[name] += int(pc.sum(table[name]).as_py() or 0)
    for name in SUMMED_COLUMNS:
        if name in table.column_names:
            counts.sums[name] += int(pc.sum(table[name]).as_py() or 0)
    if "sandbox_isolation" in table.column_names:
        for mode in table["sandbox_isolation"].to_pylist():
            if mode:
                counts.sums[f"sandbox:{mode}"] += 1
    if output_space.COLUMN in table.column_names:  # every generated row, kept or rejected
        for value, model in zip(table[output_space.COLUMN].to_pylist(), table["evolver"].to_pylist()):
            if value:
                output_space.add_row(counts.output_space.setdefault(model, output_space.empty_histograms()), value)
    kept = table.filter(ok)
    for name in SCORE_COLUMNS:
        if name in kept.column_names:
            values = kept[name].to_numpy(zero_copy_only=False).astype("float64")
            finite = values[np.isfinite(values)]
            counts.score_sums[name] += float(finite.sum())
            counts.score_counts[name] += int(len(finite))


def write_dataset_info(output_dir: "Path | str | Storage", rounds: list[int], prefix: str) -> None:
    """LLaMA-Factory's dataset_info.json, so `dataset_dir=OUTPUT` can train on any round directly, in any of the
    exported formats."""
    info = dataset_info_entries(rounds, prefix)
    layout = RunLayout.at(output_dir)
    layout.store.write_text(layout.dataset_info, json.dumps(info, indent=2) + "\n")


def write_json(path: Path, data: dict, storage: Storage | None = None) -> None:
    """Write JSON atomically (temp file then rename locally; one upload on an object store)."""
    text = json.dumps(data, indent=2, ensure_ascii=False) + "\n"
    (storage or Storage.resolve(Path(path).parent)).write_text(path, text)
