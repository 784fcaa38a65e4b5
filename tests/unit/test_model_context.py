"""The room a prompt leaves in a model's context: each row's new-token budget (vLLM's rule, on every backend), the
notice that says so once per engine, and the embedded models' configs against what the models were built with."""

import json
import logging

import pytest
from transformers import AutoTokenizer

from engine.backends.base import RoomNotices, model_context, new_token_budgets
from engine.backends.chat import chat_prompt_ids
from engine.backends.embedded import resolve_model_path
from engine.config import compose
from engine.prompts.autoif import augment_prompt, concat_prompt, verification_prompt
from engine.stages.autoif.augment import load_queries, seed_constraints


def test_budgets_are_capped_to_the_room_and_only_a_full_context_is_an_error():
    encoded = [[1] * 10, [1] * 95, [1] * 99, [1] * 100, [1] * 130]
    results, budgets = new_token_budgets(encoded, max_model_len=100, max_new_tokens=20)
    assert budgets == [20, 5, 1, 0, 0]
    assert results[:3] == [None, None, None]
    for row, length in ((3, 100), (4, 130)):
        assert results[row].finish_reason == "error" and results[row].generated_tokens == 0
        assert results[row].error == f"prompt of {length} tokens leaves no room for a new token in max_model_len=100"


def test_room_is_said_once_per_engine_and_budget_not_once_per_row(caplog):
    notices = RoomNotices("tiny", max_model_len=100)
    caplog.set_level(logging.WARNING, logger="engine.backends")
    for _ in range(3):  # three stage batches of the same stage
        encoded = [[1] * 10, [1] * 90, [1] * 95]
        notices.check(encoded, new_token_budgets(encoded, 100, 20)[1], 20)
    capped = [r.getMessage() for r in caplog.records]
    assert len(capped) == 1
    assert "max_new_tokens=20 exceed max_model_len=100 (prompts of 90-95 tokens)" in capped[0]
    assert "5-10 new tokens" in capped[0]

    encoded = [[1] * 90, [1] * 120]  # another stage's budget, and a prompt that fills the context
    notices.check(encoded, new_token_budgets(encoded, 100, 50)[1], 50)
    notices.check(encoded, new_token_budgets(encoded, 100, 50)[1], 50)
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 3
    assert "max_new_tokens=50" in messages[1] and "a prompt of 120 tokens leaves no room" in messages[2]


def test_notices_stay_quiet_when_every_prompt_has_room(caplog):
    caplog.set_level(logging.WARNING, logger="engine.backends")
    encoded = [[1] * 10, [1] * 80]
    RoomNotices("tiny", 100).check(encoded, new_token_budgets(encoded, 100, 20)[1], 20)
    assert caplog.records == []


def test_a_context_beyond_the_models_positions_falls_back_to_them_and_says_so(caplog):
    caplog.set_level(logging.WARNING, logger="engine.backends")
    assert model_context("tiny", 8192, 8192) == 8192
    assert model_context("local", 4096, None) == 4096  # a model that does not say: the config's value
    assert caplog.records == []
    assert model_context("tiny", 100_000, 8192) == 8192
    assert "max_model_len=100000 exceeds the 8192 positions" in caplog.text


EMBEDDED = [("model", "tiny"), ("model", "tiny_wide"), ("model", "smollm2-135m"), ("scorer", "tiny"),
            ("scorer", "smollm2-135m")]


@pytest.mark.parametrize("group, name", EMBEDDED)
def test_embedded_configs_give_the_context_the_model_was_built_with(group, name):
    model = getattr(compose([f"{group}={name}"]), group)
    built = json.loads((resolve_model_path(model) / "config.json").read_text())
    assert model.max_model_len == built["max_position_embeddings"] == 8192


@pytest.mark.parametrize("name", ["tiny", "smollm2-135m"])
def test_autoif_prompts_leave_room_for_the_shipped_budgets(name):
    """Issue #25: every AutoIF prompt plus its stage's default max_new_tokens fits the embedded model's context, so
    no row is rejected or cut for room (the augmentation prompt alone is ~1200 tiny tokens, ~660 SmolLM2 ones)."""
    cfg = compose(["recipe=autoif", f"model={name}"])
    tokenizer = AutoTokenizer.from_pretrained(resolve_model_path(cfg.model))
    tokens = lambda prompt: len(chat_prompt_ids(tokenizer, prompt, False))  # noqa: E731
    seeds, queries = seed_constraints(cfg.autoif), load_queries(cfg.autoif)
    longest_seed, longest_query = max(seeds, key=len), max(queries, key=len)
    steps = {
        "augment": (tokens(augment_prompt(seeds)), cfg.autoif.generate.max_new_tokens),
        "verify": (tokens(verification_prompt(longest_seed)), cfg.autoif.generate.max_new_tokens),
        "answer": (tokens(concat_prompt(longest_seed, longest_query)), cfg.recipe.respond.max_new_tokens),
    }
    assert steps["augment"][0] > 600 and steps["augment"][1] == 2048  # the case that failed at max_model_len=2048
    for step, (prompt, budget) in steps.items():
        assert prompt + budget <= cfg.model.max_model_len, f"{step}: {prompt} + {budget} tokens"
