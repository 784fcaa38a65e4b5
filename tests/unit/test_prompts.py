"""The evolution and response templates, pinned byte for byte to the paper's texts, and the rotation."""

import pytest

from engine.prompts.evol import (
    BREADTH,
    evolution_prompt,
    method_order,
    pick_method,
)
from engine.prompts.response import clean_response, response_prompt

INSTRUCTION = "Give three tips for staying healthy."

EXPECTED_CONSTRAINTS = (
    "I want you to act as a Prompt Rewriter.\n"
    "Your objective is to rewrite a given prompt into a more complex version to make those famous AI systems "
    "(e.g., ChatGPT and GPT-4) a bit harder to handle.\n"
    "But the rewritten prompt must be reasonable and must be understood and responded to by humans.\n"
    "You SHOULD complicate the given prompt using the following method:\n"
    "Please add one more constraint/requirement into #The Given Prompt#\n"
    "You should try your best not to make the #Rewritten Prompt# become verbose, #Rewritten Prompt# can only add "
    "10 to 20 words into #The Given Prompt#.\n"
    "You MUST only generate the new prompt without #The Given Prompt# and #Rewritten Prompt#.\n"
    "#The Given Prompt#: \nGive three tips for staying healthy. \n#Rewritten Prompt#:\n"
)

DEPTH_METHOD_TEXT = {
    "constraints": "Please add one more constraint/requirement into #The Given Prompt#",
    "deepen": "If #The Given Prompt# contains inquiries about certain issues, the depth and breadth of the inquiry "
    "can be increased.",
    "concretizing": "Please replace general concepts with more specific concepts.",
    "reasoning": "If #The Given Prompt# can be solved with just a few simple thinking processes, you can rewrite it "
    "to explicitly request multiple-step reasoning.",
}

EXPECTED_BREADTH_PAPER = (
    "I want you to act as a Prompt Creator.\n"
    "Your goal is to draw inspiration from the #Given Prompt# to create a brand new prompt.\n"
    "This new prompt should belong to the same domain as the #Given Prompt# but be even more rare.\n"
    "The LENGTH and complexity of the #Created Prompt# should be similar to that of the #Given Prompt#.\n"
    "The #Created Prompt# must be reasonable and must be understood and responded to by humans or modern AI "
    "chatbots.\n"
    "You MUST only generate the new prompt without any other words or special symbols.\n"
    "#Given Prompt#: \nGive three tips for staying healthy.\n#Created Prompt#:\n"
)


def test_constraints_prompt_is_byte_exact():
    assert evolution_prompt("constraints", INSTRUCTION) == EXPECTED_CONSTRAINTS


@pytest.mark.parametrize("method", ["deepen", "concretizing", "reasoning"])
def test_other_depth_prompts_differ_only_in_the_method_line(method):
    expected = EXPECTED_CONSTRAINTS.replace(DEPTH_METHOD_TEXT["constraints"], DEPTH_METHOD_TEXT[method])
    assert evolution_prompt(method, INSTRUCTION) == expected


def test_breadth_prompt_paper_version_is_byte_exact():
    assert evolution_prompt(BREADTH, INSTRUCTION) == EXPECTED_BREADTH_PAPER


def test_breadth_prompt_code_fidelity_has_the_stray_quote():
    expected = EXPECTED_BREADTH_PAPER.replace("You MUST only", "'You MUST only")
    assert evolution_prompt(BREADTH, INSTRUCTION, stray_quote=True) == expected


def test_braces_in_instructions_are_kept_verbatim():
    text = "Format {name} as {{json}}"
    assert "#The Given Prompt#: \n" + text + " \n" in evolution_prompt("deepen", text)


def test_response_prompts_are_byte_exact():
    assert response_prompt("Sort the list.", "3, 1, 2") == (
        "Given the following instruction and input, please provide a comprehensive and accurate response.\n"
        "Instruction: Sort the list.\nInput: 3, 1, 2\nResponse: "
    )
    assert response_prompt("Name a planet.", "") == (
        "Given the following instruction, please provide a comprehensive and accurate response.\n"
        "Instruction: Name a planet.\nResponse: "
    )


def test_response_cleaning_matches_the_seed():
    assert clean_response("\n\n  Paris.\n \n") == "Paris."


def test_method_order_is_depth_then_breadth():
    assert method_order(False) == ("constraints", "deepen", "concretizing", "reasoning")
    assert method_order(True) == ("constraints", "deepen", "concretizing", "reasoning", "breadth")


@pytest.mark.parametrize(
    "i, r, breadth, expected",
    [
        (0, 0, True, "constraints"),
        (1, 0, True, "deepen"),
        (4, 0, True, "breadth"),
        (5, 0, True, "constraints"),
        (0, 1, True, "deepen"),
        (4, 1, True, "constraints"),
        (3, 2, True, "constraints"),
        (7, 3, True, "constraints"),
        (0, 1, False, "deepen"),
        (3, 1, False, "constraints"),
        (2, 3, False, "deepen"),
        (10, 7, False, "deepen"),
    ],
)
def test_rotation_is_methods_i_plus_r_mod_k(i, r, breadth, expected):
    assert pick_method(method_order(breadth), i, r) == expected


def test_rotation_matches_the_research_codes_rotated_list():
    # evol_instruct.py rotates the list by r % K, then takes adjusted[i % K]; both forms must agree.
    for breadth in (False, True):
        methods = method_order(breadth)
        k = len(methods)
        for r in range(7):
            adjusted = methods[r % k:] + methods[: r % k]
            assert [pick_method(methods, i, r) for i in range(12)] == [adjusted[i % k] for i in range(12)]
