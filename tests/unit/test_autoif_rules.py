"""AutoIF prompt bytes, line parsing, JSON extraction variants and the cross-validation arithmetic."""

import pytest

from engine.prompts.autoif import augment_prompt, concat_prompt, verification_prompt
from engine.stages.autoif.rules import (
    augment_lines,
    cross_validate,
    dedup_instructions,
    extract_verification,
    normalise_expected,
    unique_cases,
)

AUGMENT = """
You are an expert for writing instructions. Please provide 50 different instructions that meet the following requirements:
- Instructions are about the format but not style of a response
- Whether instructions are followed can be easily evaluated by a Python function
Here are some examples of seed instructions we need:
Answer with words that begin with the letter 'B'
Respond with a haiku (5-7-5 syllable structure)
Do not generate instructions about writing style, using metaphor, or translation. Here are some examples of instructions we do not need:
- Incorporate a famous historical quote seamlessly into your answer
- Translate your answer into Pig Latin
- Use only words that are also a type of food
- Respond with a metaphor in every sentence
- Write the response as if you are a character from a Shakespearean play
Please generate one instruction per line in your response and start each line with '- '.
Do NOT repeat the seed instructions."""

VERIFY = (
    "You are an expert for writing evaluation functions in Python to evaluate whether a response strictly follows an instruction.\n"
    "Here is the instruction: Use {braces} {}\n"
    "Please write a Python function named `evaluate` to evaluate whether an input string `response` follows this instruction. If it follows, simply return True, otherwise return False.\n"
    "Please respond with a single JSON that includes the evaluation function in the key `func`, and a list of three test cases in the key `cases`, which includes an input in the key `input` and an expected output in the key `output` in (true, false).\n"
    'Here is an example of output JSON format: {"func": "JSON_STR(use only ' + "\\" + 'n instead of \n)", "cases": [{"input": "str", "output": "str"}]}.'
)


def test_prompt_bytes():
    seeds = ["Answer with words that begin with the letter 'B'", "Respond with a haiku (5-7-5 syllable structure)"]
    assert augment_prompt(seeds) == AUGMENT
    assert verification_prompt("Use {braces} {}") == VERIFY
    assert "use only \\n instead of \n)" in VERIFY  # backslash-n, then a real line break, as the seed sends it
    assert concat_prompt("End with 'Done.'", "How do tides work?") == (
        "Please answer the query strictly following the instruction.\n[instruction] End with 'Done.'\n"
        "[Query] How do tides work?"
    )


def test_augment_lines_follow_the_seed_rule_and_dedup_keeps_seeds():
    text = "- Use exactly three bullet points.\n-- Wrap the answer in double quotes -\n\n- use exactly three bullet points"
    lines = augment_lines(text)
    assert lines == ["Use exactly three bullet points.", "Wrap the answer in double quotes", "",
                     "use exactly three bullet points"]
    kept, counts = dedup_instructions(["Wrap the answer in double quotes"], lines)
    assert kept == ["Wrap the answer in double quotes", "Use exactly three bullet points."]
    assert counts == {"lines": 4, "empty": 1, "exact_duplicate": 1, "normalised_duplicate": 1, "new": 1}


FUNC = "def evaluate(response):\n    return response.isupper()"
FENCED = '```json\n{"func": "def evaluate(response):\\n    return response.isupper()", "cases": [{"input": "HI", "output": true}]}\n```'


@pytest.mark.parametrize(
    "text, seed, robust",
    [
        ("Sure!\n" + FENCED, True, True),
        ('{"func": "def evaluate(response):\\n    return response.isupper()", "cases": []}', False, True),  # bare
        ("```json\n{not json}\n```\n" + FENCED, False, True),  # the first block is broken: the seed gives up
        ('```python\nprint(1)\n```\nHere: {"func": "def evaluate(response):\\n    return response.isupper()"}', False, True),
        ("no json at all", False, False),
    ],
)
def test_json_extraction_modes(text, seed, robust):
    for mode, expected in (("seed", seed), ("robust", robust)):
        found, reason = extract_verification(text, mode)
        assert (found is not None) == expected, (mode, reason)
        if found:
            assert found.func == FUNC


def test_extraction_drops_download_lines_and_malformed_cases():
    text = ('{"func": "import requests\\ndef evaluate(response):\\n    return True", '
            '"cases": [{"input": "a", "output": "true"}, {"input": 5, "output": false}, "junk"]}')
    found, _ = extract_verification(text)
    assert found.func == "def evaluate(response):\n    return True"
    assert found.cases == [("a", "true")]


def test_expected_outputs_normalise_and_cases_dedup():
    assert [normalise_expected(v) for v in ("true", " False", True, "yes", 1)] == [True, False, True, "yes", 1]
    assert [normalise_expected(v) for v in ("True", "false", "TRUE", " true ")] == [True, False, True, True]
    assert [normalise_expected(v) for v in ("yes", "", None, 0, [1])] == ["yes", "", None, 0, [1]]
    assert unique_cases([("a", True), ("a", True), ("a", False)]) == [("a", True), ("a", False)]


def test_cross_validation_arithmetic():
    # 3 functions x 5 cases. Case 4 is passed by nobody: dropped. Over the 4 kept cases: f0 4/4, f1 3/4, f2 1/4.
    passed = [
        [True, True, True, True, False],
        [True, True, True, False, False],
        [False, False, False, True, False],
    ]
    result = cross_validate(passed, min_func_acc=0.8)
    assert result.kept_cases == [0, 1, 2, 3]
    assert result.accuracy == [1.0, 0.75, 0.25]
    assert result.kept_funcs == [0]
    assert cross_validate(passed, min_func_acc=0.75).kept_funcs == [0, 1]
    assert cross_validate([[False, False]]).kept_funcs == []  # no case kept: no function can be judged
