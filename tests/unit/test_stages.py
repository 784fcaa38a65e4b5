"""Stages called in-process on the tiny model: lineage, rotation, rejected rows passed through untouched."""


from engine.prompts.evol import method_order, pick_method
from engine.recipes import specs
from tests.conftest import seed_batch


def test_evolve_sets_lineage_and_rotation(tiny_cfg):
    batch = seed_batch([f"Explain topic number {i} simply." for i in range(7)], ["", "ctx"] + [""] * 5)
    batch["status"][3] = "rejected"
    batch["reason"][3] = "empty_instruction"
    parents = batch["id"].copy()
    out = specs.evolve(tiny_cfg, 1).build()(batch)

    methods = method_order(True)
    for i in range(7):
        if i == 3:
            assert out["id"][i] == parents[i] and out["status"][i] == "rejected" and out["method"][i] == ""
            continue
        assert out["parent_id"][i] == parents[i]
        assert out["id"][i] == parents[i] + ".r1"
        assert out["round"][i] == 1
        assert out["method"][i] == pick_method(methods, i, 1)
        assert out["evolver"][i] == "tiny"
        assert out["parent_instruction"][i] == f"Explain topic number {i} simply."
        assert out["evolve_tokens"][i] > 0
    assert out["input"][1] == "ctx"  # input carried unchanged, as the seed does


def test_evolve_is_reproducible_for_the_same_rows(tiny_cfg):
    stage = specs.evolve(tiny_cfg, 1).build()
    first = stage(seed_batch(["Name a colour.", "Name a river."]))["instruction"]
    second = stage(seed_batch(["Name a colour.", "Name a river."]))["instruction"]
    assert list(first) == list(second)


def test_respond_fills_output_and_skips_rejected(tiny_cfg):
    batch = seed_batch(["Name a colour.", "Name a river.", "Sum 2 and 3."])
    batch["status"][1] = "rejected"
    out = specs.respond(tiny_cfg, 1).build()(batch)
    assert out["output"][1] == ""
    assert out["responder"][1] == ""
    assert out["responder"][0] == "tiny"
    assert out["response_tokens"][0] > 0
    ok = out["status"] == "ok"
    assert all(out["output"][ok])  # ok rows carry a non-empty answer; empty answers were rejected
    assert len(out["id"]) == 3


def test_respond_answers_autoif_rows_with_the_concat_prompt(tiny_cfg):
    from engine.prompts.autoif import concat_prompt

    stage = specs.respond(tiny_cfg, 3, prompt="autoif").build()
    sent = []
    generate = stage.model.generate
    stage.model.generate = lambda prompts, sampling, seeds=None: sent.extend(prompts) or generate(prompts, sampling, seeds)
    batch = seed_batch(["End with 'Done.'"], ["How do tides work?"])
    stage(batch)
    assert sent == [concat_prompt("End with 'Done.'", "How do tides work?")]
