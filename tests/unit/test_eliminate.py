"""The elimination filter: each failure kind rejected with its reason, good evolutions kept."""

import numpy as np
import pytest

from engine.stages.generation.eliminate import Eliminate, elimination_reason


@pytest.mark.parametrize(
    "evolved, parent, reason",
    [
        ("", "Name a fruit.", "empty"),
        ("   \n", "Name a fruit.", "empty"),
        ("name a fruit", "Name a fruit.", "copy_of_parent"),
        ("#Rewritten Prompt#: Name a tropical fruit.", "Name a fruit.", "template_leak"),
        ("Here is the rewritten prompt. #The Given Prompt# asks for a fruit.", "Name a fruit.", "template_leak"),
        ("I'm sorry, but I can't help with that.", "Name a fruit.", "refusal"),
        ("As an AI language model, I cannot rewrite prompts.", "Name a fruit.", "refusal"),
        ("Name a tropical fruit that grows in Brazil and describe its taste.", "Name a fruit.", ""),
        ("I want you to act as a Prompt Rewriter. Name a fruit from Peru.", "Name a fruit.", "prompt_echo"),
        ("List fruits. " + "and more fruits " * 40, "Name a fruit.", "repetition"),
        ("Write a polite email saying sorry for a late delivery.", "Write an email.", ""),
    ],
)
def test_elimination_reasons(evolved, parent, reason):
    assert elimination_reason(evolved, parent)[0] == reason


def test_stage_rejects_in_place_and_keeps_rows():
    batch = {
        "id": np.array(["a", "b", "c"], dtype=object),
        "instruction": np.array(["", "Name a fruit grown in Peru.", "x"], dtype=object),
        "parent_instruction": np.array(["Name a fruit.", "Name a fruit.", "y"], dtype=object),
        "status": np.array(["ok", "ok", "rejected"], dtype=object),
        "reason": np.array(["", "", "missing_field"], dtype=object),
        "detail": np.array(["", "", "f.jsonl:3: missing field 'instruction'"], dtype=object),
        "rejected_at": np.array(["", "", "read"], dtype=object),
    }
    out = Eliminate()(batch)
    assert list(out["status"]) == ["rejected", "ok", "rejected"]
    assert list(out["reason"]) == ["empty", "", "missing_field"]
    assert list(out["rejected_at"]) == ["eliminate", "", "read"]


@pytest.mark.parametrize(
    "response, reason",
    [
        ("", "empty_response"),
        (" \n\t", "empty_response"),
        ("Name a fruit!", "response_echo"),
        ("Given the following instruction, please provide a comprehensive and accurate response.", "response_echo"),
        ("Mango. " + "Mango mango mango. " * 30, "response_repetition"),
        ("A mango: sweet, orange-fleshed, grown across the tropics from India to Brazil. " * 2, ""),
        ("I'm sorry, I cannot name fruit.", ""),  # a response may decline; only degenerate text is dropped
    ],
)
def test_degenerate_responses_are_named(response, reason):
    from engine.stages.generation.eliminate import response_reason

    assert response_reason(response, "Name a fruit.")[0] == reason


def test_real_prose_is_not_mistaken_for_a_loop():
    from engine.stages.generation.eliminate import is_runaway_repetition

    prose = (
        "Rivers carve valleys over thousands of years, carrying sediment from mountains to the sea. Along the way "
        "they feed wetlands, shape deltas and supply water to cities, farms and forests that depend on them."
    )
    assert not is_runaway_repetition(prose)
    assert is_runaway_repetition("the river " * 30)
