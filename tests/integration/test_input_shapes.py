"""Input shapes through `python -m engine` on the tiny model: a ShareGPT file read by `data.format=auto` with its
system prompt carried to every output, a file with an `Instruction` column stopped before any model loads with
the override that works (which then runs), and a run that keeps no row exiting non-zero. On the echo models (the
rows' path, not their text, is under test): OpenAI content-part lists with an image row rejected, a LIMA-shaped
string `conversations` column through auto, and a file auto cannot decide stopped with one exact override per
column."""

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

ECHO = ["model=echo", "scorer=echo", "run.progress=false", "cluster.num_cpus=2", "cluster.batch_size=4",
        "analysis.report=false"]

pytestmark = pytest.mark.slow


def engine(out: Path, seeds: Path, *overrides: str, models: list[str] = TINY) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    return subprocess.run([sys.executable, "-m", "engine", "data=file", f"data.path={seeds}", f"run.output_dir={out}",
                           *models, *overrides], cwd=REPO, env=env, capture_output=True, text=True, timeout=600)


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


def test_content_part_lists_run_and_an_image_row_goes_to_rejects_with_its_reason(tmp_path):
    def parts(*texts):
        return [{"type": "text", "text" if i % 2 == 0 else "value": text} for i, text in enumerate(texts)]

    rows = [{"messages": [{"role": "system", "content": parts("You are a geologist.")},
                          {"role": "user", "content": parts(f"Read rock sample {i}.", "Name the mineral.")},
                          {"role": "assistant", "content": parts("Quartz.")}]} for i in range(5)]
    rows.insert(2, {"messages": [{"role": "user", "content": [
        {"type": "text", "text": "What rock is in this photo?"},
        {"type": "image_url", "image_url": {"url": "https://example.com/rock.jpg"}}]}]})
    seeds = tmp_path / "parts.jsonl"
    seeds.write_text("".join(json.dumps(row) + "\n" for row in rows))
    out = tmp_path / "out"
    done = engine(out, seeds, "data.format=auto", models=ECHO)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["data_shape"]["format"] == "messages" and summary["rows_in"] == 6 and summary["rows_conserved"]
    rejects = [json.loads(line) for line in (out / "rejects" / "round_1.jsonl").open()]
    (image,) = [r for r in rejects if r["reason"] == "non_text_content"]
    assert image["source_line"] == 3 and image["rejected_at"] == "read"
    assert image["detail"] == ("parts.jsonl:3: part 2 of 'content' of turn 1 in 'messages' is of type 'image_url'; "
                               "only text parts (text, input_text, output_text) are read")
    kept = pq.read_table(out / "data" / "round_1").to_pylist()
    assert kept and {row["system"] for row in kept} == {"You are a geologist."}
    seeds_read = {f"Read rock sample {i}.\nName the mineral." for i in range(5)}  # text parts joined by "\n"
    assert {row["parent_instruction"] for row in kept} <= seeds_read


def test_a_string_conversations_column_runs_through_auto(tmp_path):
    seeds = tmp_path / "lima_test.jsonl"
    seeds.write_text("".join(json.dumps({"conversations": f"Write a short note about lake {i}.", "source": "lima"})
                             + "\n" for i in range(6)))
    out = tmp_path / "out"
    done = engine(out, seeds, "data.format=auto", models=ECHO)
    log = done.stdout + done.stderr
    assert done.returncode == 0, log[-3000:]
    assert "'conversations' holds a string, not a list of turns: it is the instruction" in log
    summary = json.loads((out / "summary.json").read_text())
    assert summary["data_shape"]["format"] == "alpaca"
    assert summary["data_shape"]["fields"]["instruction"] == "conversations"
    assert summary["rows_in"] == 6 and summary["rows_conserved"]
    rejects = out / "rejects" / "round_1.jsonl"
    rows_rejected = [json.loads(line) for line in rejects.open()] if rejects.exists() else []
    assert [r for r in rows_rejected if r["rejected_at"] == "read"] == []  # every row read as an instruction
    header = json.loads((out / "manifest.jsonl").read_text().splitlines()[0])
    assert header["data_shape"] == summary["data_shape"]


def test_a_file_auto_cannot_decide_exits_2_with_the_exact_override_for_each_column(tmp_path):
    seeds = tmp_path / "undecided.jsonl"
    seeds.write_text("".join(json.dumps({"body": f"Explain tide table {i}.", "headline": f"Tides {i}", "stars": 4})
                             + "\n" for i in range(5)))
    out = tmp_path / "out"
    stopped = engine(out, seeds, "data.format=auto", models=ECHO)
    message = stopped.stdout + stopped.stderr
    assert stopped.returncode == 2, message[-3000:]
    assert "Traceback" not in message and "Started a local Ray" not in message
    assert not (out / "manifest.jsonl").exists()
    assert ("each checked against the first rows: data.format=alpaca data.fields.instruction=body (reads 5 of 5); "
            "data.format=alpaca data.fields.instruction=headline (reads 5 of 5).") in message
