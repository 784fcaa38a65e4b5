"""`python -m engine.balance RUN_A RUN_B --out DIR [--round R] [--seed S]`: equalise two runs' training data (e.g.
the SLM- and LLM-evolved sets) to the same size with a seeded sample, as the paper does before training.

Streams each run's alpaca/round_R.jsonl twice (count, then copy the sampled lines): memory holds only the
sampled line numbers. Writes DIR/<run name>.jsonl for both and DIR/balance.json."""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

from engine.state.layout import RunLayout
from engine.state.storage import write_json


def count_lines(path: Path) -> int:
    with open(path, "rb") as handle:
        return sum(1 for _ in handle)


def sample_lines(source: Path, target: Path, total: int, keep: int, seed: int) -> None:
    """Copy `keep` of the `total` lines of `source`, chosen with random.Random(seed), in their original order."""
    chosen = set(random.Random(seed).sample(range(total), keep)) if keep < total else None
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(source, "rb") as src, open(target, "wb") as dst:
        for number, line in enumerate(src):
            if chosen is None or number in chosen:
                dst.write(line)


def balance(run_a: Path, run_b: Path, out: Path, round_num: int | None = None, seed: int = 0) -> dict:
    """Sample the larger run's final (or `round_num`) alpaca file down to the smaller one's size."""
    files = []
    for run in (run_a, run_b):
        layout = RunLayout(run)
        r = round_num or json.loads(layout.summary.read_text())["rounds_completed"]
        files.append(layout.export("alpaca", r))
    sizes = [count_lines(f) for f in files]
    keep = min(sizes)
    names = [run_a.name, run_b.name] if run_a.name != run_b.name else ["a", "b"]
    for source, total, name in zip(files, sizes, names):
        sample_lines(source, out / f"{name}.jsonl", total, keep, seed)
    report = {"inputs": [str(f) for f in files], "sizes": sizes, "kept_each": keep, "seed": seed,
              "outputs": [str(out / f"{name}.jsonl") for name in names]}
    write_json(out / "balance.json", report)
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_a", type=Path)
    parser.add_argument("run_b", type=Path)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--round", type=int, default=None, help="default: each run's last completed round")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    print(json.dumps(balance(args.run_a, args.run_b, args.out, args.round, args.seed)))


if __name__ == "__main__":
    main()
