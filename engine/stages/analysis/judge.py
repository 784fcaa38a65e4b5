"""LLM-judge stages of the analysis suite: difficulty labels + 0-100 complexity (one judge model), and pairwise
comparison of two answers with position swap. The judge is the run's `model`; answers are kept raw beside the
parse."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from engine.backends import Sampling, load_backend
from engine.config import JudgeConfig, ModelConfig, PairwiseConfig
from engine.prompts.judges import (
    combine_orders,
    judge_prompt,
    pairwise_prompt,
    parse_difficulty,
    parse_score,
    parse_verdict,
)
from engine.rows.records import ok_mask
from engine.rows.rng import row_seeds

RETRY_SAMPLING = (0.7, 0.95)  # an unparsable greedy answer is asked again with sampling (a new answer)


def ask(model, prompts: list[str], parse, max_new_tokens: int, retries: int, seed_ids: list[str], step: str,
        run_seed: int) -> tuple[list, list[str], list[int]]:
    """Greedy answers parsed with `parse`; unparsable ones asked again, sampled and seeded per row, up to
    `retries` times. Returns (parsed or None, the raw answer parsed last, attempts)."""
    values: list = [None] * len(prompts)
    raws = [""] * len(prompts)
    attempts = [0] * len(prompts)
    todo = list(range(len(prompts)))
    for attempt in range(retries + 1):
        if not todo:
            break
        if attempt == 0:
            sampling, seeds = Sampling(max_new_tokens=max_new_tokens), None
        else:
            sampling = Sampling(*RETRY_SAMPLING, max_new_tokens=max_new_tokens)
            seeds = row_seeds(run_seed, step, attempt, [seed_ids[i] for i in todo])
        answers = model.generate([prompts[i] for i in todo], sampling, seeds)
        for i, answer in zip(todo, answers):
            values[i], raws[i], attempts[i] = parse(answer.text.strip()), answer.text, attempt + 1
        todo = [i for i in todo if values[i] is None]
    return values, raws, attempts


@dataclass(frozen=True)
class JudgeArgs:
    """What Judge uses: the judge model, the difficulty and complexity settings, and the run seed (retries)."""

    model: ModelConfig
    difficulty: JudgeConfig
    complexity: JudgeConfig
    run_seed: int = 0


class Judge:
    """Labels each ok row's instruction with a difficulty level (5 labels) and a 0-100 complexity score.

    Only the instruction is judged, as in the research code (the input field is ignored). Columns: difficulty
    ("" when unparsable or off), complexity (NaN likewise), the raw answers and attempts."""

    uses_model = True

    def __init__(self, args: JudgeArgs, torch_threads: int | None = None):
        self.difficulty = args.difficulty
        self.complexity = args.complexity
        self.run_seed = args.run_seed
        for kind, judge in (("difficulty", self.difficulty), ("complexity", self.complexity)):
            judge_prompt(kind, judge.prompt, "")  # a wrong variant fails at start-up, not per batch
            if judge.parse not in ("seed", "robust"):
                raise ValueError(f"analysis.{kind}.parse={judge.parse!r}: choose seed or robust")
        self.model = load_backend(args.model, torch_threads=torch_threads)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        n = len(batch["id"])
        rows = np.flatnonzero(ok_mask(batch))
        ids = [str(batch["id"][i]) for i in rows]
        texts = [str(batch["instruction"][i]) for i in rows]
        batch["difficulty"] = np.full(n, "", dtype=object)
        batch["difficulty_raw"] = np.full(n, "", dtype=object)
        batch["difficulty_attempts"] = np.zeros(n, dtype=np.int64)
        batch["complexity"] = np.full(n, np.nan)
        batch["complexity_raw"] = np.full(n, "", dtype=object)
        batch["complexity_attempts"] = np.zeros(n, dtype=np.int64)
        for kind, judge, parser in (("difficulty", self.difficulty, parse_difficulty),
                                    ("complexity", self.complexity, parse_score)):
            if not judge.enabled or not len(rows):
                continue
            prompts = [judge_prompt(kind, judge.prompt, text) for text in texts]
            values, raws, attempts = ask(self.model, prompts, lambda text: parser(text, judge.parse),
                                         judge.max_new_tokens, judge.retries, ids, f"judge_{kind}", self.run_seed)
            for i, value, raw, tries in zip(rows, values, raws, attempts):
                if value is not None:
                    batch[kind][i] = value
                batch[f"{kind}_raw"][i], batch[f"{kind}_attempts"][i] = raw, tries
        return batch


@dataclass(frozen=True)
class PairwiseArgs:
    """What PairwiseJudge uses: the judge model and the pairwise settings (tie policy, parse, answer length)."""

    model: ModelConfig
    pairwise: PairwiseConfig


class PairwiseJudge:
    """Judges answer_a against answer_b for each ok row's instruction in both orders (A first, then B first) and
    combines the two verdicts into win / tie / lose for A under the configured tie policy."""

    uses_model = True

    def __init__(self, args: PairwiseArgs, torch_threads: int | None = None):
        self.settings = args.pairwise
        combine_orders("1", "2", self.settings.tie_policy)  # a wrong policy fails at start-up
        self.model = load_backend(args.model, torch_threads=torch_threads)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        n = len(batch["id"])
        rows = np.flatnonzero(ok_mask(batch))
        for name in ("verdict_ab", "verdict_ba", "judge_raw_ab", "judge_raw_ba", "outcome"):
            batch[name] = np.full(n, "", dtype=object)
        if not len(rows):
            return batch
        q = [str(batch["instruction"][i]) for i in rows]
        a = [str(batch["answer_a"][i]) for i in rows]
        b = [str(batch["answer_b"][i]) for i in rows]
        sampling = Sampling(max_new_tokens=self.settings.max_new_tokens)  # greedy, as judge.py
        prompts = [pairwise_prompt(*t) for t in zip(q, a, b)] + [pairwise_prompt(*t) for t in zip(q, b, a)]
        answers = self.model.generate(prompts, sampling)
        mode, policy = self.settings.parse, self.settings.tie_policy
        for k, i in enumerate(rows):
            ab, ba = answers[k].text, answers[len(rows) + k].text
            batch["judge_raw_ab"][i], batch["judge_raw_ba"][i] = ab, ba
            batch["verdict_ab"][i], batch["verdict_ba"][i] = parse_verdict(ab, mode), parse_verdict(ba, mode)
            batch["outcome"][i] = combine_orders(batch["verdict_ab"][i], batch["verdict_ba"][i], policy)
        return batch
