"""Respond: write the answer to each surviving instruction with the seed's response prompt (greedy)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from engine.backends import Sampling, load_backend
from engine.config import ModelConfig, SamplingConfig
from engine.prompts.autoif import concat_prompt
from engine.prompts.response import clean_response, response_prompt
from engine.rows.records import default_columns, has_output, ok_mask, reject_with_reasons
from engine.rows.rng import row_seeds
from engine.stages.generation.eliminate import response_reason

# Columns this stage writes, with the value a row it does not touch gets.
RESPOND_COLUMNS = {
    "responder": "",
    "respond_temperature": 0.0,
    "respond_max_new_tokens": 0,
    "respond_prompt_tokens": 0,
    "response_tokens": 0,
    "respond_finish": "",
}


@dataclass(frozen=True)
class RespondArgs:
    """What Respond uses: the responder, the round, its sampling and which prompt (alpaca | autoif)."""

    model: ModelConfig
    round_num: int
    sampling: SamplingConfig
    prompt: str = "alpaca"
    run_seed: int = 0
    only_missing: bool = False  # recipe=curate, curate.respond=missing: rows that already have an output keep it


class Respond:
    """Fills `output` for ok rows; a failed generation or a degenerate answer (empty, echo, loop) rejects the row."""

    uses_model = True

    def __init__(self, args: RespondArgs, torch_threads: int | None = None):
        self.round_num = args.round_num
        # alpaca: the seed's response prompt; autoif: answer `input` (a user query) under `instruction` (a constraint)
        self.prompt = {"alpaca": response_prompt, "autoif": lambda ins, query: concat_prompt(ins, query)}[args.prompt]
        self.settings = args.sampling
        self.run_seed = args.run_seed
        self.only_missing = args.only_missing
        self.responder = args.model.name
        self.model = load_backend(args.model, torch_threads=torch_threads)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        ok = ok_mask(batch)
        if self.only_missing:
            ok &= ~has_output(batch)
        n = len(ok)
        rows = np.flatnonzero(ok)
        prompts = [self.prompt(str(batch["instruction"][i]), str(batch["input"][i])) for i in rows]
        sampling = Sampling(
            temperature=self.settings.temperature,
            top_p=self.settings.top_p,
            max_new_tokens=self.settings.max_new_tokens,
        )
        seeds = row_seeds(self.run_seed, "respond", self.round_num, [batch["id"][i] for i in rows])
        generations = self.model.generate(prompts, sampling, seeds) if len(rows) else []
        output = np.asarray(batch["output"], dtype=object).copy()
        added = default_columns(n, RESPOND_COLUMNS)
        reasons, details = [""] * n, [""] * n
        for i, generation in zip(rows, generations):
            output[i] = clean_response(generation.text)
            added["responder"][i] = self.responder
            added["respond_temperature"][i] = self.settings.temperature
            added["respond_max_new_tokens"][i] = self.settings.max_new_tokens
            added["respond_prompt_tokens"][i] = generation.prompt_tokens
            added["response_tokens"][i] = generation.generated_tokens
            added["respond_finish"][i] = generation.finish_reason
            if generation.error:
                reasons[i], details[i] = "generation_error", generation.error
            else:
                reasons[i], details[i] = response_reason(output[i], str(batch["instruction"][i]))
        batch.update(output=output, **added)
        reject_with_reasons(batch, reasons, details, stage="respond")
        return batch
