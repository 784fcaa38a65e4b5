"""Evol-Instruct (paper Sec. 2.1): each round evolves, eliminates failures, then writes responses.

Round r's survivors are round r+1's seeds; the method for seed row i in round r is methods[(i + r) % K]."""

from __future__ import annotations

from engine.config import Config
from engine.recipes import StageSpec
from engine.stages.eliminate import Eliminate
from engine.stages.evolve import Evolve
from engine.stages.respond import Respond


def stages(cfg: Config, round_num: int) -> list[StageSpec]:
    """The stages of one round, in order."""
    return [
        StageSpec(Evolve, {"round_num": round_num}),
        StageSpec(Eliminate, {"round_num": round_num}),
        StageSpec(Respond, {"round_num": round_num}),
    ]
