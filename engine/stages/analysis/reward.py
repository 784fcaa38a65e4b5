"""Reward of each evolution step (paper Table 14) by a sequence-classification reward model given by local path.

The scored chat is [user: the evolution meta-prompt, assistant: the evolved instruction]. The meta-prompt is
rebuilt from the row's *parent* instruction with the row's own method, fixing the research code's bug (it rebuilt
it from the evolved instruction, so prompt and response were the same text). The raw score and the response's
token count are stored; length normalisation (`analysis.reward.length_norm`) needs the dataset's mean length, so
the analysis summary applies it."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from engine.backends import load_backend
from engine.config import ModelConfig
from engine.prompts.auto_evol import BASE_INSTRUCTION
from engine.prompts.evol import evolution_prompt, method_order
from engine.rows.records import ok_mask

LENGTH_NORMS = ("none", "divide", "multiply")


def meta_prompt(method: str, parent_instruction: str) -> str | None:
    """The prompt that produced an evolved row, from its method and parent; None for a row that was not evolved
    by a known method (a seed row, or an unknown method name)."""
    if not parent_instruction:
        return None
    if method == "auto_evol":
        return BASE_INSTRUCTION + parent_instruction
    if method in method_order(True):
        return evolution_prompt(method, parent_instruction)
    return None


def adjust(scores: np.ndarray, tokens: np.ndarray, mode: str) -> np.ndarray:
    """Length-adjusted rewards over one dataset. divide: score / tokens * mean tokens (the research code's
    sequence-classification branch: penalises length); multiply: score * tokens / mean tokens (its InternLM
    branch: rewards length); none: unchanged."""
    if mode not in LENGTH_NORMS:
        raise ValueError(f"analysis.reward.length_norm={mode!r}: choose one of {', '.join(LENGTH_NORMS)}")
    scores = np.asarray(scores, dtype=np.float64)
    tokens = np.asarray(tokens, dtype=np.float64)
    valid = np.isfinite(scores) & (tokens > 0)
    if mode == "none" or not valid.any():
        return scores
    mean = tokens[valid].mean()
    out = np.full_like(scores, np.nan)
    out[valid] = scores[valid] / tokens[valid] * mean if mode == "divide" else scores[valid] * tokens[valid] / mean
    return out


@dataclass(frozen=True)
class RewardArgs:
    """What Reward uses: the reward model's local path, its token and batch limits, and the length norm (checked
    at start-up; the analysis summary applies it)."""

    path: str
    max_length: int = 4096
    batch_size: int = 4
    length_norm: str = "none"


class Reward:
    """Scores each ok evolved row with the reward model at `analysis.reward.path` (logit 0 of a one-label head)."""

    uses_model = True

    def __init__(self, args: RewardArgs, torch_threads: int | None = None):
        adjust(np.zeros(1), np.ones(1), args.length_norm)  # a wrong mode fails at start-up
        self.max_length = args.max_length
        self.batch_size = args.batch_size
        self.model = load_backend(ModelConfig(name=args.path, path=args.path), torch_threads, kind="reward")
        self.name = args.path

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        n = len(batch["id"])
        batch["reward"] = np.full(n, np.nan)
        batch["reward_tokens"] = np.zeros(n, dtype=np.int64)
        todo, sequences = [], []
        for i in np.flatnonzero(ok_mask(batch)):
            prompt = meta_prompt(str(batch["method"][i]), str(batch["parent_instruction"][i]))
            if prompt is None:
                continue
            ids, tokens = self.model.chat_ids(prompt, str(batch["instruction"][i]), self.max_length)
            todo.append(i)
            sequences.append(ids)
            batch["reward_tokens"][i] = tokens
        for i, value in zip(todo, self.model.score(sequences, self.batch_size) if sequences else []):
            batch["reward"][i] = value
        return batch
