"""recipe=auto_evol through a local Ray on the tiny model: every row accounted for, trajectories kept with the
raw answer, keyword counting, and the optimizer loop's saved artefacts."""

import json

from engine.run.runner import run


def auto_evol_cfg(cfg, tmp_path, rows: int, evolve_tokens: int):
    seeds = tmp_path / "seeds.jsonl"
    seeds.write_text("".join(json.dumps({"instruction": f"Explain idea {i} about tides."}) + "\n" for i in range(rows)))
    cfg.recipe.name = "auto_evol"
    cfg.data.path = str(seeds)
    cfg.recipe.evolve.max_new_tokens = evolve_tokens
    cfg.cluster.batch_size = 4
    cfg.run.progress = False
    return cfg


def test_auto_evol_accounts_for_every_row(local_ray, tiny_cfg, tmp_path):
    tiny_cfg = auto_evol_cfg(tiny_cfg, tmp_path, rows=12, evolve_tokens=24)
    tiny_cfg.auto_evol.keywords = True
    summary = run(tiny_cfg)

    assert summary["rows_in"] == 12 and summary["rows_conserved"]
    rejects = [json.loads(line) for line in (tmp_path / "out" / "rejects" / "round_1.jsonl").open()]
    assert len(rejects) + summary["rows_out"] == 12
    unparsable = [r for r in rejects if r["reason"] == "unparsable"]
    assert unparsable and all(r["evolve_raw"] and r["method"] == "auto_evol" for r in unparsable)
    assert summary["rejected_by_method"]["auto_evol"]["unparsable"] == len(unparsable)

    from engine.report.keyword_counts import keyword_report

    report = keyword_report(tmp_path / "out")  # the random model writes no Step-1 list: nothing to count
    assert report == {"tiny": {"keywords": 0, "distinct_exact": 0, "distinct_normalised": 0}}


def test_the_optimizer_loop_saves_every_candidate_and_its_choice(local_ray, tiny_cfg, tmp_path):
    from engine.prompts.auto_evol import BASE_INSTRUCTION

    tiny_cfg = auto_evol_cfg(tiny_cfg, tmp_path, rows=8, evolve_tokens=16)
    opt = tiny_cfg.auto_evol
    opt.optimize, opt.steps, opt.candidates, opt.train_rows, opt.dev_rows = True, 2, 2, 2, 2
    opt.optimizer.max_new_tokens = 16
    summary = run(tiny_cfg)

    out = tmp_path / "out" / "optimizer"
    steps = [json.loads(line) for line in (out / "steps.jsonl").open()]
    assert [s["step"] for s in steps] == [1, 2]
    for step in steps:
        rates = step["dev_failure_rates"]
        assert step["methods"][0] and len(rates) == len(step["methods"])
        assert rates[step["chosen"]] == min(rates)  # the saved choice follows the selection rule
        assert step["invalid_candidates"] + len(step["methods"]) - 1 <= 2 and step["feedback"] is not None
    # The random model proposes no usable method, so the universal prompt stays the chosen one.
    assert (out / "chosen_method.txt").read_text() == BASE_INSTRUCTION
    assert summary["rows_in"] == 8 and summary["rows_conserved"]


def test_structured_auto_evol_leaves_no_answer_unparsable(local_ray, tiny_cfg, tmp_path):
    tiny_cfg = auto_evol_cfg(tiny_cfg, tmp_path, rows=4, evolve_tokens=160)
    tiny_cfg.auto_evol.structured = True
    summary = run(tiny_cfg)

    assert summary["rows_conserved"]
    assert summary["auto_evol"] == {"structured": True, "rounds": [
        {"round": 1, "answers": 4, "unparsable": 0, "unparsable_share": 0.0}]}
    assert "unparsable" not in summary["rejected_by_reason"]
