"""Shared fixtures: the tiny model config and batches built in code."""

from __future__ import annotations

import numpy as np
import pytest

from engine.config import Config, ModelConfig
from engine.records import seed_row_id


@pytest.fixture(scope="session")
def tiny_model() -> ModelConfig:
    return ModelConfig(name="tiny", embedded="tiny", dtype="float32")


@pytest.fixture()
def tiny_cfg(tiny_model, tmp_path) -> Config:
    cfg = Config(model=tiny_model, scorer=tiny_model)
    cfg.run.output_dir = str(tmp_path / "out")
    cfg.recipe.evolve.max_new_tokens = 12
    cfg.recipe.respond.max_new_tokens = 12
    return cfg


def seed_batch(instructions: list[str], inputs: list[str] | None = None) -> dict[str, np.ndarray]:
    """A round-0 batch as the reader would produce it."""
    n = len(instructions)
    inputs = inputs or [""] * n
    ids = [seed_row_id(t, x, i) for i, (t, x) in enumerate(zip(instructions, inputs))]

    def obj(values):
        return np.array(values, dtype=object)

    return {
        "instruction": obj(instructions),
        "input": obj(inputs),
        "output": obj([""] * n),
        "id": obj(ids),
        "seed_id": obj(ids),
        "parent_id": obj([""] * n),
        "seed_index": np.arange(n, dtype=np.int64),
        "round": np.zeros(n, dtype=np.int64),
        "method": obj([""] * n),
        "evolver": obj([""] * n),
        "parent_instruction": obj([""] * n),
        "source_file": obj(["seeds.jsonl"] * n),
        "source_line": np.arange(1, n + 1, dtype=np.int64),
        "status": obj(["ok"] * n),
        "reason": obj([""] * n),
        "detail": obj([""] * n),
        "rejected_at": obj([""] * n),
    }
