"""Evol-Instruct (paper Sec. 2.1): each round evolves, eliminates failures, then writes responses.

Round r's survivors are round r+1's seeds; the method for seed row i in round r is methods[(i + r) % K].
Scoring (IFD / IC-IFD) runs in its own actor pool after respond; the runner applies the selection cut to the
final round once every row is scored (it needs all of them)."""

from __future__ import annotations

from engine.config import Config
from engine.recipes import StageSpec
from engine.stages.eliminate import Eliminate
from engine.stages.evolve import Evolve
from engine.stages.respond import Respond
from engine.stages.score import Score


def stages(cfg: Config, round_num: int) -> list[StageSpec]:
    """The stages of one round, in order."""
    steps = [
        StageSpec(Evolve, {"round_num": round_num}),
        StageSpec(Eliminate, {"round_num": round_num}),
        StageSpec(Respond, {"round_num": round_num}),
    ]
    if cfg.scoring.enabled:
        steps.append(StageSpec(Score, {"round_num": round_num}))
    return steps

