"""AutoIF (paper Sec. 2.2), in three phases that the pipeline writes as rounds 1-3:

1. augment: the augmentation prompt (every seed constraint) sent `autoif.augment_calls` times;
   between phases the driver splits the generations into lines and deduplicates them (seeds kept).
2. verify: `autoif.samples_per_instruction` verification generations per constraint, then cross-validation
   by running the functions on the cases in the sandbox; constraints without a surviving function are rejected.
3. answer: each verified constraint paired with `autoif.queries_per_instruction` sampled user queries, answered
   under the constraint; round 3's alpaca file is the training data."""

from __future__ import annotations

from engine.config import ConfigError
from engine.prompts.autoif import verification_budget
from engine.recipes import specs
from engine.recipes.base import Expansion, Recipe, RoundInput
from engine.recipes.spec import StageSpec
from engine.stages.autoif.augment import (
    augment_call_rows,
    expand_queries,
    instruction_rows,
    load_queries,
    seed_constraints,
)
from engine.stages.scoring.select import selection_active
from engine.state.layout import RunLayout

PHASES = ("augment", "verify", "answer")


class AutoIF(Recipe):
    name = "autoif"
    chained = False  # each phase builds its own input: rows are conserved phase by phase

    def __init__(self, cfg):
        super().__init__(cfg)
        if selection_active(cfg.select):
            raise ConfigError("select.*: AutoIF rows carry no IFD scores to select by; unset select.fraction, "
                              "select.top_k, select.threshold, select.ifd_below_one and select.min_distance for "
                              "recipe=autoif")
        if cfg.autoif.structured:
            try:
                verification_budget(cfg.autoif.generate.max_new_tokens)
            except ValueError as err:
                raise ConfigError(f"autoif.structured: {err}; raise autoif.generate.max_new_tokens") from None

    def num_rounds(self) -> int:
        return len(PHASES)

    def round_input(self, round_num: int, layout: RunLayout) -> RoundInput | None:
        """Phase 1: one row per augmentation call. Phase 2: the seed constraints and every new line of phase 1's
        generations (dedup counts for the summary). Phase 3: None, it reads phase 2's kept rows and expands."""
        if round_num == 1:
            return RoundInput(augment_call_rows(self.cfg.autoif.augment_calls))
        if round_num == 2:
            table = layout.store.read_table(layout.data(1), columns=["id", "output"])
            calls = sorted(zip(table["id"].to_pylist(), table["output"].to_pylist()))
            batch, counts = instruction_rows(seed_constraints(self.cfg.autoif), calls)
            return RoundInput(batch, {f"augment_{k}": v for k, v in counts.items()})
        return None

    def expansion(self, round_num: int) -> Expansion | None:
        """Phase 3's one-to-many step: each verified constraint paired with sampled user queries."""
        if round_num != 3:
            return None
        queries = load_queries(self.cfg.autoif)
        if not queries:
            raise ConfigError("autoif: no user query passes the length filter; check autoif.queries_path and "
                              "autoif.query_min_chars / query_max_chars")
        return Expansion(expand_queries, {"queries": queries, "per_instruction": self.cfg.autoif.queries_per_instruction,
                                          "run_seed": self.cfg.run.seed, "round_num": round_num})

    def stages(self, round_num: int, decisions: dict) -> list[StageSpec]:
        if round_num == 1:
            return [specs.augment(self.cfg, round_num)]
        if round_num == 2:
            return [specs.verify(self.cfg, round_num), specs.cross_validate(self.cfg)]
        return [specs.respond(self.cfg, round_num, prompt="autoif")]

    def summary_section(self, per_round: list[dict]) -> dict:
        return funnel(per_round, structured=self.cfg.autoif.structured)


def funnel(per_round: list[dict], structured: bool = False) -> dict:
    """Pass rates at every filter: lines kept by dedup, verification answers parsed (their count and share; with
    `structured` decoding every one does), functions executable, cases kept, functions kept, constraints
    verified, queries answered."""
    if len(per_round) < 2:
        return {}
    c = per_round[1]["counts"]
    rate = lambda a, b: round(a / b, 4) if b else None  # noqa: E731
    out = {
        "augment_lines": c.get("augment_lines", 0),
        "augment_new_instructions": c.get("augment_new", 0),
        "instructions_in": per_round[1]["rows_in"] - per_round[1]["rejected_by_stage"].get("augment", 0),
        "instructions_verified": per_round[1]["rows_out"],
        "structured": structured,
        "generations_parsed": c.get("cv_parsed", 0),
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
