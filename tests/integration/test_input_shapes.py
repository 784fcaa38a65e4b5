"""Input shapes through `python -m engine` on the tiny model: a ShareGPT file read by `data.format=auto` with its
system prompt carried to every output, a file with an `Instruction` column stopped before any model loads with
the override that works (which then runs), and a run that keeps no row exiting non-zero."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

REPO = Path(__file__).resolve().parents[2]
TINY = ["model=tiny", "scorer=tiny", "recipe.evolve.max_new_tokens=16", "recipe.respond.max_new_tokens=16",
        "run.progress=false", "cluster.num_cpus=2", "cluster.batch_size=4", "analysis.report=false"]

pytestmark = pytest.mark.slow


def engine(out: Path, seeds: Path, *overrides: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    return subprocess.run([sys.executable, "-m", "engine", "data=file", f"data.path={seeds}", f"run.output_dir={out}",
                           *TINY, *overrides], cwd=REPO, env=env, capture_output=True, text=True, timeout=600)


def test_sharegpt_runs_with_no_override_and_keeps_its_system_prompt(tmp_path):
    seeds = tmp_path / "chats.jsonl"
    seeds.write_text("".join(json.dumps({"conversations": [
        {"from": "system", "value": "You are a gardener."},
        {"from": "human", "value": f"Describe step {i} of planting a tree, with one practical tip."},
        {"from": "gpt", "value": "Dig a hole."}]}) + "\n" for i in range(8)))
    out = tmp_path / "out"
    done = engine(out, seeds)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["data_shape"] == {"format": "sharegpt", "fields": {"conversation": "conversations", "id": "id",
                                                                      "system": "system"}}
    assert summary["rows_in"] == 8 and summary["rows_out"] > 0 and summary["rows_conserved"]
    header = json.loads((out / "manifest.jsonl").read_text().splitlines()[0])
    assert header["data_shape"] == summary["data_shape"]
    kept = pq.read_table(out / "data" / "round_1").to_pylist()
    assert {row["system"] for row in kept} == {"You are a gardener."}
    messages = [json.loads(line) for line in (out / "messages" / "round_1.jsonl").open()]
    assert len(messages) == summary["rows_out"]
    assert all(m["messages"][0] == {"role": "system", "content": "You are a gardener."} for m in messages)
    info = json.loads((out / "dataset_info.json").read_text())
    assert {entry["file_name"] for entry in info.values()} == {"alpaca/round_1.jsonl", "sharegpt/round_1.jsonl",
                                                              "messages/round_1.jsonl"}

    # The same output dir with another mapping is refused like any config change.
    refused = engine(out, seeds, "data.fields.system=meta")
    assert refused.returncode == 2
    assert "different field mapping" in refused.stdout + refused.stderr


def test_unreadable_shape_stops_before_any_model_loads_and_the_printed_override_works(tmp_path):
    seeds = tmp_path / "public.jsonl"
    seeds.write_text("".join(json.dumps({"Instruction": f"Explain fact {i} about volcanoes.", "Output": "Lava."})
                             + "\n" for i in range(6)))
    out = tmp_path / "out"
    stopped = engine(out, seeds, "data.format=alpaca")
    message = stopped.stdout + stopped.stderr
    assert stopped.returncode == 2, message[-3000:]
    assert "Columns found: Instruction, Output." in message and "Traceback" not in message
    assert "Started a local Ray" not in message and not (out / "manifest.jsonl").exists()
    override = message.split("this reads them: ")[1].split(" (data.format=auto")[0].split()
    assert override == ["data.format=alpaca", "data.fields.instruction=Instruction", "data.fields.output=Output"]

    done = engine(out, seeds, *override)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert json.loads((out / "summary.json").read_text())["rows_in"] == 6


def test_a_run_that_keeps_no_row_exits_non_zero_and_says_why(tmp_path):
    seeds = tmp_path / "blank.jsonl"
    seeds.write_text("".join(json.dumps({"instruction": "   "}) + "\n" for _ in range(3)))
    out = tmp_path / "out"
    done = engine(out, seeds)
    assert done.returncode == 3, done.stdout[-3000:] + done.stderr[-3000:]
    assert "0 rows out: 3 rows in, 3 rejected (empty_instruction 3)" in done.stdout + done.stderr
    assert len((out / "rejects" / "round_1.jsonl").read_text().splitlines()) == 3  # the outputs are still written
