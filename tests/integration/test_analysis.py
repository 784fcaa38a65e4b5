"""The analysis suite end to end on a demo-seed run with the tiny model: judge, reward, MiniLM diversity,
output-space histograms, and the HTML report with its PNGs."""

import json
import subprocess
import sys

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from PIL import Image
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from engine.backends.embedded import resolve_model_path
from engine.commands.analyze import analyse_run
from engine.prompts.judges import DIFFICULTY_LABELS
from engine.run.runner import run


@pytest.fixture(scope="module")
def reward_path(tmp_path_factory, tiny_model):
    tiny = resolve_model_path(tiny_model)
    torch.manual_seed(0)
    target = tmp_path_factory.mktemp("rm")
    AutoModelForSequenceClassification.from_pretrained(tiny, num_labels=1).save_pretrained(target)
    AutoTokenizer.from_pretrained(tiny).save_pretrained(target)
    return str(target)


def test_analysis_of_a_demo_run_writes_measurements_and_report(local_ray, tiny_cfg, reward_path, tmp_path):
    tiny_cfg.data.limit = 24
    tiny_cfg.cluster.batch_size = 8
    tiny_cfg.recipe.output_space = True
    summary = run(tiny_cfg)
    out = tmp_path / "out"
    assert summary["rows_out"] > 0
    space = summary["output_space"]["tiny"]
    assert space["positions"] == summary["tokens"]["evolve_tokens"]  # every generated position, all rows
    assert sum(space["top1_counts"]) == sum(space["entropy_counts"]) == space["positions"]

    tiny_cfg.analysis.reward.path = reward_path
    tiny_cfg.analysis.reward.length_norm = "divide"
    tiny_cfg.analysis.difficulty.max_new_tokens = 6
    tiny_cfg.analysis.complexity.max_new_tokens = 6
    result = analyse_run(tiny_cfg, out)

    rows = pq.read_table(out / "analysis" / "rows").to_pylist()
    kept = pq.read_table(out / "data" / "round_1").num_rows
    assert len(rows) == result["rows"] == kept
    # The random tiny judge writes no label: every row is counted as unparsable, none dropped.
    counts = result["difficulty"]["counts"]["tiny"]["1"]
    assert sum(counts.values()) == kept and set(counts) == {*DIFFICULTY_LABELS, "unparsable"}
    assert counts["unparsable"] + sum(counts[label] for label in DIFFICULTY_LABELS) == kept
    assert all(row["difficulty"] in ("", *DIFFICULTY_LABELS) for row in rows)
    complexity = result["complexity"]["per_evolver"]["tiny"]
    assert complexity["n"] == kept and complexity["unparsable"] == sum(np.isnan(r["complexity"]) for r in rows)
    assert all(np.isfinite(r["reward"]) for r in rows) and result["reward"]["length_norm"] == "divide"
    mnd = np.array([r["mnd"] for r in rows])
    if kept > 1:
        assert np.isfinite(mnd).all() and (mnd >= 0).all() and (mnd <= 4).all()
    assert result["diversity"]["per_evolver"]["tiny"]["n"] == kept

    report = out / "report"
    html = (report / "index.html").read_text()
    pngs = sorted(report.glob("*.png"))
    assert {"top1_prob.png", "diversity.png", "difficulty_by_round.png"} <= {p.name for p in pngs}
    for png in pngs:
        assert png.name in html
    with Image.open(report / "top1_prob.png") as image:
        image.verify()
    with Image.open(report / "top1_prob.png") as image:
        assert image.format == "PNG" and image.size[0] >= 400 and image.size[1] >= 300
    assert (report / "top1_prob.png").stat().st_size > 10_000


def test_analyze_cli_refuses_a_directory_that_is_not_a_run(tmp_path):
    done = subprocess.run([sys.executable, "-m", "engine.analyze", str(tmp_path), "model=tiny"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert "not a finished run directory" in done.stderr and "Traceback" not in done.stderr


def test_pairwise_judge_swaps_positions_and_counts_every_pair(local_ray, tiny_cfg, tmp_path):
    from engine.commands.pairwise import judge_files

    questions = [f"Name {n} animals that live in the sea." for n in range(2, 8)]
    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    a.write_text("".join(json.dumps({"instruction": q, "output": "Shark, whale, octopus."}) + "\n" for q in questions))
    b.write_text("".join(json.dumps({"instruction": q, "output": "Cows."}) + "\n" for q in reversed(questions)))
    tiny_cfg.analysis.pairwise.output_dir = str(tmp_path / "judged")
    tiny_cfg.analysis.pairwise.max_new_tokens = 8
    summary = judge_files(tiny_cfg, a, b)
    assert summary["pairs"] == 6 and summary["win"] + summary["tie"] + summary["lose"] == 6
    lines = [json.loads(x) for x in (tmp_path / "judged" / "judgements.jsonl").open()]
    assert len(lines) == 6
    for row in lines:  # both orders were asked, and the outcome follows the stated policy from the verdicts
        assert row["judge_raw_ab"] and row["judge_raw_ba"]
        assert row["answer_a"].startswith("Shark") and row["answer_b"] == "Cows."
    # The random tiny judge writes no label: unparsable verdicts are counted, and never decide an outcome.
    assert summary["unparsable_verdicts"]["a_first"] == sum(r["verdict_ab"] == "" for r in lines)
    assert summary["tie"] >= sum(r["verdict_ab"] == "" or r["verdict_ba"] == "" for r in lines)
