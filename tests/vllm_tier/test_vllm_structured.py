"""Structured outputs through vLLM for real (its xgrammar backend, per request, through the feeder), on the
random tiny_wide model (vLLM's CPU attention has no kernel for tiny's head size 16): a JSON schema, and the AutoIF
and Auto Evol-Instruct grammars the HF backend uses; every constrained answer parses, and unconstrained requests
beside them stay free text."""

import json

import pytest

from engine.backends import Sampling, Structured
from engine.config import ModelConfig
from engine.prompts.auto_evol import four_step_structured, parse_structured, parse_trajectory
from engine.prompts.autoif import verification_prompt, verification_structured
from engine.stages.autoif.rules import extract_verification

pytestmark = pytest.mark.vllm
jsonschema = pytest.importorskip("jsonschema")

# No free-text string: xgrammar writes a string with maxLength as [^"\\\r\n]{0,n}, which lets a random model emit
# raw control characters (a tab, \x01) that strict JSON refuses (seen through vLLM on the tiny model).
SCHEMA = {"type": "object", "properties": {"colour": {"enum": ["red", "green", "deep blue"]},
                                           "bright": {"type": "boolean"},
                                           "count": {"type": "integer", "minimum": 0, "maximum": 99}},
          "required": ["colour", "bright", "count"], "additionalProperties": False}


@pytest.fixture(scope="module")
def engine():
    from engine.backends.vllm import VLLMBackend

    backend = VLLMBackend(ModelConfig(name="tiny_wide", embedded="tiny_wide", backend="vllm", dtype="float32",
                                      max_model_len=2048))
    yield backend
    backend.close()


def test_a_json_schema_constrains_every_sampled_answer(engine):
    structured = Structured.schema(SCHEMA)
    out = engine.generate(["Name a colour."] * 4, Sampling(1.0, 0.95, 64), seeds=[1, 2, 3, 4], structured=structured)
    for generation in out:
        assert generation.finish_reason == "stop", generation.text
        jsonschema.validate(json.loads(generation.text), SCHEMA)
    assert len({g.text for g in out}) > 1  # sampled, per-row seeds


def test_autoif_verification_answers_always_parse(engine):
    prompts = [verification_prompt(c) for c in ("Answer in capital letters.", "Use fewer than five words.")] * 2
    out = engine.generate(prompts, Sampling(0.7, 0.95, 192), seeds=[5, 6, 7, 8],
                          structured=verification_structured(192))
    for generation in out:
        assert generation.generated_tokens <= 192
        found, reason = extract_verification(generation.text, "seed")
        assert reason == "" and found.func and len(found.cases) == 3, generation.text


def test_four_step_answers_always_parse_and_free_requests_stay_free(engine):
    prompts = ["Rewrite: name three rivers.", "Rewrite: explain photosynthesis."] * 2
    out = engine.generate(prompts, Sampling(0.7, 0.95, 160), seeds=[9, 10, 11, 12],
                          structured=four_step_structured(160))
    for generation in out:
        assert parse_structured(generation.text).final, generation.text
        assert parse_trajectory(generation.text, "seed").final == parse_structured(generation.text).final
    free = engine.generate(prompts, Sampling(0.7, 0.95, 160), seeds=[9, 10, 11, 12])
    assert not any(parse_structured(g.text).final for g in free)
