"""`python -m engine.report.keyword_counts RUN_DIR [RUN_DIR ...]`: distinct trajectory keywords per evolver (the
paper's "6.9% more keywords" measure), from runs made with `recipe=auto_evol auto_evol.keywords=true`.

Reads the `traj_keywords` and `evolver` columns of every round's kept rows and rejects, batch by batch; prints
one JSON line per run and writes keywords.json into each run directory."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pyarrow.parquet as pq

from engine.stages.analysis.keywords import count_keywords
from engine.state.layout import RunLayout
from engine.state.storage import write_json


def keyword_lists(run_dir: Path):
    """Every row's keyword list (kept rows from data/, rejected ones from rejects/), with its evolver."""
    layout = RunLayout(run_dir)
    for path in [f for r in layout.rounds() for f in layout.data_files(r)]:
        pf = pq.ParquetFile(path)
        if "traj_keywords" not in pf.schema_arrow.names:
            continue
        for batch in pf.iter_batches(columns=["traj_keywords", "evolver"]):
            for keywords, evolver in zip(batch.column(0).to_pylist(), batch.column(1).to_pylist()):
                yield evolver, json.loads(keywords or "[]")
    for path in [p for r in layout.rounds() if (p := layout.rejects(r)).exists()]:
        with open(path, encoding="utf-8") as handle:
            for line in handle:
                row = json.loads(line)
                if row.get("traj_keywords"):
                    yield row.get("evolver", ""), json.loads(row["traj_keywords"])


def keyword_report(run_dir: Path) -> dict:
    """{evolver: {"keywords", "distinct_exact", "distinct_normalised"}} for one run."""
    by_evolver: dict[str, list] = {}
    for evolver, keywords in keyword_lists(run_dir):
        by_evolver.setdefault(evolver or "unknown", []).append(keywords)
    return {evolver: count_keywords(lists) for evolver, lists in sorted(by_evolver.items())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path)
    args = parser.parse_args()
    for run_dir in args.runs:
        report = keyword_report(run_dir)
        write_json(RunLayout(run_dir).keywords, report)
        print(json.dumps({"run": str(run_dir), **report}))


if __name__ == "__main__":
    main()
