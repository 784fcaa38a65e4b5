"""Evol-Instruct (paper Sec. 2.1), top to bottom: seeds -> evolve -> eliminate -> respond -> score, chained for
`rounds`; after the final round the selection cut (select.*) keeps the top by IC-IFD; the pipeline writes
data/, the exports and rejects/ (engine/state/layout.py).

Round r's survivors are round r+1's seeds; the method for seed row i in round r is methods[(i + r) % K]."""

from __future__ import annotations

from engine.recipes import specs
from engine.recipes.base import Recipe
from engine.recipes.spec import StageSpec


class EvolInstruct(Recipe):
    name = "evol_instruct"

    def stages(self, round_num: int, decisions: dict) -> list[StageSpec]:
        steps = [
            specs.evolve(self.cfg, round_num),
            specs.eliminate(self.cfg),  # rule-based: runs in the evolver's actors
            specs.respond(self.cfg, round_num),
            specs.score(self.cfg, round_num),  # None when scoring is off
        ]
        return [step for step in steps if step is not None]
