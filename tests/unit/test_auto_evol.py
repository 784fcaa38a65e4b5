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
    from engine.recipes import specs
    from tests.conftest import seed_batch

    batch = seed_batch(["Name a colour.", "Sort three numbers."])
    out = specs.auto_evolve(tiny_cfg, 1).build()(batch)
    for i in range(2):  # the random tiny model never writes the four steps
        assert out["status"][i] == "rejected" and out["reason"][i] == "unparsable"
        assert out["evolve_raw"][i] and out["method"][i] == "auto_evol" and out["id"][i].endswith(".r1")
        assert out["parent_instruction"][i] == ["Name a colour.", "Sort three numbers."][i]


def test_method_lines_and_keyword_counts():
    from engine.stages.analysis.keywords import count_keywords, method_lines

    methods = "Step 1 #Methods List#:\n1. Add a time limit\n\n2. Ask for a comparison\n#Method List# end"
    assert method_lines(methods) == ["1. Add a time limit", "2. Ask for a comparison"]
    counts = count_keywords([["Time constraint", "time constraint."], ["Comparison", "Time constraint"], []])
    assert counts == {"keywords": 4, "distinct_exact": 3, "distinct_normalised": 2}


def test_keyword_stage_summarises_each_method_line(tiny_cfg):
    import json

    import numpy as np

    from engine.recipes import specs
    from tests.conftest import seed_batch

    tiny_cfg.auto_evol.keyword_tokens = 4
    batch = seed_batch(["a", "b"])
    batch["traj_methods"] = np.array(["1. Add a limit\n2. Compare", ""], dtype=object)
    out = specs.keywords(tiny_cfg).build()(batch)
    assert len(json.loads(out["traj_keywords"][0])) <= 2 and out["traj_keywords"][1] == "[]"


def test_balance_samples_the_larger_run_down_with_a_seed(tmp_path):
    import json

    from engine.commands.balance import balance

    for name, n in (("slm", 10), ("llm", 4)):
        run = tmp_path / name
        (run / "alpaca").mkdir(parents=True)
        (run / "summary.json").write_text(json.dumps({"rounds_completed": 1}))
        (run / "alpaca" / "round_1.jsonl").write_text("".join(json.dumps({"instruction": f"{name} {i}"}) + "\n"
                                                              for i in range(n)))
    report = balance(tmp_path / "slm", tmp_path / "llm", tmp_path / "out", seed=3)
    assert report["sizes"] == [10, 4] and report["kept_each"] == 4
    slm = (tmp_path / "out" / "slm.jsonl").read_text().splitlines()
    assert len(slm) == 4 and len(set(slm)) == 4
    assert (tmp_path / "out" / "llm.jsonl").read_text() == (tmp_path / "llm" / "alpaca" / "round_1.jsonl").read_text()
    again = balance(tmp_path / "slm", tmp_path / "llm", tmp_path / "out2", seed=3)
    assert (tmp_path / "out2" / "slm.jsonl").read_text().splitlines() == slm and again["kept_each"] == 4


def test_optimizer_selection_rule_prefers_the_lowest_failure_rate_and_keeps_the_current_on_ties():
    from engine.stages.generation.optimize import choose

    assert choose([0.5, 0.25, 0.75]) == 1
    assert choose([0.25, 0.25, 0.5]) == 0  # a candidate must beat the current method, not tie it
    assert choose([0.5, 0.25, 0.25]) == 1  # among equal candidates the first sampled wins
    assert choose([0.0]) == 0


def test_candidate_methods_are_extracted_only_when_usable():
    from engine.prompts.auto_evol import BASE_INSTRUCTION, extract_method, optimization_prompt

    improved = BASE_INSTRUCTION.replace("10 to 20 words", "10 to 15 words")
    answer = "Sure, here it is.\n### METHOD\n" + improved + "\n### END\nHope it helps."
    assert extract_method(answer) == improved
    assert extract_method("### METHOD\nJust make it harder.\n### END") == ""  # lost the reply format
    assert extract_method("no method at all") == ""
    prompt = optimization_prompt(BASE_INSTRUCTION, "Case 1: it answered the question.")
    assert BASE_INSTRUCTION in prompt and "Case 1: it answered the question." in prompt
