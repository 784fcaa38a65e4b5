"""Structured output without a model: the Structured value, the AutoIF verification and Auto Evol-Instruct 4-step
grammars (their worst case fits the token budget, xgrammar and Python's re accept the same strings, the stages'
parsers read every string the grammars allow), the backends' settings, and the summary shares."""

import json
import re

import pytest
import xgrammar
from xgrammar.testing import _is_grammar_accept_string as xgrammar_accepts

from engine.backends import Sampling, Structured
from engine.backends import vllm_config as vc
from engine.config import Config, ConfigError, ModelConfig
from engine.prompts.auto_evol import (
    STEP_LABELS,
    four_step_budget,
    four_step_structured,
    parse_structured,
    parse_trajectory,
)
from engine.prompts.autoif import VERIFICATION_SCHEMA, verification_budget, verification_structured
from engine.stages.autoif.rules import extract_verification

jsonschema = pytest.importorskip("jsonschema")


def both_accept(structured: Structured, text: str) -> bool:
    """What xgrammar (HF, and vLLM's backend) and Python's re say about `text`; they must agree."""
    grammar = xgrammar.Grammar.from_regex(structured.regex)
    by_re = re.fullmatch(structured.regex, text) is not None
    assert xgrammar_accepts(grammar, text) == by_re, text
    return by_re


def test_structured_takes_exactly_one_constraint_and_hashes_by_value():
    with pytest.raises(ValueError):
        Structured()
    with pytest.raises(ValueError):
        Structured(json_schema="{}", regex="a")
    with pytest.raises(json.JSONDecodeError):
        Structured(json_schema="{not json")
    a = Structured.schema({"type": "object", "required": ["a"]})
    assert a == Structured.schema({"required": ["a"], "type": "object"})
    assert len({a, Structured.schema({"required": ["a"], "type": "object"})}) == 1


@pytest.mark.parametrize("text", ['```json\n{"func": "', "Step 1 #Methods List#:\n", "a.b*c+(d)[e]{f}|g?h^i$j\\k"])
def test_literal_matches_itself_only(text):
    pattern = Structured.literal(text)
    assert both_accept(Structured(regex=pattern), text)
    assert not both_accept(Structured(regex=pattern), text + "x")


# --- AutoIF verification -------------------------------------------------------------------------------------

def verification_text(func: str, inputs: list[str], outputs: list[bool]) -> str:
    cases = ", ".join(f'{{"input": "{i}", "output": {str(o).lower()}}}' for i, o in zip(inputs, outputs))
    return f'```json\n{{"func": "{func}", "cases": [{cases}]}}\n```'


@pytest.mark.parametrize("max_new_tokens", [192, 512, 2048])
def test_the_longest_verification_answer_fits_the_budget_and_parses(max_new_tokens):
    lines, width, input_chars = verification_budget(max_new_tokens)
    structured = verification_structured(max_new_tokens)
    func = "\\n".join(["f" * width] * lines)  # every line full, joined by the two characters \n
    longest = verification_text(func, ["i" * input_chars] * 3, [False] * 3)  # `false`: the longer output
    assert both_accept(structured, longest)
    assert len(longest) + 1 <= max_new_tokens  # each token writes >= 1 character; +1 for end-of-sequence
    assert not both_accept(structured, verification_text(func + "\\nf", ["i"] * 3, [True] * 3))
    assert not both_accept(structured, verification_text("f" * (width + 1), ["i"] * 3, [True] * 3))
    assert not both_accept(structured, verification_text("f", ["i" * (input_chars + 1)] * 3, [True] * 3))
    for mode in ("seed", "robust"):
        found, reason = extract_verification(longest, mode)
        assert reason == "" and found.func == "\n".join(["f" * width] * lines)
        assert found.cases == [("i" * input_chars, False)] * 3


def test_verification_grammar_allows_multiline_functions_and_matches_the_schema():
    structured = verification_structured(2048)
    func = "def evaluate(response):\\n    words = response.split()\\n    return 'a' in words"
    text = verification_text(func, ["A cat", "", "a dog"], [False, False, True])
    assert both_accept(structured, text)
    value = json.loads(text.removeprefix("```json\n").removesuffix("\n```"))
    jsonschema.validate(value, VERIFICATION_SCHEMA)
    found, _ = extract_verification(text, "seed")
    assert found.func == "def evaluate(response):\n    words = response.split()\n    return 'a' in words"
    assert found.cases == [("A cat", False), ("", False), ("a dog", True)]
    namespace = {}
    exec(found.func, namespace)  # noqa: S102 - our own function text: the lines survive as Python source
    assert [namespace["evaluate"](text) for text, _ in found.cases] == [False, False, True]


@pytest.mark.parametrize("bad", [
    verification_text("", ["a"] * 3, [True] * 3),  # empty function
    verification_text("x", ["a"] * 2, [True] * 2),  # two cases, not three
    verification_text("x", ["a"] * 3, [True] * 3).replace("true", '"true"', 1),  # a string where a bool goes
    verification_text("x`", ["a"] * 3, [True] * 3),  # a backtick could close the fence
    verification_text("caf\u00e9", ["a"] * 3, [True] * 3),  # non-ASCII: a token might write part of a char
    verification_text("\\u0041", ["a"] * 3, [True] * 3),  # \u escapes: 6 characters for one
    verification_text('say \\"hi\\"', ["a"] * 3, [True] * 3),  # escapes other than \n
    verification_text("x", ["a"] * 3, [True] * 3).replace('"func": ', '"func":'),  # not compact
])
def test_verification_grammar_refuses_what_could_break_the_budget_or_the_parse(bad):
    assert not both_accept(verification_structured(512), bad)


