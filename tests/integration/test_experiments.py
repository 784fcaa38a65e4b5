"""The experiment configs end to end through `python -m engine` on the tiny models: a Hydra multirun size sweep
with its summary, and the SLM-vs-LLM comparison joined by seed id."""

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq

REPO = Path(__file__).resolve().parents[2]
# Small and fast: the tiny scorer, a few seeds, a few tokens.
SMALL = ["scorer=tiny", "recipe.evolve.max_new_tokens=8", "recipe.respond.max_new_tokens=8", "run.progress=false",
         "cluster.num_cpus=2"]


def engine(*args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    done = subprocess.run([sys.executable, "-m", "engine", *args], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-4000:]
    return done


def seeds_with_a_bad_line(path: Path, n: int) -> Path:
    lines = [json.dumps({"instruction": f"Explain step {i} of making bread.", "input": "", "output": "Knead."})
             for i in range(n)]
    lines.insert(2, "{not json")
    path.write_text("\n".join(lines) + "\n")
    return path


def test_size_sweep_writes_one_run_per_model_and_a_sweep_summary(tmp_path):
    sweep = tmp_path / "sweep"
    engine("experiment=size_sweep", "-m", "model=tiny,tiny_wide", "data.limit=6", *SMALL, f"hydra.sweep.dir={sweep}",
           f"run.output_dir={sweep}/${{model.name}}")

    summaries = {}
    for model in ("tiny", "tiny_wide"):
        summary = json.loads((sweep / model / "summary.json").read_text())
        assert summary["model"] == model
        assert summary["rows_in"] == 6 == summary["rows_out"] + summary["rows_rejected"]
        assert summary["rows_conserved"]
        assert pq.read_table(sweep / model / "data" / "round_1").num_rows == summary["rows_out"]
        summaries[model] = summary
    configs = {m: (sweep / m / "config.yaml").read_text() for m in summaries}
    assert "embedded: tiny_wide" in configs["tiny_wide"] and "embedded: tiny_wide" not in configs["tiny"]

    report = json.loads((sweep / "sweep_summary.json").read_text())
    jobs = {job["model"]: job for job in report["jobs"]}
    assert sorted(jobs) == ["tiny", "tiny_wide"] and len(report["jobs"]) == 2
    for model, job in jobs.items():
        assert job["status"] == "completed" and job["error"] == ""
        assert Path(job["output_dir"]) == (sweep / model).resolve()
        assert f"model={model}" in job["overrides"]
        for key in ("rows_in", "rows_out", "rows_rejected", "rejected_by_reason", "scores", "tokens"):
            assert job[key] == summaries[model][key]
        assert job["tokens"]["evolve_tokens"] > 0 and "mean_ic_ifd" in job["scores"]
    with open(sweep / "sweep_summary.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [row["model"] for row in rows] == ["tiny", "tiny_wide"]
    assert [int(row["rows_out"]) for row in rows] == [summaries[m]["rows_out"] for m in ("tiny", "tiny_wide")]
    assert all(float(row["tokens_per_s_per_node"]) > 0 and row["bottleneck"] for row in rows)
    compared = json.loads((sweep / "report" / "report.json").read_text())  # both sizes in one report
    html = (sweep / "report" / "index.html").read_text()
    assert len(compared["runs"]) == 2 and "tiny_wide" in html and "ic_ifd.png" in html
    per_model = compared["sections"]["per_model"]["rows"]  # the per-size throughput and quality table
    assert [r["model"] for r in per_model] == ["tiny", "tiny_wide"] and "stage_time.png" in html
    assert [r["mean_ic_ifd"] for r in per_model] == [summaries[m]["scores"]["mean_ic_ifd"]
                                                     for m in ("tiny", "tiny_wide")]


def test_slm_vs_llm_evolves_the_same_seeds_and_joins_them_by_seed_id(tmp_path):
    out = tmp_path / "compare"
    seeds = seeds_with_a_bad_line(tmp_path / "seeds.jsonl", 5)
    args = ["experiment=slm_vs_llm", "rounds=2", f"data.path={seeds}", *SMALL, f"run.output_dir={out}"]
    engine(*args)

    sides = {}
    for name, model in (("slm", "tiny"), ("llm", "tiny_wide")):
        summary = json.loads((out / name / "summary.json").read_text())
        assert summary["model"] == model and summary["rows_in"] == 6 and summary["rows_conserved"]
        assert (out / name / "manifest.jsonl").exists()
        kept = pq.read_table(out / name / "data" / "round_2").to_pylist()
        rejected = [json.loads(line) for r in (1, 2) for line in open(out / name / "rejects" / f"round_{r}.jsonl")]
        assert len(kept) + len(rejected) == 6
        sides[name] = ({row["seed_id"]: row for row in kept}, {row["seed_id"]: row for row in rejected})

    joined = pq.read_table(out / "side_by_side" / "side_by_side.parquet").to_pylist()
    lines = [json.loads(line) for line in open(out / "side_by_side" / "side_by_side.jsonl")]
    assert len(joined) == len(lines) == 6
    assert len({row["seed_id"] for row in joined}) == 6  # every seed once, none lost
    for row in joined:
        for name, (kept, rejected) in sides.items():
            if row["seed_id"] in kept:
                theirs = kept[row["seed_id"]]
                assert row[f"status_{name}"] == "ok"
                assert theirs["id"] == row["id"] == f"{row['seed_id']}.r1.r2"  # the same lineage id on both sides
                assert row[f"instruction_{name}"] == theirs["instruction"]
                assert row[f"output_{name}"] == theirs["output"]
                assert row[f"ic_ifd_{name}"] == theirs["ic_ifd"]
            else:
                assert row[f"status_{name}"] == "rejected"
                assert row[f"reason_{name}"] == rejected[row["seed_id"]]["reason"]
                assert row[f"instruction_{name}"] == ""
    bad = [row for row in joined if row["reason_slm"] == "malformed_json"]
    assert len(bad) == 1 and bad[0]["reason_llm"] == "malformed_json"
    assert {row["seed_instruction"] for row in joined} - {""} == {f"Explain step {i} of making bread." for i in range(5)}
    both = [row for row in joined if row["status_slm"] == row["status_llm"] == "ok"]
    assert both and any(row["instruction_slm"] != row["instruction_llm"] for row in both)  # two different models

    summary = json.loads((out / "summary.json").read_text())
    assert summary["compare"] == {"slm": "tiny", "llm": "tiny_wide"}
    assert summary["join"]["seeds"] == 6 and summary["join"]["kept_by_all"] == len(both)
    assert summary["join"]["per_evolver"]["slm"]["ok"] == len(sides["slm"][0])

    # A rerun resumes each evolver's directory from its manifest: nothing recomputed, the same join.
    manifests = {name: (out / name / "manifest.jsonl").read_text() for name in sides}
    engine(*args)
    assert pq.read_table(out / "side_by_side" / "side_by_side.parquet").to_pylist() == joined
    for name in sides:
        assert (out / name / "manifest.jsonl").read_text().startswith(manifests[name])
