"""Auto Evol-Instruct (paper Sec. 2.3): the universal 4-step prompt, as the paper ran it, or with
`auto_evol.optimize=true` the method the optimizer loop of Zeng et al. 2024 chose first. Each round auto-evolves,
eliminates failures (the Evol-Instruct filter), then writes responses; rounds chain."""

from __future__ import annotations

import json
from pathlib import Path

from engine.config import Config, ConfigError
from engine.recipes import StageSpec
from engine.stages.auto_evolve import AutoEvolve
from engine.stages.eliminate import Eliminate
from engine.stages.keywords import TrajectoryKeywords
from engine.stages.optimize import MethodOptimizer
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


def before_rounds(cfg: Config, out: Path, first_instructions, call_in_actor) -> None:
    """With `auto_evol.optimize`, run the optimizer loop once (in an actor) on the first seed rows and evolve
    with the method it chose. Its log and choice are saved under optimizer/; a resumed run reuses the choice."""
    if not cfg.auto_evol.optimize:
        return
    folder = out / "optimizer"
    chosen = folder / "chosen_method.txt"
    if not chosen.exists():
        opt = cfg.auto_evol
        rows = first_instructions(opt.train_rows + opt.dev_rows)
        if len(rows) < opt.train_rows + opt.dev_rows:
            raise ConfigError(f"auto_evol.optimize needs {opt.train_rows + opt.dev_rows} seed rows "
                              f"(train_rows + dev_rows); the seeds hold {len(rows)} valid ones")
        method, log = call_in_actor(MethodOptimizer, "run", rows[: opt.train_rows], rows[opt.train_rows:])
        folder.mkdir(parents=True, exist_ok=True)
        with open(folder / "steps.jsonl", "w", encoding="utf-8") as handle:
            handle.writelines(json.dumps(step, ensure_ascii=False) + "\n" for step in log)
        tmp = chosen.with_name(chosen.name + ".tmp")
        tmp.write_text(method, encoding="utf-8")
        tmp.replace(chosen)
    cfg.auto_evol.method = chosen.read_text(encoding="utf-8")
