"""The run folder, spelled out once: every reader and writer of a run directory asks a RunLayout for its paths.

    RUN_DIR/
      config.yaml  summary.json  dataset_info.json  manifest.jsonl
      data/round_R/part-*.parquet          kept rows of round R (the next round's input)
      alpaca|sharegpt|messages/round_R.jsonl   the same rows in each export format
      rejects/round_R.jsonl                every rejected row with its stage and reason
      _ledger/round_R/part-<digest>.parquet    committed shards of a round in progress (resume unit)
      _ledger/round_R_selected/            the final round after the selection cut, before the split
      optimizer/                           Auto Evol-Instruct's optimizer log and chosen method
      analysis/summary.json  analysis/rows/*.parquet   `python -m engine.analyze` output
      report/  report-compare/             the HTML report of this run / of several runs beside it
      keywords.json                        `python -m engine.report.keyword_counts` output
      side_by_side/side_by_side.parquet|.jsonl   an evolver comparison's joined rows
      <evolver>/                           an evolver comparison's run of one evolver (a run folder itself)
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from engine.state.storage import Storage

EXPORT_KINDS = ("alpaca", "sharegpt", "messages")
ROUND_DIR = re.compile(r"^round_(\d+)$")


@dataclass(frozen=True)
class RunLayout:
    """Paths of one run directory. `storage` is the filesystem they are on (engine/state/storage.py); None: the
    local folder `root`."""

    root: Path
    storage: Storage | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root))

    @classmethod
    def at(cls, output_dir: "str | Path | Storage") -> "RunLayout":
        """The layout of `run.output_dir` as given: a local path or a pyarrow-filesystem URI."""
        storage = Storage.resolve(output_dir)
        return cls(storage.root, storage)

    @property
    def store(self) -> Storage:
        """The filesystem the run folder is on."""
        return self.storage if self.storage is not None else Storage.resolve(self.root)

    # --- files at the top
    @property
    def config(self) -> Path:
        return self.root / "config.yaml"

    @property
    def summary(self) -> Path:
        return self.root / "summary.json"

    @property
    def dataset_info(self) -> Path:
        return self.root / "dataset_info.json"

    # --- per round
    def data(self, round_num: int) -> Path:
        """The kept rows of a round (Parquet parts)."""
        return self.root / "data" / f"round_{round_num}"

    def export(self, kind: str, round_num: int) -> Path:
        """A round's rows in one export format (alpaca, sharegpt, messages) or its rejects ("rejects")."""
        return self.root / kind / f"round_{round_num}.jsonl"

    def rejects(self, round_num: int) -> Path:
        return self.export("rejects", round_num)

    def part(self, kind: str, round_num: int, index: int) -> Path:
        """One shard's lines of an export or rejects file, joined into `export(kind, round_num)` at the end."""
        return self.root / kind / f".round_{round_num}.parts" / f"{index:05d}.jsonl"

    @property
    def rejects_folder(self) -> Path:
        """Where every round's rejects file lies."""
        return self.rejects(0).parent

    def ledger(self, round_num: int) -> Path:
        """Committed shards of a round in progress."""
        return self.root / "_ledger" / f"round_{round_num}"

    def selected(self, round_num: int) -> Path:
        """The final round's shards after the selection cut."""
        return self.root / "_ledger" / f"round_{round_num}_selected"

    def rounds(self) -> list[int]:
        """Rounds with a data folder, ascending."""
        entries = self.store.entries(self.root / "data")
        found = [int(m.group(1)) for d, is_dir in entries if is_dir and (m := ROUND_DIR.match(d.name))]
        return sorted(found)

    def data_files(self, round_num: int) -> list[Path]:
        return self.store.files(self.data(round_num), ".parquet")

    def final_round(self) -> int | None:
        """The largest round with a data folder (the run's output); None before any round was written."""
        rounds = self.rounds()
        return rounds[-1] if rounds else None

    # --- recipe and tool folders
    @property
    def optimizer(self) -> Path:
        return self.root / "optimizer"

    @property
    def analysis(self) -> Path:
        return self.root / "analysis"

    @property
    def analysis_summary(self) -> Path:
        return self.analysis / "summary.json"

    @property
    def analysis_rows(self) -> Path:
        """One row per analysed row (Parquet parts)."""
        return self.analysis / "rows"

    @property
    def keywords(self) -> Path:
        """Distinct trajectory keywords per evolver (engine/report/keyword_counts.py)."""
        return self.root / "keywords.json"

    @property
    def side_by_side(self) -> Path:
        return self.root / "side_by_side"

    def side_by_side_file(self, suffix: str) -> Path:
        """The comparison's join as "parquet" or "jsonl"."""
        return self.side_by_side / f"side_by_side.{suffix}"

    def evolver(self, name: str) -> Path:
        """In a comparison: the run folder of one evolver."""
        return self.root / name

    @property
    def report(self) -> Path:
        """The HTML report of this run alone."""
        return self.root / "report"

    @property
    def compare_report(self) -> Path:
        """The report of several runs, written beside the first of them."""
        return self.root / "report-compare"

    def outputs(self) -> list[Path]:
        """What the engine owns here and a fresh run clears (config.yaml, .hydra and the manifest stay)."""
        names = ("data", *EXPORT_KINDS, "rejects", "_ledger", "summary.json", "dataset_info.json")
        return [self.root / name for name in names]

    def summary_outputs(self, rounds: list[int]) -> dict:
        """summary.json["outputs"]: each output of the given rounds, relative to the run directory."""
        rel = lambda p: str(p.relative_to(self.root))  # noqa: E731
        return {
            "data": [rel(self.data(r)) for r in rounds],
            **{kind: [rel(self.export(kind, r)) for r in rounds] for kind in EXPORT_KINDS},
            "rejects": [rel(self.rejects(r)) for r in rounds],
        }
