"""The embedded default model: real SmolLM2-135M-Instruct, converted once into the cache, answers correctly."""

import time

import pytest

from engine.backends import Sampling
from engine.backends.embedded import resolve_model_path
from engine.backends.hf import HFBackend
from engine.config import ModelConfig

pytestmark = pytest.mark.slow


def test_smollm2_answers_paris_and_reloads_from_cache():
    model = ModelConfig()  # the default: smollm2-135m, embedded
    path = resolve_model_path(model)  # converts on first use (~45 s), then cached
    assert (path / "model.safetensors").exists() and (path / "tokenizer.json").exists()

    backend = HFBackend(model, torch_threads=2)
    answer = backend.generate(["What is the capital of France?"], Sampling(max_new_tokens=24))[0]
    assert "Paris" in answer.text
    assert answer.finish_reason == "stop"

    started = time.perf_counter()
    again = HFBackend(model, torch_threads=2)
    assert time.perf_counter() - started < 5.0
    assert again.path == path
    assert again.model.num_parameters() == backend.model.num_parameters() > 130_000_000
