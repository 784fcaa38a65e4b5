"""Auto Evol-Instruct: prompt bytes, both parsing modes on realistic answers (malformed ones included), the stage."""

import pytest

from engine.prompts.auto_evol import auto_evol_prompt, keyword_prompt, parse_trajectory

PROMPT_HEAD = """You are an Instruction Rewriter that rewrites the given #Instruction# into a more complex version.
Please follow the steps below to rewrite the given #Instruction# into a more complex version.

Step 1: Please read the #Instruction# carefully and list all the possible methods to make this instruction more complex (to make it a bit harder for well-known AI assistants such as ChatGPT and GPT4 to handle). Please do not provide methods to change the language of the instruction!

Step 2: Please create a comprehensive plan based on the #Methods List# generated in Step 1 to make the #Instruction# more complex. The plan should include several methods from the #Methods List#.

Step 3: Please execute the plan step by step and provide the #Rewritten Instruction#. #Rewritten Instruction# can only add 10 to 20 words into the #Instruction#.

Step 4: Please carefully review the #Rewritten Instruction# and identify any unreasonable parts. Ensure that the #Rewritten Instruction# is only a more complex version of the #Instruction#. Just provide the #Final Rewritten Instruction# without any explanation.

Please reply strictly in the following format:

Step 1 #Methods List#:
Step 2 #Plan#:
Step 3 #Rewritten Instruction#:
Step 4 #Finally Rewritten Instruction#:

#Instruction#:
"""


def test_prompt_bytes():
    assert auto_evol_prompt("Sort {a, b}.") == PROMPT_HEAD + "Sort {a, b}."
    assert keyword_prompt("1. Add constraints").endswith("Method of Instruction Evolution:\n1. Add constraints")
    assert keyword_prompt("x").startswith("You are tasked with generating a concise summary for the given method")


CLEAN = """Step 1 #Methods List#:
1. Add a time constraint
2. Ask for a comparison
Step 2 #Plan#:
Combine methods 1 and 2.
Step 3 #Rewritten Instruction#:
Compare two sorting algorithms within 100 words.
Step 4 #Finally Rewritten Instruction#:
Compare quicksort and mergesort in under 100 words, citing one use case each."""

MARKDOWN = """**Step 1 #Methods List#:**
- Add a constraint

**Step 2 #Plan#:** use it

**Step 3 #Rewritten Instruction#:** Compare two sorts briefly.

**Step 4 #Finally Rewritten Instruction#:** Compare quicksort and mergesort briefly."""

SAME_LINE = "Step 1 #Methods List#: add detail\nStep 4 #Finally Rewritten Instruction#: Describe a cat in 3 lines."
LOWER_NO_HASH = "step 1 methods list:\n- x\nstep 4 finally rewritten instruction:\nName three rivers in Asia."
ECHOED_FORMAT = ("Please reply strictly in the following format:\nStep 4 #Finally Rewritten Instruction#:\n\n"
                 "Step 4 #Finally Rewritten Instruction#:\nList two prime numbers above 100.")
TRUNCATED = "Step 1 #Methods List#:\n1. Add a constraint\nStep 2 #Plan#:\nUse method 1 and"
ANSWERED_INSTEAD = "Quicksort picks a pivot and partitions the array around it."


@pytest.mark.parametrize(
    "text, seed_final, robust_final",
    [
        (CLEAN, "Compare quicksort and mergesort in under 100 words, citing one use case each.",
         "Compare quicksort and mergesort in under 100 words, citing one use case each."),
        (MARKDOWN, "", "Compare quicksort and mergesort briefly."),
        (SAME_LINE, "", "Describe a cat in 3 lines."),
        (LOWER_NO_HASH, "", "Name three rivers in Asia."),
        (ECHOED_FORMAT, "\nStep 4 #Finally Rewritten Instruction#:\nList two prime numbers above 100.".strip(),
         "List two prime numbers above 100."),
        (TRUNCATED, "", ""),
        (ANSWERED_INSTEAD, "", ""),
    ],
)
def test_parsing_modes(text, seed_final, robust_final):
    assert parse_trajectory(text, "seed").final == seed_final
    assert parse_trajectory(text, "robust").final == robust_final


def test_robust_parse_keeps_the_whole_trajectory():
    trajectory = parse_trajectory(CLEAN)
    assert trajectory.methods == "1. Add a time constraint\n2. Ask for a comparison"
    assert trajectory.plan == "Combine methods 1 and 2."
    assert trajectory.rewritten == "Compare two sorting algorithms within 100 words."
    assert parse_trajectory(TRUNCATED).methods == "1. Add a constraint"


def test_auto_evolve_stage_rejects_unparsable_answers_with_the_raw_text(tiny_cfg):
    from engine.stages.auto_evolve import AutoEvolve
    from tests.conftest import seed_batch

    batch = seed_batch(["Name a colour.", "Sort three numbers."])
    out = AutoEvolve(tiny_cfg, round_num=1)(batch)
    for i in range(2):  # the random tiny model never writes the four steps
        assert out["status"][i] == "rejected" and out["reason"][i] == "unparsable"
        assert out["evolve_raw"][i] and out["method"][i] == "auto_evol" and out["id"][i].endswith(".r1")
        assert out["parent_instruction"][i] == ["Name a colour.", "Sort three numbers."][i]
