"""What happened to the rows of a round: the counters every shard adds up (rows, rejections by reason, stage,
method and model, tokens, scores, stage timings, output-space histograms), merged across shards and rounds and
journaled in the manifest; engine/run/summary.py builds summary.json from them. Ray-free."""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from engine.measure import output_space
from engine.run import accounting

TOKEN_COLUMNS = ("evolve_prompt_tokens", "evolve_tokens", "respond_prompt_tokens", "response_tokens")
SCORE_COLUMNS = ("l_q", "l_a_given_q", "l_a", "ifd", "ic_ifd")
# Per-row counters some stages write (AutoIF's cross-validation); summed over the round.
SUMMED_COLUMNS = ("cv_generations", "cv_parsed", "cv_funcs", "cv_funcs_executable", "cv_cases", "cv_cases_kept",
                  "cv_funcs_kept")


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
    steps: dict = field(default_factory=dict)  # whole-round step name -> its record (dedup, select)
    reused_shards: int = 0  # ledger shards a resumed run found committed and did not recompute
    reused_rows: int = 0
    sums: Counter = field(default_factory=Counter)  # SUMMED_COLUMNS, plus counts a recipe adds between phases
    output_space: dict = field(default_factory=dict)  # evolver -> output-space histogram totals
    stages: dict = field(default_factory=dict)  # stage -> timing totals from its actors (engine/run/accounting.py)

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
            "steps": self.steps,
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
        accounting.merge(self.stages, other.stages)

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
            selection=state["selection"], steps=state.get("steps", {}), reused_shards=state["resumed"]["shards_reused"],
            reused_rows=state["resumed"]["rows_reused"], output_space=state.get("output_space", {}),
            stages=state.get("stages", {}),
        )


def _nested(counters: dict) -> dict:
    return {key: dict(sorted(counter.items())) for key, counter in sorted(counters.items())}


def count_table(counts: RoundCounts, table: pa.Table, ok: pa.ChunkedArray) -> None:
    """Add one table of a round's ledger (every row, `ok` marking the kept ones) to `counts`."""
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


def take_timings(counts: RoundCounts, table: pa.Table) -> pa.Table:
    """Fold the stage timings a ledger table carries (engine/run/accounting.py's column) into `counts`; the table
    without that column, which no output file carries."""
    if accounting.STATS_COLUMN not in table.column_names:
        return table
    accounting.add_column(counts.stages, table[accounting.STATS_COLUMN].to_pylist())
    return table.drop_columns([accounting.STATS_COLUMN])
