"""`python -m engine.export RUN_DIR --format alpaca|sharegpt|messages [--round R] [--out FILE]`: a finished run's
kept rows of one round (the final one by default) as JSONL in a trainer's format, registered in the run's
LLaMA-Factory dataset_info.json when written inside the run."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from engine.state.layout import RunLayout
from engine.write.exporters import EXPORT_FORMATS, dataset_info_entries, export_files, register


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m engine.export", description=__doc__.split(":", 1)[1].strip())
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--format", required=True, choices=EXPORT_FORMATS)
    parser.add_argument("--round", type=int, default=None, help="default: the final round")
    parser.add_argument("--out", type=Path, default=None, help="default: RUN_DIR/<format>/round_R.jsonl")
    args = parser.parse_args(argv)

    run_dir = args.run_dir
    layout = RunLayout(run_dir)
    round_num = args.round if args.round is not None else layout.final_round()
    if round_num is None or not layout.data(round_num).is_dir():
        what = f"round {round_num}" if args.round is not None else "any round"
        expected = layout.data(0).with_name("round_R")
        print(f"error: {run_dir} has no kept data for {what} (expected {expected}/, written by "
              f"a finished `python -m engine` run)", file=sys.stderr)
        return 2
    target = args.out or layout.export(args.format, round_num)
    rows = export_files(layout.data_files(round_num), args.format, target)
    if args.out is None:
        register(run_dir, dataset_info_entries([round_num], _prefix(layout), [args.format]))
    print(json.dumps({"format": args.format, "round": round_num, "rows": rows, "file": str(target)}))
    return 0


def _prefix(layout: RunLayout) -> str:
    """The dataset name prefix the run itself used (`<recipe>_<model>`), from its summary or config."""
    if layout.summary.exists():
        data = json.loads(layout.summary.read_text())
        return f"{data.get('recipe', 'run')}_{data.get('model', 'model')}"
    return layout.root.name


if __name__ == "__main__":
    sys.exit(main())
