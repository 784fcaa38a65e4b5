"""The Auto Evol-Instruct optimizer loop (after Zeng et al. 2024), which the paper under study left out.

Each step: evolve a mini-batch with the current evolving method; the model analyses the evolution trajectories
for failures (evol-trajectory analysis) and proposes `candidates` improved methods (method optimization); every
valid candidate and the current method are run on a held-out dev batch, and the one with the lowest
evolution-failure rate (the elimination filter's verdict) becomes the current method. Everything is logged so
the choice can be audited. Runs in one Ray actor before the rounds (the runner starts it)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Optional

from engine.backends import Sampling, load_backend
from engine.config import ModelConfig, SamplingConfig
from engine.prompts.auto_evol import (
    BASE_INSTRUCTION,
    analysis_prompt,
    extract_method,
    optimization_prompt,
    parse_trajectory,
)
from engine.rows.rng import row_seeds
from engine.stages.generation.eliminate import elimination_reason


def choose(rates: list[float]) -> int:
    """Index of the method to keep: the lowest failure rate; on a tie the earliest (index 0 is the current
    method, so a candidate must do strictly better to replace it)."""
    return min(range(len(rates)), key=lambda k: (rates[k], k))


@dataclass
class Step:
    """One optimization step, as saved to optimizer/steps.jsonl."""

    step: int
    train_failures: int
    feedback: str
    methods: list[str] = field(default_factory=list)  # [current] + valid candidates
    invalid_candidates: int = 0
    dev_failure_rates: list[float] = field(default_factory=list)
    chosen: int = 0


@dataclass(frozen=True)
class OptimizerArgs:
    """What the optimizer loop uses: the evolver and its sampling, the optimizer model (None: the evolver) and its
    sampling, the loop's size, the parse mode and the run seed."""

    model: ModelConfig
    evolve: SamplingConfig
    optimizer: SamplingConfig
    optimizer_model: Optional[ModelConfig] = None
    steps: int = 2
    candidates: int = 3
    parse_mode: str = "robust"
    run_seed: int = 0


class MethodOptimizer:
    """Holds the evolver and the optimizer model (`auto_evol.optimizer_model`, by default the evolver itself, as
    Zeng et al. also allow) and runs the loop."""

    uses_model = True

    def __init__(self, args: OptimizerArgs, torch_threads: int | None = None):
        self.args = args
        self.parse_mode = args.parse_mode
        self.model = load_backend(args.model, torch_threads=torch_threads)
        chosen = args.optimizer_model
        self.optimizer = load_backend(chosen, torch_threads=torch_threads) if chosen else self.model

    def evolve(self, method: str, instructions: list[str], tag: str) -> list[tuple[str, str]]:
        """(final instruction or "", failure reason or "") per instruction, evolved with `method`."""
        s = self.args.evolve
        seeds = row_seeds(self.args.run_seed, f"optimize:{tag}", 0, [str(i) for i in range(len(instructions))])
        answers = self.model.generate([method + text for text in instructions],
                                      Sampling(s.temperature, s.top_p, s.max_new_tokens), seeds)
        out = []
        for text, answer in zip(instructions, answers):
            final = parse_trajectory(answer.text, self.parse_mode).final
            reason = "unparsable" if not final else elimination_reason(final, text)[0]
            out.append((final, reason or ("generation_error" if answer.error else "")))
        return out

    def failure_rate(self, method: str, instructions: list[str], tag: str) -> float:
        results = self.evolve(method, instructions, tag)
        return sum(bool(reason) for _, reason in results) / max(1, len(results))

    def run(self, train: list[str], dev: list[str]) -> tuple[str, list[dict]]:
        """The chosen method and the log of every step."""
        opt = self.args
        method, log = BASE_INSTRUCTION, []
        for step in range(1, opt.steps + 1):
            evolved = self.evolve(method, train, f"train{step}")
            cases = [(before, after or "(no rewritten instruction)") for before, (after, _) in zip(train, evolved)]
            sampling = Sampling(opt.optimizer.temperature, opt.optimizer.top_p, opt.optimizer.max_new_tokens)
            feedback = self.optimizer.generate([analysis_prompt(cases)], Sampling(max_new_tokens=opt.optimizer.max_new_tokens),
                                           [0])[0].text.strip()
            prompts = [optimization_prompt(method, feedback)] * opt.candidates
            seeds = row_seeds(opt.run_seed, "optimize:candidates", step, [str(k) for k in range(opt.candidates)])
            proposed = [extract_method(g.text) for g in self.optimizer.generate(prompts, sampling, seeds)]
            valid = [m for m in dict.fromkeys(proposed) if m and m != method]
            record = Step(step, sum(bool(r) for _, r in evolved), feedback, [method] + valid,
                          invalid_candidates=len(proposed) - len([m for m in proposed if m]))
            # The same dev rows with the same row seeds for every method: only the method differs.
            record.dev_failure_rates = [self.failure_rate(m, dev, f"dev{step}") for m in record.methods]
            record.chosen = choose(record.dev_failure_rates)
            method = record.methods[record.chosen]
            log.append(asdict(record))
        return method, log
