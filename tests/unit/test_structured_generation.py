"""Constrained generation through the real HF backend (xgrammar): on the random tiny model, whose unconstrained
answers never parse, every constrained answer parses; on SmolLM2-135M (a few rows) the same."""

import json

import numpy as np
import pytest

from engine.backends import Sampling, Structured
from engine.backends.hf import HFBackend
from engine.config import ModelConfig
from engine.recipes import specs
from engine.stages.autoif.rules import extract_verification
from tests.conftest import seed_batch

jsonschema = pytest.importorskip("jsonschema")

CONSTRAINTS = ["Answer in capital letters.", "Use fewer than five words."]
INSTRUCTIONS = ["Name three rivers in Europe.", "Write a haiku about the sea.", "Explain photosynthesis.",
                "List two prime numbers."]
# No free-text string: xgrammar writes a string with maxLength as [^"\\\r\n]{0,n}, which lets a random model emit
# raw control characters (a tab, \x01) that strict JSON refuses (seen through vLLM on the tiny model).
SCHEMA = {"type": "object", "properties": {"colour": {"enum": ["red", "green", "deep blue"]},
                                           "bright": {"type": "boolean"},
                                           "count": {"type": "integer", "minimum": 0, "maximum": 99}},
          "required": ["colour", "bright", "count"], "additionalProperties": False}


def test_hf_backend_honours_a_json_schema_and_compiles_it_once(tiny_model):
    backend = HFBackend(tiny_model, torch_threads=2)
    structured = Structured.schema(SCHEMA)
    prompts = ["Name a colour.", "Describe the colour of the sea at night, in detail, please."]
    for sampling in (Sampling(1.0, 0.95, 64), Sampling(max_new_tokens=64)):
        for generation in backend.generate(prompts, sampling, seeds=[3, 4], structured=structured):
            assert generation.finish_reason == "stop", generation.text
            jsonschema.validate(json.loads(generation.text), SCHEMA)
    assert list(backend.grammars().compiled) == [structured]  # compiled once, reused by the second call
    free = backend.generate(prompts, Sampling(1.0, 0.95, 64), seeds=[3, 4])
    assert not any(_parses(g.text) for g in free)  # the constraint, not the model, made them JSON


def _parses(text: str) -> bool:
    try:
        json.loads(text)
        return True
    except json.JSONDecodeError:
        return False


def verify_and_cross_validate(cfg, max_new_tokens: int, constraints=tuple(CONSTRAINTS)) -> dict:
    cfg.autoif.structured = True
    cfg.autoif.samples_per_instruction = 2
    cfg.autoif.generate.max_new_tokens = max_new_tokens
    cfg.autoif.json_mode = "seed"  # the research code's rule: only a ```json block counts
    batch = specs.verify(cfg, 2).build(torch_threads=2)(seed_batch(list(constraints)))
    for texts in batch["verifications"]:
        texts = json.loads(texts)
        assert len(texts) == 2
        for text in texts:
            found, reason = extract_verification(text, "seed")
            assert reason == "" and found.func and len(found.cases) == 3, text
    return specs.cross_validate(cfg).build()(batch)


def test_structured_verification_on_the_tiny_model_always_parses(tiny_cfg):
    out = verify_and_cross_validate(tiny_cfg, 192)
    assert out["cv_parsed"].tolist() == out["cv_generations"].tolist() == [2, 2]


def auto_evolve(cfg, max_new_tokens: int, instructions=tuple(INSTRUCTIONS)) -> dict:
    cfg.auto_evol.structured = True
    cfg.recipe.evolve.max_new_tokens = max_new_tokens
    cfg.recipe.fidelity.auto_evol_parse = "seed"  # ignored when structured: the answer splits on its labels
    out = specs.auto_evolve(cfg, 1).build(torch_threads=2)(seed_batch(list(instructions)))
    assert "unparsable" not in out["reason"].tolist(), out["detail"]
    assert all(text.strip() for text in out["instruction"])
    assert all(raw.startswith("Step 1 #Methods List#:\n") for raw in out["evolve_raw"])
    assert np.all(out["evolve_tokens"] <= max_new_tokens)
    return out


def test_structured_auto_evolve_on_the_tiny_model_never_leaves_an_answer_unparsable(tiny_cfg):
    auto_evolve(tiny_cfg, 160)


@pytest.mark.slow
def test_smollm2_structured_answers_parse(tiny_cfg):
    tiny_cfg.model = ModelConfig(dtype="float32")  # the default: embedded SmolLM2-135M-Instruct
    out = verify_and_cross_validate(tiny_cfg, 256, CONSTRAINTS[:1])  # a few rows: SmolLM2 on 2 cores is slow
    assert out["cv_parsed"].sum() == out["cv_generations"].sum() == 2
    auto_evolve(tiny_cfg, 192, INSTRUCTIONS[:2])