def test_a_budget_too_small_for_the_verification_answer_is_refused():
    with pytest.raises(ValueError, match="no room"):
        verification_budget(128)


# --- Auto Evol-Instruct 4-step answers -----------------------------------------------------------------------

def four_step_text(sections: list[str]) -> str:
    return "".join(label + section for label, section in zip(STEP_LABELS, sections))


@pytest.mark.parametrize("max_new_tokens", [160, 1024])
def test_the_longest_four_step_answer_fits_the_budget_and_parses(max_new_tokens):
    sizes = four_step_budget(max_new_tokens)
    structured = four_step_structured(max_new_tokens)
    longest = four_step_text(["m\n" * (sizes[0] // 2), "p" * sizes[1], "r" * sizes[2], "F" * sizes[3]])
    assert both_accept(structured, longest)
    assert len(longest) + 1 <= max_new_tokens
    assert not both_accept(structured, four_step_text(["m", "p", "r", "F" * (sizes[3] + 1)]))
    assert parse_structured(longest).final == "F" * sizes[3]
    assert parse_trajectory(longest, "seed").final == "F" * sizes[3]  # the research code's split agrees


@pytest.mark.parametrize("final", ["Write a haiku: three lines.", "Summarize the text in 20 words", "(a) list it"])
def test_every_final_instruction_the_grammar_allows_is_parsed(final):
    sections = ["1. Add a constraint.\nPlan: reuse it\nFinally rewritten instruction:", "Use method 1.",
                "Write a haiku.", final]
    text = four_step_text(sections)
    assert both_accept(four_step_structured(1024), text)
    trajectory = parse_structured(text)
    assert (trajectory.methods, trajectory.plan, trajectory.rewritten, trajectory.final) == tuple(sections)
    assert parse_trajectory(text, "seed").final == final


@pytest.mark.parametrize("final", ["", " starts with a space", "two\nlines", "has a # mark"])
def test_four_step_grammar_refuses_an_empty_or_ambiguous_final(final):
    assert not both_accept(four_step_structured(1024), four_step_text(["m", "p", "r", final]))


def test_four_step_grammar_refuses_a_label_inside_a_section():
    text = four_step_text(["m\nStep 4 #Finally Rewritten Instruction#:\nx", "p", "r", "F"])
    assert not both_accept(four_step_structured(1024), text)


def test_an_unconstrained_answer_without_the_labels_is_unparsable():
    assert parse_structured("Step 1 #Methods List#:\nm\nStep 4 #Finally Rewritten Instruction#:\nF").final == ""
    assert parse_trajectory(four_step_text(["m", "p", "r", "F"]), "structured").final == "F"


# --- backends, config, summary -------------------------------------------------------------------------------

def test_vllm_requests_carry_the_same_constraint():
    schema = Structured.schema({"type": "object"})
    assert vc.structured_outputs_kwargs(schema) == {"json": schema.json_schema}
    assert vc.structured_outputs_kwargs(Structured(regex="a+")) == {"regex": "a+"}
    kwargs = vc.engine_kwargs(ModelConfig(backend="vllm"), "/m")
    assert kwargs["structured_outputs_config"] == {"backend": "xgrammar", "disable_any_whitespace": True}


def test_echo_backend_refuses_structured_calls_row_by_row(tiny_model):
    from engine.backends.echo import EchoBackend

    echo = EchoBackend(tiny_model)
    out = echo.generate(["a", "b"], Sampling(max_new_tokens=8), structured=Structured(regex="x"))
    assert [g.finish_reason for g in out] == ["error", "error"] and "structured" in out[0].error
    assert echo.generate(["a"], Sampling(max_new_tokens=8))[0].finish_reason == "stop"


def test_structured_recipes_refuse_a_budget_their_grammar_cannot_fit():
    from engine.recipes.auto_evol import AutoEvol
    from engine.recipes.autoif import AutoIF

    cfg = Config()
    cfg.autoif.structured, cfg.autoif.generate.max_new_tokens = True, 100
    with pytest.raises(ConfigError, match="autoif.structured"):
        AutoIF(cfg)
    cfg.auto_evol.structured, cfg.recipe.evolve.max_new_tokens = True, 100
    with pytest.raises(ConfigError, match="auto_evol.structured"):
        AutoEvol(cfg)
    cfg.autoif.generate.max_new_tokens = cfg.recipe.evolve.max_new_tokens = 256
    AutoIF(cfg), AutoEvol(cfg)


def test_summaries_give_the_parsed_and_unparsable_shares():
    from engine.recipes.auto_evol import parse_share
    from engine.recipes.autoif import funnel

    round_counts = {"round": 1, "rows_in": 10, "rejected_by_stage": {"read": 1, "evolve": 1, "auto_evolve": 2},
                    "rejected_by_reason": {"unparsable": 2, "generation_error": 1, "empty": 1}}
    assert parse_share(round_counts) == {"round": 1, "answers": 8, "unparsable": 2, "unparsable_share": 0.25}
    verify = {"rows_in": 4, "rows_out": 1, "rejected_by_stage": {},
              "counts": {"cv_generations": 8, "cv_parsed": 6}}
    out = funnel([{}, verify], structured=True)
    assert out["structured"] is True and out["generations_parsed"] == 6 and out["generations_parsed_rate"] == 0.75
