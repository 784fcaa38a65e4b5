"""Trajectory analysis for Auto Evol-Instruct: each Step-1 method line summarised into a keyword phrase with the
seed's extraction prompt (paper Fig. 18), from the trajectory kept by AutoEvolve (no second evolution pass)."""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np

from engine.backends import Sampling, load_backend
from engine.config import ModelConfig
from engine.prompts.auto_evol import keyword_prompt
from engine.rows.records import default_columns, ok_mask
from engine.stages.generation.eliminate import normalise


def method_lines(methods: str) -> list[str]:
    """The method lines of a Step-1 list: the seed skips lines holding "Step 1" or "Method List"; empty lines too."""
    return [line.strip() for line in methods.split("\n")
            if line.strip() and "Step 1" not in line and "Method List" not in line]


def count_keywords(keyword_lists) -> dict[str, int]:
    """Keywords in all, distinct exactly, and distinct after normalisation (case, punctuation, spacing)."""
    exact, norm, total = set(), set(), 0
    for keywords in keyword_lists:
        for keyword in keywords:
            total += 1
            exact.add(keyword.strip())
            norm.add(normalise(keyword))
    norm.discard("")
    return {"keywords": total, "distinct_exact": len(exact), "distinct_normalised": len(norm)}


@dataclass(frozen=True)
class KeywordsArgs:
    """What TrajectoryKeywords uses: the model that writes the phrases and their length."""

    model: ModelConfig
    max_new_tokens: int = 32


class TrajectoryKeywords:
    """Greedy keyword phrase per method line of each ok row's `traj_methods`, as a JSON list in `traj_keywords`."""

    uses_model = True

    def __init__(self, args: KeywordsArgs, torch_threads: int | None = None):
        self.max_new_tokens = args.max_new_tokens
        self.model = load_backend(args.model, torch_threads=torch_threads)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        batch.update(default_columns(len(batch["id"]), {"traj_keywords": "[]"}))
        owners, prompts = [], []
        for i in np.flatnonzero(ok_mask(batch)):
            for line in method_lines(str(batch["traj_methods"][i])):
                owners.append(i)
                prompts.append(keyword_prompt(line))
        generations = self.model.generate(prompts, Sampling(max_new_tokens=self.max_new_tokens)) if prompts else []
        found: dict[int, list[str]] = {}
        for i, generation in zip(owners, generations):
            if generation.text.strip() and not generation.error:
                found.setdefault(i, []).append(generation.text.strip().split("\n")[0].strip())
        for i, keywords in found.items():
            batch["traj_keywords"][i] = json.dumps(keywords, ensure_ascii=False)
        return batch
