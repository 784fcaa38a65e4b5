"""Auto Evol-Instruct's evolve step (paper Sec. 2.3): the universal 4-step prompt, parsed in the same pass into
its trajectory (methods list, plan, rewritten, final), so trajectory analysis needs no second generation."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np

from engine.backends import Sampling, load_backend
from engine.config import ModelConfig, SamplingConfig
from engine.measure.output_space import record_output_space
from engine.prompts.auto_evol import BASE_INSTRUCTION, four_step_structured, parse_trajectory
from engine.rows.records import default_columns, ok_mask, reject_with_reasons
from engine.rows.rng import row_seeds
from engine.stages.generation.evolve import EVOLVE_COLUMNS, record_evolution

METHOD = "auto_evol"
TRAJECTORY_COLUMNS = {"traj_methods": "", "traj_plan": "", "traj_rewritten": "", "evolve_raw": ""}
RAW_IN_DETAIL = 400  # characters of an unparsable answer quoted in its reject detail (all of it is in evolve_raw)


@dataclass(frozen=True)
class AutoEvolveArgs:
    """What AutoEvolve uses; `method` is the evolving method text (None: the paper's universal prompt), which
    the optimizer's choice arrives as."""

    model: ModelConfig
    round_num: int
    sampling: SamplingConfig
    parse_mode: str = "robust"
    method: Optional[str] = None
    run_seed: int = 0
    output_space: bool = False
    structured: bool = False  # constrain each answer to the four labelled sections (prompts/auto_evol.py)


class AutoEvolve:
    """Rewrites each ok instruction with the 4-step prompt; the #Finally Rewritten Instruction# becomes the new
    instruction, the other steps go to trajectory columns, and an answer without one is rejected (`unparsable`).
    With `structured`, every answer carries the four exact labels and a non-empty final instruction, and is
    split on those labels (parse_structured) whatever `parse_mode` says."""

    uses_model = True

    def __init__(self, args: AutoEvolveArgs, torch_threads: int | None = None):
        self.round_num = args.round_num
        self.settings = args.sampling
        self.parse_mode = "structured" if args.structured else args.parse_mode
        self.structured = four_step_structured(args.sampling.max_new_tokens) if args.structured else None
        self.method = args.method or BASE_INSTRUCTION  # an optimized method, when the loop ran
        self.run_seed = args.run_seed
        self.evolver = args.model.name
        self.output_space = args.output_space
        self.model = load_backend(args.model, torch_threads=torch_threads)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        n = len(batch["id"])
        rows = np.flatnonzero(ok_mask(batch))
        batch.update(default_columns(n, {**EVOLVE_COLUMNS, **TRAJECTORY_COLUMNS}))
        prompts = [self.method + str(batch["instruction"][i]) for i in rows]
        sampling = Sampling(self.settings.temperature, self.settings.top_p, self.settings.max_new_tokens,
                            output_stats=self.output_space)
        seeds = row_seeds(self.run_seed, "auto_evolve", self.round_num, [batch["id"][i] for i in rows])
        generations = self.model.generate(prompts, sampling, seeds, structured=self.structured) if len(rows) else []
        if self.output_space:
            record_output_space(batch, rows, generations)
        trajectories = [parse_trajectory(g.text, self.parse_mode) for g in generations]
        reasons, details = [""] * n, [""] * n
        for i, generation, trajectory in zip(rows, generations, trajectories):
            batch["traj_methods"][i], batch["traj_plan"][i] = trajectory.methods, trajectory.plan
            batch["traj_rewritten"][i], batch["evolve_raw"][i] = trajectory.rewritten, generation.text
            if not trajectory.final and not generation.error:
                reasons[i] = "unparsable"
                details[i] = f"no #Finally Rewritten Instruction# in: {generation.text[:RAW_IN_DETAIL]!r}"
        record_evolution(batch, rows, generations, [t.final for t in trajectories], [METHOD] * n, self.evolver,
                         self.settings, self.round_num)
        reject_with_reasons(batch, reasons, details, stage="auto_evolve")
        return batch
