"""`python -m engine.export RUN_DIR --format alpaca|sharegpt|messages [--round R] [--out FILE]`: a finished run's
kept rows of one round (the final one by default) as JSONL in a trainer's format, registered in the run's
LLaMA-Factory dataset_info.json when written inside the run."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from engine.io.exporters import EXPORT_FORMATS, dataset_info_entries, export_files, register


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m engine.export", description=__doc__.split(":", 1)[1].strip())
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--format", required=True, choices=EXPORT_FORMATS)
    parser.add_argument("--round", type=int, default=None, help="default: the final round")
    parser.add_argument("--out", type=Path, default=None, help="default: RUN_DIR/<format>/round_R.jsonl")
    args = parser.parse_args(argv)
    from engine.report.build import final_round_files

    run_dir = args.run_dir
    round_num = args.round if args.round is not None else final_round_files(run_dir)[0]
    data = run_dir / "data" / f"round_{round_num}"
    if round_num is None or not data.is_dir():
        what = f"round {round_num}" if args.round is not None else "any round"
        print(f"error: {run_dir} has no kept data for {what} (expected {run_dir / 'data' / 'round_R'}/, written by "
              f"a finished `python -m engine` run)", file=sys.stderr)
        return 2
    target = args.out or run_dir / args.format / f"round_{round_num}.jsonl"
    rows = export_files(sorted(data.glob("*.parquet")), args.format, target)
    if args.out is None:
        register(run_dir, dataset_info_entries([round_num], _prefix(run_dir), [args.format]))
    print(json.dumps({"format": args.format, "round": round_num, "rows": rows, "file": str(target)}))
    return 0


def _prefix(run_dir: Path) -> str:
    """The dataset name prefix the run itself used (`<recipe>_<model>`), from its summary or config."""
    summary = run_dir / "summary.json"
    if summary.exists():
        data = json.loads(summary.read_text())
        return f"{data.get('recipe', 'run')}_{data.get('model', 'model')}"
    return run_dir.name


if __name__ == "__main__":
    sys.exit(main())
