"""Judge prompts (byte-exact where the research code has them), the tolerant parsers on answers judges really
write, the position-swap tie policies, the judge and reward stages on the tiny model."""

import json

import numpy as np
import pytest

from engine.config import Config, ModelConfig
from engine.prompts import judges
from engine.prompts.judges import combine_orders, parse_difficulty, parse_score, parse_verdict
from engine.stages.analysis.reward import adjust, meta_prompt

CODE_DIFFICULTY = (
    "# Instruction\nYou first need to identify the given user intent and then label the difficulty level of the user "
    "query based on the content of the user query.\n\n## User Query\nQ\n\n## Output Format\nGiven the user query, in "
    "your output, you first need to identify the user intent and the knowledge needed to solve the task in the user "
    "query. Then, rate the difficulty level of the user query as 'very easy', 'easy', 'medium', 'hard', or 'very "
    "hard'.\nRemember, only generate the difficulty level without any other words or symbols.## Output\n"
)
CODE_COMPLEXITY = (
    "We would like you to evaluate and rate the difficulty and complexity of the following question.\nYou should give "
    "an overall score on a scale of 0 to 100, where a higher score indicates higher difficulty and complexity.You "
    "must just give a score without any other words or special symbols.\n## Question:\nQ\n## Score:\n"
)


def test_code_prompts_are_the_research_code_bytes():
    assert judges.judge_prompt("difficulty", "code", "Q") == CODE_DIFFICULTY
    assert judges.judge_prompt("complexity", "code", "Q") == CODE_COMPLEXITY
    paper = judges.judge_prompt("difficulty", "paper", "Q")
    assert paper.endswith("symbols.\n## Output\n") and paper != CODE_DIFFICULTY
    assert "from 0 to 100" in judges.judge_prompt("complexity", "paper", "Q")
    with pytest.raises(ValueError, match="analysis.complexity.prompt"):
        judges.judge_prompt("complexity", "gpt4", "Q")


def test_instruction_braces_survive():
    assert "{x} {}" in judges.judge_prompt("complexity", "code", "{x} {}")
    prompt = judges.pairwise_prompt("q {assistant1}", "A", "B")
    assert prompt.startswith("\n[User]\nq {assistant1}\n[End of User]\n[Assistant 1]\nA\n")
    assert prompt.endswith("'Assistant 1 is equal to Assistant 2'")


@pytest.mark.parametrize("answer,label", [
    ("hard", "hard"),
    ("Hard", "hard"),
    ("**Very Hard**", "very hard"),
    ("very-easy.", "very easy"),
    ("Difficulty: medium", "medium"),
    ("The user wants a sorting algorithm, which needs basic CS knowledge.\nDifficulty level: Easy", "easy"),
    ("'very hard'", "very hard"),
    ("Ratings are very easy, easy, medium, hard or very hard. This one is medium.", "medium"),
    ("It is not easy; I would say hard.", "hard"),
    ("I cannot rate this.", None),
    ("", None),
])
def test_difficulty_robust(answer, label):
    assert parse_difficulty(answer) == label


def test_difficulty_seed_mode_is_exact():
    assert parse_difficulty("hard", "seed") == "hard"
    assert parse_difficulty("Hard", "seed") is None
    assert parse_difficulty("hard.", "seed") is None


@pytest.mark.parametrize("answer,score", [
    ("85", 85.0),
    ("Score: 72.5", 72.5),
    ("**60**", 60.0),
    ("85/100", 85.0),
    ("I would rate it 40 out of 100.", 40.0),
    ("7/10", 70.0),
    ("## Score:\n90\n", 90.0),
    ("The score is 150", None),
    ("Your answer is 100% correct.", None),                     # real SmolLM2 judge answers: not scores
    ("Your Rewrite Prompt #2 is a great example", None),
    ("Prompt #3 is harder; score: 55", 55.0),
    ("high", None),
    ("", None),
])
def test_score_robust(answer, score):
    assert parse_score(answer) == score


def test_score_seed_mode_is_float():
    assert parse_score(" 85\n", "seed") == 85.0  # float() accepts surrounding whitespace
    assert parse_score("Score: 85", "seed") is None


@pytest.mark.parametrize("answer,verdict", [
    ("Assistant 1 is better than Assistant 2", "1"),
    ("Both are fine, but A2 is shorter.\n'Assistant 1 is worse than Assistant 2'", "2"),
    ("**Assistant 2 is better than Assistant 1**", "2"),
    ("assistant 1 is equal to assistant 2.", "tie"),
    ("Assistant 1 is better than Assistant 2 in tone.\nFinal: Assistant 1 is worse than Assistant 2", "2"),
    ("I prefer the first one.", ""),
])
def test_verdict_robust(answer, verdict):
    assert parse_verdict(answer) == verdict


def test_verdict_seed_mode_substring():
    assert parse_verdict("I prefer the first one.", "seed") == "tie"
    assert parse_verdict("Assistant 2 is better than Assistant 1", "seed") == "1"  # the research code's misread


@pytest.mark.parametrize("first,swapped,consistent,lenient", [
    ("1", "2", "win", "win"),      # A preferred in both orders
    ("2", "1", "lose", "lose"),
    ("1", "1", "tie", "tie"),      # position bias: the first answer always wins
    ("1", "tie", "tie", "win"),
    ("tie", "1", "tie", "lose"),
    ("1", "", "tie", "tie"),       # unparsable never decides
    ("tie", "tie", "tie", "tie"),
])
def test_position_swap_policies(first, swapped, consistent, lenient):
    assert combine_orders(first, swapped, "consistent") == consistent
    assert combine_orders(first, swapped, "lenient") == lenient


def test_unknown_tie_policy():
    with pytest.raises(ValueError, match="tie_policy"):
        combine_orders("1", "2", "coin")


