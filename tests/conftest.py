"""Shared fixtures: the tiny model config and batches built in code."""

from __future__ import annotations

import numpy as np
import pytest

from engine.config import Config, ModelConfig
from engine.read.validate import records_from_rows


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
    inputs = inputs or [""] * len(instructions)
    return records_from_rows([{"instruction": t, "input": x} for t, x in zip(instructions, inputs)], "seeds.jsonl")
