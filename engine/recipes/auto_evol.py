"""Auto Evol-Instruct (paper Sec. 2.3) as the paper ran it: the universal 4-step prompt, no optimizer stage.
Each round auto-evolves, eliminates failures (the Evol-Instruct filter), then writes responses; rounds chain."""

from __future__ import annotations

from engine.config import Config
from engine.recipes import StageSpec
from engine.stages.auto_evolve import AutoEvolve
from engine.stages.eliminate import Eliminate
from engine.stages.keywords import TrajectoryKeywords
from engine.stages.respond import Respond
from engine.stages.score import Score


def stages(cfg: Config, round_num: int) -> list[StageSpec]:
    """The stages of one round, in order."""
    steps = [StageSpec(AutoEvolve, {"round_num": round_num})]
    if cfg.auto_evol.keywords:
        steps.append(StageSpec(TrajectoryKeywords, {"round_num": round_num}))
    steps += [
        StageSpec(Eliminate, {"round_num": round_num}),
        StageSpec(Respond, {"round_num": round_num}),
    ]
    if cfg.scoring.enabled:
        steps.append(StageSpec(Score, {"round_num": round_num}))
    return steps
