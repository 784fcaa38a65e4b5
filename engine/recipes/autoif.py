"""AutoIF (paper Sec. 2.2), in three phases that the runner writes as rounds 1-3:

1. augment: the augmentation prompt (every seed constraint) sent `autoif.augment_calls` times;
   between phases the driver splits the generations into lines and deduplicates them (seeds kept).
2. verify: `autoif.samples_per_instruction` verification generations per constraint, then cross-validation
   by running the functions on the cases in the sandbox; constraints without a surviving function are rejected.
3. answer: each verified constraint paired with `autoif.queries_per_instruction` sampled user queries, answered
   under the constraint; round 3's alpaca file is the training data."""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq

from engine.config import Config
from engine.recipes import StageSpec
from engine.stages.autoif import AugmentGen, augment_call_rows, expand_queries, instruction_rows, load_queries
from engine.stages.respond import Respond
from engine.stages.verify import CrossValidate, VerifyGen

ROUNDS = 3


def num_rounds(cfg: Config) -> int:
    return ROUNDS


def stages(cfg: Config, round_num: int) -> list[StageSpec]:
    """The stages of one phase, in order."""
    if round_num == 1:
        return [StageSpec(AugmentGen, {"round_num": round_num})]
    if round_num == 2:
        return [StageSpec(VerifyGen, {"round_num": round_num}), StageSpec(CrossValidate, {"round_num": round_num})]
    return [StageSpec(Respond, {"round_num": round_num, "prompt": "autoif"})]


def round_input(cfg: Config, round_num: int, out: Path):
    """Rows a phase starts from when the driver builds them (phases 1 and 2), with counts for the summary;
    None for phase 3, which reads phase 2's kept rows and expands them."""
    if round_num == 1:
        return augment_call_rows(cfg), {}
    if round_num == 2:
        table = pq.read_table(out / "data" / "round_1", columns=["id", "output"])
        calls = sorted(zip(table["id"].to_pylist(), table["output"].to_pylist()))
        batch, counts = instruction_rows(cfg, calls)
        return batch, {f"augment_{k}": v for k, v in counts.items()}
    return None


def expand(cfg: Config, round_num: int):
    """Phase 3's one-to-many step: (function, keyword arguments), or None."""
    if round_num != 3:
        return None
    queries = load_queries(cfg.autoif)
    if not queries:
        from engine.config import ConfigError

        raise ConfigError("autoif: no user query passes the length filter; check autoif.queries_path and "
                          "autoif.query_min_chars / query_max_chars")
    return expand_queries, {"queries": queries, "per_instruction": cfg.autoif.queries_per_instruction,
                            "run_seed": cfg.run.seed, "round_num": round_num}


def summarise(per_round: list[dict]) -> dict:
    """Pass rates at every filter: lines kept by dedup, generations parsed, functions executable, cases kept,
    functions kept, constraints verified, queries answered."""
    if len(per_round) < 2:
        return {}
    c = per_round[1]["counts"]
    rate = lambda a, b: round(a / b, 4) if b else None  # noqa: E731
    out = {
        "augment_lines": c.get("augment_lines", 0),
        "augment_new_instructions": c.get("augment_new", 0),
        "instructions_in": per_round[1]["rows_in"] - per_round[1]["rejected_by_stage"].get("augment", 0),
        "instructions_verified": per_round[1]["rows_out"],
        "generations_parsed_rate": rate(c.get("cv_parsed", 0), c.get("cv_generations", 0)),
        "functions_executable_rate": rate(c.get("cv_funcs_executable", 0), c.get("cv_funcs", 0)),
        "cases_kept_rate": rate(c.get("cv_cases_kept", 0), c.get("cv_cases", 0)),
        "functions_kept_rate": rate(c.get("cv_funcs_kept", 0), c.get("cv_funcs_executable", 0)),
    }
    out["instructions_verified_rate"] = rate(out["instructions_verified"], out["instructions_in"])
    out["sandbox_isolation"] = sorted(k.split(":", 1)[1] for k in c if k.startswith("sandbox:"))
    if len(per_round) > 2:
        out["answers_kept"] = per_round[2]["rows_out"]
        out["answers_kept_rate"] = rate(per_round[2]["rows_out"], per_round[2]["rows_in"])
    return out