def test_reward_meta_prompt_is_rebuilt_from_the_parent():
    prompt = meta_prompt("constraints", "Parent text")
    assert "Parent text" in prompt and "Evolved text" not in prompt
    assert meta_prompt("auto_evol", "Parent text").endswith("Parent text")
    assert meta_prompt("", "") is None and meta_prompt("mystery", "x") is None


def test_length_adjustment_modes():
    scores, tokens = np.array([1.0, 2.0, np.nan]), np.array([10, 30, 5])
    assert np.allclose(adjust(scores, tokens, "divide")[:2], [1.0 / 10 * 20, 2.0 / 30 * 20])
    assert np.allclose(adjust(scores, tokens, "multiply")[:2], [1.0 * 10 / 20, 2.0 * 30 / 20])
    assert np.isnan(adjust(scores, tokens, "divide")[2])
    assert np.array_equal(adjust(scores, tokens, "none")[:2], scores[:2])
    with pytest.raises(ValueError, match="length_norm"):
        adjust(scores, tokens, "log")


class Scripted:
    """A judge backend answering from a script, to test the stage's retry and bookkeeping."""

    def __init__(self, answers):
        self.answers = list(answers)
        self.calls = []

    def generate(self, prompts, sampling, seeds=None):
        from engine.backends.base import Generation

        self.calls.append((len(prompts), sampling.greedy))
        return [Generation(self.answers.pop(0), 1, 1, "stop") for _ in prompts]


def _batch(n):
    return {"id": np.array([f"r{i}" for i in range(n)], dtype=object),
            "instruction": np.array([f"task {i}" for i in range(n)], dtype=object),
            "status": np.array(["ok"] * (n - 1) + ["rejected"], dtype=object)}


def test_judge_retries_unparsable_then_counts_it(monkeypatch):
    from engine.stages.analysis import judge as judge_mod

    answers = ["hard", "no idea", "still no idea",   # difficulty: row 1 retried once, stays unparsable
               "50", "Score: 70"]                     # complexity: both parse first time
    monkeypatch.setattr(judge_mod, "load_backend", lambda *a, **k: Scripted(answers))
    cfg = Config(model=ModelConfig(name="tiny", embedded="tiny"))
    stage = judge_mod.Judge(judge_mod.JudgeArgs(model=cfg.model, difficulty=cfg.analysis.difficulty,
                                                complexity=cfg.analysis.complexity, run_seed=cfg.run.seed))
    out = stage(_batch(3))
    assert list(out["difficulty"]) == ["hard", "", ""]
    assert list(out["difficulty_attempts"]) == [1, 2, 0]
    assert out["difficulty_raw"][1] == "still no idea"
    assert list(out["complexity"][:2]) == [50.0, 70.0] and np.isnan(out["complexity"][2])
    assert stage.model.calls == [(2, True), (1, False), (2, True)]  # the retry is sampled


def test_pairwise_stage_swaps_positions(monkeypatch):
    from engine.stages.analysis import judge as judge_mod

    seen = []

    class Biased:
        def generate(self, prompts, sampling, seeds=None):
            from engine.backends.base import Generation

            seen.extend(prompts)  # prefers whichever answer mentions "good", else the first shown
            return [Generation("Assistant 1 is better than Assistant 2"
                               if p.index("[Assistant 1]") < p.find("good") < p.index("[Assistant 2]")
                               or "good" not in p else "Assistant 1 is worse than Assistant 2", 1, 1, "stop")
                    for p in prompts]

    monkeypatch.setattr(judge_mod, "load_backend", lambda *a, **k: Biased())
    batch = {"id": np.array(["a", "b", "c"], dtype=object), "instruction": np.array(["q"] * 3, dtype=object),
             "answer_a": np.array(["good", "meh", "x"], dtype=object),
             "answer_b": np.array(["meh", "good", "y"], dtype=object), "status": np.array(["ok"] * 3, dtype=object)}
    cfg = Config()
    out = judge_mod.PairwiseJudge(judge_mod.PairwiseArgs(model=cfg.model, pairwise=cfg.analysis.pairwise))(batch)
    assert list(out["outcome"]) == ["win", "lose", "tie"]  # row c: position bias alone is a tie
    assert len(seen) == 6


def test_answer_files_pair_by_id_else_by_question(tmp_path):
    from engine.commands.pairwise import pair_rows, read_answers

    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    a.write_text("\n".join(json.dumps(r) for r in [
        {"instruction": "q1", "output": "a1"}, {"instruction": "q2", "output": "a2"},
        {"instruction": "q3", "output": "a3"}]) + "\n{broken\n")
    b.write_text("\n".join(json.dumps(r) for r in [
        {"instruction": "q2", "output": "b2"}, {"instruction": "q1", "output": "b1"}]) + "\n")
    rows_a, invalid_a = read_answers(a)
    rows_b, _ = read_answers(b)
    assert len(invalid_a) == 1 and "a.jsonl:4" in invalid_a[0]["detail"]
    pairs, only_a, only_b = pair_rows(rows_a, rows_b)
    assert sorted((ra["output"], rb["output"]) for ra, rb in pairs) == [("a1", "b1"), ("a2", "b2")]
    assert len(only_a) == 1 and not only_b
    # With ids in the files, ids decide.
    a.write_text(json.dumps({"id": "x", "instruction": "q", "output": "A"}) + "\n")
    b.write_text(json.dumps({"id": "x", "instruction": "q", "output": "B"}) + "\n")
    pairs, _, _ = pair_rows(read_answers(a)[0], read_answers(b)[0])
    assert [(ra["id"], ra["output"], rb["output"]) for ra, rb in pairs] == [("x", "A", "B")]
