"""Evolve: rewrite each instruction with the method its seed position and round select."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from engine.backends import Sampling, load_backend
from engine.config import ModelConfig, SamplingConfig
from engine.measure.output_space import record_output_space
from engine.prompts.evol import evolution_prompt, method_order, pick_method
from engine.rows.records import default_columns, evolved_row_id, ok_mask, reject
from engine.rows.rng import row_seeds

# Columns this stage writes, with the value a row it does not touch gets.
EVOLVE_COLUMNS = {
    "evolve_temperature": 0.0,
    "evolve_top_p": 0.0,
    "evolve_max_new_tokens": 0,
    "evolve_prompt_tokens": 0,
    "evolve_tokens": 0,
    "evolve_finish": "",
}


@dataclass(frozen=True)
class EvolveArgs:
    """What Evolve uses: the evolver, the round, its sampling and the prompt switches."""

    model: ModelConfig
    round_num: int
    sampling: SamplingConfig
    breadth: bool = True  # K=5 methods (4 depth + breadth), else the 4 depth methods
    stray_quote: bool = False  # the research code's stray quote in the breadth prompt
    run_seed: int = 0
    output_space: bool = False  # record the top-1 / entropy histograms


class Evolve:
    """Turns each ok row of round r-1 into its round-r child: new instruction, lineage, sampling settings."""

    uses_model = True

    def __init__(self, args: EvolveArgs, torch_threads: int | None = None):
        self.round_num = args.round_num
        self.methods = method_order(args.breadth)
        self.stray_quote = args.stray_quote
        self.settings = args.sampling
        self.run_seed = args.run_seed
        self.evolver = args.model.name
        self.output_space = args.output_space
        self.model = load_backend(args.model, torch_threads=torch_threads)

    def pick(self, batch: dict[str, np.ndarray]) -> list[str]:
        """Methods for the batch's rows: methods[(seed_index + round) % K]."""
        return [pick_method(self.methods, int(i), self.round_num) for i in batch["seed_index"]]

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        n = len(batch["id"])
        ok = ok_mask(batch)
        batch.update(default_columns(n, EVOLVE_COLUMNS))
        methods = self.pick(batch)
        rows = np.flatnonzero(ok)
        prompts = [evolution_prompt(methods[i], str(batch["instruction"][i]), self.stray_quote) for i in rows]
        sampling = Sampling(
            temperature=self.settings.temperature,
            top_p=self.settings.top_p,
            max_new_tokens=self.settings.max_new_tokens,
            output_stats=self.output_space,
        )
        seeds = row_seeds(self.run_seed, "evolve", self.round_num, [batch["id"][i] for i in rows])
        generations = self.model.generate(prompts, sampling, seeds) if len(rows) else []
        texts = [generation.text.strip() for generation in generations]
        if self.output_space:
            record_output_space(batch, rows, generations)
        return record_evolution(batch, rows, generations, texts, methods, self.evolver, self.settings, self.round_num)


def record_evolution(batch: dict[str, np.ndarray], rows, generations, texts: list[str], methods: list[str],
                     evolver: str, settings, round_num: int) -> dict[str, np.ndarray]:
    """Turn each generated row into its round-r child in place: new id and lineage, the evolved instruction
    (`texts`, aligned with `rows`), the sampling settings and token counts; failed generations are rejected.
    `batch` must already hold EVOLVE_COLUMNS."""
    n = len(batch["id"])
    ok = ok_mask(batch)
    parent_ids = batch["id"].copy()
    parent_instructions = batch["instruction"].copy()
    new = {k: np.asarray(batch[k], dtype=object).copy() for k in ("id", "parent_id", "parent_instruction",
                                                                   "instruction", "output", "method", "evolver")}
    failed = np.zeros(n, dtype=bool)
    errors = [""] * n
    for i, generation, text in zip(rows, generations, texts):
        new["id"][i] = evolved_row_id(parent_ids[i], round_num)
        new["parent_id"][i] = parent_ids[i]
        new["parent_instruction"][i] = parent_instructions[i]
        new["instruction"][i] = text
        new["output"][i] = ""
        new["method"][i] = methods[i]
        new["evolver"][i] = evolver
        batch["evolve_temperature"][i] = settings.temperature
        batch["evolve_top_p"][i] = settings.top_p
        batch["evolve_max_new_tokens"][i] = settings.max_new_tokens
        batch["evolve_prompt_tokens"][i] = generation.prompt_tokens
        batch["evolve_tokens"][i] = generation.generated_tokens
        batch["evolve_finish"][i] = generation.finish_reason
        if generation.error:
            failed[i], errors[i] = True, generation.error
    batch.update(new)
    batch["round"] = np.where(ok, round_num, np.asarray(batch["round"], dtype=np.int64)).astype(np.int64)
    reject(batch, failed, "generation_error", errors, stage="evolve")
    return batch
