"""AutoIF verification stages: VerifyGen on the tiny model, CrossValidate on hand-written generations whose
functions really run in the sandbox."""

import json
import os

import numpy as np
import pytest

from engine.recipes import specs
from tests.conftest import seed_batch

UPPER = "def evaluate(response):\n    return response.isupper()"
SHORT = "def evaluate(response):\n    return len(response) < 5"


def _generation(func, cases, fenced=True):
    body = json.dumps({"func": func, "cases": [{"input": i, "output": o} for i, o in cases]})
    return f"Here you go:\n```json\n{body}\n```" if fenced else body


def test_verify_gen_writes_one_generation_per_sample(tiny_cfg):
    tiny_cfg.autoif.samples_per_instruction = 3
    tiny_cfg.autoif.generate.max_new_tokens = 6
    batch = seed_batch(["Answer in capital letters.", "Use fewer than five characters."])
    batch["status"][1] = "rejected"
    out = specs.verify(tiny_cfg, 1).build()(batch)
    assert len(json.loads(out["verifications"][0])) == 3
    assert out["verifications"][1] == "[]"


def test_cross_validation_runs_the_functions_and_keeps_the_accurate_ones(tiny_cfg):
    rows = {
        # Two functions agree on the cases; a "true" string is normalised; a case nobody passes is dropped.
        "Answer in capital letters.": [
            _generation(UPPER, [("HELLO", True), ("hello", "false")]),
            _generation(UPPER, [("LOUD", True), ("x", True)]),  # same function again: counted once
            _generation("def evaluate(response):\n    return True", [("quiet", False), ("ABC", False)]),
            "I cannot write JSON today.",
        ],
        "Use fewer than five characters.": ["no json here", "still none"],
        "Reply with an emoji.": [_generation("def evaluate(response)\n    return True", [("x", True)])],  # syntax error
    }
    batch = seed_batch(list(rows))
    batch["verifications"] = np.array([json.dumps(v) for v in rows.values()], dtype=object)
    stage = specs.cross_validate(tiny_cfg).build()
    out = stage(batch)

    assert list(out["status"]) == ["ok", "rejected", "rejected"]
    assert [out["cv_parsed"][0], out["cv_funcs"][0], out["cv_funcs_executable"][0]] == [3, 2, 2]
    # 6 cases; ("ABC", False) is passed by neither function, so 5 are kept. Over them UPPER scores 4/5 (it
    # fails ("x", True)) and is kept at 0.8; "return True" scores 3/5 and is dropped.
    assert out["cv_cases"][0] == 6 and out["cv_cases_kept"][0] == 5
    assert json.loads(out["eval_funcs"][0]) == [UPPER]
    assert json.loads(out["func_accuracy"][0]) == [0.8]
    assert ["ABC", False] not in json.loads(out["cases"][0]) and ["hello", False] in json.loads(out["cases"][0])
    assert out["reason"][1] == "no_verification"
    assert out["reason"][2] == "no_executable_function"
    stage.sandbox.close()


def test_query_expansion_is_seeded_per_constraint_and_passes_rejected_rows(tiny_cfg):
    from engine.stages.autoif.augment import expand_queries

    batch = seed_batch(["End with 'Done.'", "Use no commas.", "Broken."])
    batch["status"][2] = "rejected"
    queries = [f"Question number {i} about rivers?" for i in range(10)]
    out = expand_queries(batch, queries, per_instruction=4, run_seed=0, round_num=3)
    assert len(out["id"]) == 4 + 4 + 1
    assert list(out["id"][:4]) == [f"{batch['id'][0]}.q{j}" for j in range(4)]
    assert set(out["parent_id"][:4]) == {batch["id"][0]} and out["round"][0] == 3
    assert len(set(out["input"][:4])) == 4 and set(out["input"][:4]) <= set(queries)
    assert out["status"][8] == "rejected" and out["id"][8] == batch["id"][2]
    alone = expand_queries(seed_batch(["End with 'Done.'"]), queries, 4, 0, 3)
    assert list(alone["input"]) == list(out["input"][:4])  # the same constraint samples the same queries


def test_augmented_lines_become_rows_with_every_line_accounted_for(tiny_cfg):
    from engine.stages.autoif.augment import instruction_rows, seed_constraints

    seeds = seed_constraints(tiny_cfg.autoif)
    calls = [("augment-0000", f"- Use exactly two emojis.\n\n- {seeds[0]}\n- use exactly two emojis"),
             ("augment-0001", "- Quote the final sentence.")]
    batch, counts = instruction_rows(seed_constraints(tiny_cfg.autoif), calls)
    ok = batch["status"] == "ok"
    assert list(batch["instruction"][ok]) == seeds + ["Use exactly two emojis.", "Quote the final sentence."]
    assert sorted(batch["reason"][~ok]) == ["duplicate_instruction", "duplicate_instruction", "empty_line"]
    assert len(batch["id"]) == len(seeds) + 5 and counts["new"] == 2


def test_strict_sandbox_refuses_to_run_without_mount_isolation(tiny_cfg):
    tiny_cfg.autoif.sandbox.require = "strict"
    if os.geteuid() == 0:  # mount isolation is available here: strict runs, and every judged row records it
        stage = specs.cross_validate(tiny_cfg).build()
        batch = seed_batch(["Answer in capital letters."])
        batch["verifications"] = np.array([json.dumps([_generation(UPPER, [("HELLO", True)])])], dtype=object)
        out = stage(batch)
        stage.sandbox.close()
        assert out["status"][0] == "ok"
        assert out["sandbox_isolation"][0] in ("namespace/pid_namespace/bwrap",
                                               "namespace/pid_namespace/mount_namespace")
    tiny_cfg.autoif.sandbox.isolation = "none"
    with pytest.raises(RuntimeError, match="require=strict: verifiers would run without mount isolation"):
        specs.cross_validate(tiny_cfg).build()
