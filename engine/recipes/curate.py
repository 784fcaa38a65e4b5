"""Curation of an existing data set (no evolution), top to bottom: seeds -> given answers kept aside ->
deduplicate (dedup.*, on by default here) -> respond where asked (curate.respond) -> score -> select (select.*).

Deduplication needs the whole input at once, so it is a whole-round step: with dedup on, the recipe runs two
phases that the pipeline writes as rounds 1 and 2 (1: read and deduplicate, 2: its kept rows answered, scored and
selected); with dedup off, one. Rows are conserved over the run, as in a chained Evol-Instruct run: every input
row is in the final data/ or in one phase's rejects with its reason (no_output, duplicate, too_similar,
not_selected, ...). `rounds` does not apply."""

from __future__ import annotations

from engine.config import ConfigError
from engine.recipes import specs
from engine.recipes.base import Recipe, dedup_step, select_step
from engine.recipes.spec import StageSpec
from engine.recipes.steps import WholeRoundStep
from engine.stages.curation.dedup import dedup_active
from engine.stages.curation.given import RESPOND_MODES
from engine.stages.scoring.select import selection_active


class Curate(Recipe):
    name = "curate"
    chained = True  # phase 2 reads phase 1's kept rows: rows are conserved over the whole run
    dedup_default = True  # an existing data set is deduplicated unless dedup.enabled=false

    def __init__(self, cfg):
        super().__init__(cfg)
        if cfg.curate.respond not in RESPOND_MODES:
            raise ConfigError(f"curate.respond={cfg.curate.respond!r} is not one of {', '.join(RESPOND_MODES)}")

    def phases(self) -> list[str]:
        """dedup (read, deduplicate) when dedup.* is on, then score (respond, score, select) unless there is
        nothing left to do after deduplication (curate.respond=never with scoring off: deduplicate only)."""
        dedup = dedup_active(self.cfg.dedup, self.dedup_default)
        work = self.cfg.curate.respond != "never" or self.cfg.scoring.enabled
        return (["dedup"] if dedup else []) + (["score"] if work or not dedup else [])

    def num_rounds(self) -> int:
        return len(self.phases())

    def stages(self, round_num: int, decisions: dict) -> list[StageSpec]:
        phases, cfg = self.phases(), self.cfg
        if phases[round_num - 1] == "dedup":
            return [specs.given_outputs(cfg)]
        steps = [] if "dedup" in phases else [specs.given_outputs(cfg)]
        if cfg.curate.respond != "never":
            steps.append(specs.respond(cfg, round_num, only_missing=cfg.curate.respond == "missing"))
        score = specs.score(cfg, round_num)  # None when scoring is off
        return steps + ([score] if score is not None else [])

    def after_round(self, round_num: int, final: bool) -> list[WholeRoundStep]:
        """The dedup phase: the deduplication over every row; the final phase: the selection cut."""
        steps: list[WholeRoundStep] = []
        if self.phases()[round_num - 1] == "dedup":
            steps.append(dedup_step(self.cfg))
        if final and selection_active(self.cfg.select):
            steps.append(select_step(self.cfg))
        return steps

    def summary_section(self, per_round: list[dict]) -> dict:
        return {"respond": self.cfg.curate.respond, "phases": self.phases()}

