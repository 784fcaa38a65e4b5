"""`python -m engine.pairwise ANSWERS_A ANSWERS_B [key=value ...]`: pairwise judging of two answer sets (paper
Fig. 6/7) with position swap: every question is judged with A shown first and with B shown first, and the two
verdicts are combined under `analysis.pairwise.tie_policy` (consistent | lenient).

Each file is alpaca-style (instruction, input, output; jsonl, json, parquet or a run's alpaca/round_R.jsonl).
Rows are paired by `id` when both files carry ids, else by instruction + input. The judge is `model=`.
Writes judgements.jsonl (both raw answers, both verdicts, the outcome) and summary.json (win/tie/lose for A,
unparsable verdicts, unpaired and invalid rows) into `analysis.pairwise.output_dir`."""

from __future__ import annotations

import json
import logging
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow as pa

from engine.config import Config, ConfigError, compose
from engine.read.readers import InputError, iter_records, list_input_files
from engine.recipes.resources import resources_for
from engine.recipes.spec import StageSpec
from engine.rows.records import STATUS_OK
from engine.state.storage import write_json

log = logging.getLogger("engine.commands.pairwise")


def read_answers(path: Path) -> tuple[dict[str, dict], list[dict]]:
    """Valid rows keyed for pairing, and the invalid rows with their reasons (file:line in `detail`)."""
    files, _ = list_input_files(path)
    rows, invalid, position = {}, [], 0
    for file in files:
        for batch in iter_records(file, position):
            for i in range(len(batch["id"])):
                row = {k: batch[k][i] for k in ("id", "instruction", "input", "output", "status", "reason", "detail")}
                if row["status"] != STATUS_OK:
                    invalid.append({"file": str(path), "reason": row["reason"], "detail": row["detail"]})
                else:
                    rows[row["id"]] = row
            position += len(batch["id"])
    return rows, invalid


def pair_rows(a: dict[str, dict], b: dict[str, dict]) -> tuple[list[tuple[dict, dict]], list[str], list[str]]:
    """Rows of A and B about the same question: by id when the ids overlap (files with `id` fields keep them),
    else by instruction + input. Returns the pairs and the unpaired keys of each side."""
    def by_text(rows):
        return {f"{r['instruction']}\x1f{r['input']}": r for r in rows.values()}

    if not set(a) & set(b):
        a, b = by_text(a), by_text(b)
    pairs = [(a[key], b[key]) for key in a if key in b]
    return pairs, sorted(set(a) - set(b)), sorted(set(b) - set(a))


def judge_files(cfg: Config, path_a: Path, path_b: Path) -> dict:
    from engine.run.runner import analyse
    from engine.stages.analysis.judge import PairwiseArgs, PairwiseJudge

    rows_a, invalid_a = read_answers(path_a)
    rows_b, invalid_b = read_answers(path_b)
    pairs, only_a, only_b = pair_rows(rows_a, rows_b)
    if not pairs:
        raise ConfigError(f"{path_a} and {path_b} share no question (by id, or by instruction + input)")
    for ra, rb in pairs:
        if ra["instruction"] != rb["instruction"]:
            raise ConfigError(f"id {ra['id']} names different instructions in {path_a} and {path_b}")
    table = pa.table({
        "id": [ra["id"] for ra, _ in pairs],
        "instruction": [ra["instruction"] + (f"\n{ra['input']}" if ra["input"] else "") for ra, _ in pairs],
        "answer_a": [ra["output"] for ra, _ in pairs], "answer_b": [rb["output"] for _, rb in pairs],
        "status": [STATUS_OK] * len(pairs),
    })
    out = Path(cfg.analysis.pairwise.output_dir or Path("pairwise") / f"{path_a.stem}-vs-{path_b.stem}")
    out.mkdir(parents=True, exist_ok=True)
    outcomes: Counter = Counter()
    unparsable: Counter = Counter()
    with open(out / "judgements.jsonl.tmp", "w", encoding="utf-8") as handle:
        def sink(batch: dict[str, np.ndarray]) -> None:
            for i in range(len(batch["id"])):
                row = {k: (v[i].item() if hasattr(v[i], "item") else v[i]) for k, v in batch.items()}
                outcomes[row["outcome"]] += 1
                unparsable["a_first"] += row["verdict_ab"] == ""
                unparsable["b_first"] += row["verdict_ba"] == ""
                handle.write(json.dumps(row, ensure_ascii=False) + "\n")

        spec = StageSpec(PairwiseJudge, PairwiseArgs(model=cfg.model, pairwise=cfg.analysis.pairwise),
                         resources_for(cfg, "judge"))
        analyse(cfg, table, None, [spec], sink)
    (out / "judgements.jsonl.tmp").replace(out / "judgements.jsonl")
    summary = {
        "a": str(path_a), "b": str(path_b), "judge": cfg.model.name, "tie_policy": cfg.analysis.pairwise.tie_policy,
        "parse": cfg.analysis.pairwise.parse, "pairs": len(pairs),
        "win": outcomes["win"], "tie": outcomes["tie"], "lose": outcomes["lose"],
        "unparsable_verdicts": dict(unparsable),
        "unpaired": {"a": len(only_a), "b": len(only_b)}, "invalid": invalid_a + invalid_b,
    }
    write_json(out / "summary.json", summary)
    return summary


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    paths = [Path(a) for a in argv if "=" not in a]
    if len(paths) != 2:
        print(__doc__)
        return 2
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    from engine.backends.base import BackendUnavailable

    try:
        summary = judge_files(compose([a for a in argv if "=" in a]), *paths)
    except (ConfigError, InputError, BackendUnavailable) as err:
        log.error("%s", err)
        return 2
    print(json.dumps({k: summary[k] for k in ("pairs", "win", "tie", "lose", "tie_policy")}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
