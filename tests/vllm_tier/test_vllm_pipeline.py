"""The Evol-Instruct demo end to end through the Ray pipeline with every model stage on vLLM (evolve and respond
on the embedded SmolLM2, IC-IFD scoring through prompt logprobs), run as a user runs it: `python -m engine`."""

import json
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml

pytestmark = pytest.mark.vllm

REPO = Path(__file__).resolve().parents[2]
ROWS = 12
IN_FLIGHT = 8


def test_demo_runs_on_vllm_and_conserves_rows(tmp_path):
    out = tmp_path / "run"
    # Batches of 4 and 8 requests in flight per engine: each stage actor takes 3 batches at once, so rows of the
    # next batch enter the engine while one drains (the occupancy check below).
    command = [sys.executable, "-m", "engine", "experiment=demo", "data=demo", f"data.limit={ROWS}",
               "model.backend=vllm", "scorer.backend=vllm", f"run.output_dir={out}", "run.progress=false",
               "analysis.report=false", "cluster.batch_size=4", f"model.max_in_flight={IN_FLIGHT}"]
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=1200)
    assert done.returncode == 0, done.stderr[-4000:]
    # vLLM logs (to stdout) its engine arguments once per engine it starts: evolve, respond and score each ran one.
    assert (done.stdout + done.stderr).count("non-default args") >= 3, done.stdout[-4000:]

    summary = json.loads((out / "summary.json").read_text())
    assert summary["rows_in"] == ROWS
    # Occupancy of every vLLM stage is in the summary; the evolver's engine held its target until its last
    # admission (12 rows, 8 at a time: 4 wait in the feeder while the first run, not in Ray Data behind a batch).
    engines = {s["stage"]: s["engine"] for s in summary["stages"] if "engine" in s}
    assert set(engines) >= {"Evolve", "Respond", "Score"}, summary["stages"]
    evolve = engines["Evolve"]
    assert evolve["target"] == IN_FLIGHT and evolve["engines"] == 1
    assert 0 < evolve["mean_running"] <= IN_FLIGHT
    assert evolve["occupancy_before_drain"] > 0.55, evolve  # one batch alone could hold at most 4 of 8
    assert summary["rows_in"] == summary["rows_out"] + summary["rows_rejected"]
    config = yaml.safe_load((out / "config.yaml").read_text())
    assert config["model"]["backend"] == config["scorer"]["backend"] == "vllm"

    rejects = [json.loads(line) for line in (out / "rejects" / "round_1.jsonl").open()]
    assert len(rejects) == summary["rows_rejected"] and all(r["reason"] for r in rejects)
    kept = pq.read_table(out / "data" / "round_1").to_pylist() if summary["rows_out"] else []
    assert len(kept) == summary["rows_out"]
    seen = {r["id"] for r in kept} | {r["id"] for r in rejects}
    assert len(seen) == ROWS  # every row once: kept or rejected with its reason
    scored = [r for r in kept + rejects if r.get("reason", "") in ("", "not_selected")]
    assert scored, "no row reached the scorer"
    for row in kept:
        assert row["evolve_tokens"] > 0 and row["output"].strip()
        assert row["ic_ifd"] > 0 and row["ifd"] > 0
