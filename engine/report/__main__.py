"""`python -m engine.report RUN_DIR [RUN_DIR ...] [--out DIR]`: the HTML report (plots and tables) of one run,
or of several runs side by side (e.g. an SLM and an LLM evolver). `python -m engine.report.keyword_counts` is a
separate tool of this package."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from engine.report.build import ReportError, build_report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m engine.report", description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path, metavar="RUN_DIR", help="run directories (with summary.json)")
    parser.add_argument("--out", type=Path, default=None,
                        help="output directory (default: RUN_DIR/report; several runs: <first>/report-compare)")
    args = parser.parse_args(argv)
    try:
        index = build_report(args.runs, args.out)
    except ReportError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"report in {index}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
