"""Exports: a round's kept rows as alpaca, ShareGPT and OpenAI-messages JSONL, registered in LLaMA-Factory's
dataset_info.json, loadable with `datasets`; `python -m engine.export` for a finished run."""

import json
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from engine.commands.export import main as export_main
from engine.read.validate import records_from_rows
from engine.write.sinks import split_round, write_dataset_info

REPO = Path(__file__).resolve().parents[2]
ROWS = [
    {"instruction": "Translate to French.", "input": "cat", "output": "chat", "system": "You translate."},
    {"instruction": "Name a colour.", "input": "", "output": "Blue.", "system": ""},
    {"instruction": "Rejected row.", "input": "", "output": "", "system": ""},
]


def finished_run(tmp_path: Path) -> Path:
    """A run dir as the runner leaves it: round 1 split from a ledger shard with one rejected row."""
    batch = records_from_rows(ROWS, "seeds.jsonl")
    batch["status"][2], batch["reason"][2] = "rejected", "empty"
    ledger = tmp_path / "ledger.parquet"
    pq.write_table(pa.table({k: list(v) for k, v in batch.items()}), ledger)
    out = tmp_path / "run"
    split_round([ledger], out, 1)
    write_dataset_info(out, [1], "evol_instruct_tiny")
    (out / "summary.json").write_text(json.dumps({"recipe": "evol_instruct", "model": "tiny"}))
    return out


def llama_factory_view(record: dict, entry: dict) -> tuple[str, list[tuple[str, str]]]:
    """(system, [(role, content)]) of one exported line, read the way a LLaMA-Factory dataset_info entry
    describes it: alpaca columns, or sharegpt with its columns and tags (user and assistant must alternate)."""
    if entry.get("formatting", "alpaca") == "alpaca":
        columns = {"prompt": "instruction", "query": "input", "response": "output", **entry.get("columns", {})}
        user = "\n".join(x for x in (record[columns["prompt"]], record[columns["query"]]) if x)
        return record.get(columns.get("system", ""), "") or "", [("user", user), ("assistant", record["output"])]
    tags, columns = entry["tags"], entry["columns"]
    turns = record[columns["messages"]]
    system = record.get(columns.get("system", ""), "") or ""
    if turns and turns[0][tags["role_tag"]] == tags["system_tag"]:
        system, turns = turns[0][tags["content_tag"]], turns[1:]
    roles = {tags["user_tag"]: "user", tags["assistant_tag"]: "assistant"}
    view = [(roles[t[tags["role_tag"]]], t[tags["content_tag"]]) for t in turns]
    assert [role for role, _ in view] == ["user", "assistant"] * (len(view) // 2) and len(view) % 2 == 0
    return system, view


def test_every_format_is_written_registered_and_loads_in_datasets(tmp_path):
    datasets = pytest.importorskip("datasets")
    out = finished_run(tmp_path)
    info = json.loads((out / "dataset_info.json").read_text())
    assert set(info) == {"evol_instruct_tiny_round_1", "evol_instruct_tiny_round_1_sharegpt",
                         "evol_instruct_tiny_round_1_messages"}
    expected = [("You translate.", [("user", "Translate to French.\ncat"), ("assistant", "chat")]),
                ("", [("user", "Name a colour."), ("assistant", "Blue.")])]
    for name, entry in info.items():
        path = out / entry["file_name"]
        loaded = datasets.load_dataset("json", data_files=str(path), split="train", cache_dir=str(tmp_path / "c"))
        assert loaded.num_rows == 2, name
        views = [llama_factory_view(row, entry) for row in loaded]
        if "formatting" not in entry:  # alpaca: the system prompt is in the line but not registered (see README)
            views[0] = ("You translate.", views[0][1]) if loaded[0]["system"] == "You translate." else views[0]
        assert views == expected, name
    sharegpt = [json.loads(line) for line in (out / "sharegpt" / "round_1.jsonl").open()]
    assert sharegpt[0] == {"conversations": [{"from": "human", "value": "Translate to French.\ncat"},
                                             {"from": "gpt", "value": "chat"}], "system": "You translate."}
    messages = [json.loads(line) for line in (out / "messages" / "round_1.jsonl").open()]
    assert messages[1] == {"messages": [{"role": "user", "content": "Name a colour."},
                                        {"role": "assistant", "content": "Blue."}]}
    assert messages[0]["messages"][0] == {"role": "system", "content": "You translate."}
    alpaca = [json.loads(line) for line in (out / "alpaca" / "round_1.jsonl").open()]
    assert alpaca == [{k: v for k, v in row.items() if v or k != "system"} for row in ROWS[:2]]
    kept = pq.read_table(out / "data" / "round_1").column_names  # the Parquet keeps the lineage
    assert {"seed_id", "parent_id", "source_file", "source_line", "system"} <= set(kept)


def test_export_command_rewrites_a_format_for_a_finished_run(tmp_path, capsys):
    out = finished_run(tmp_path)
    (out / "messages" / "round_1.jsonl").unlink()
    info = json.loads((out / "dataset_info.json").read_text())
    del info["evol_instruct_tiny_round_1_messages"]
    (out / "dataset_info.json").write_text(json.dumps(info))

    assert export_main([str(out), "--format", "messages"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report == {"format": "messages", "round": 1, "rows": 2, "file": str(out / "messages" / "round_1.jsonl")}
    again = json.loads((out / "dataset_info.json").read_text())
    assert again["evol_instruct_tiny_round_1_messages"]["file_name"] == "messages/round_1.jsonl"
    assert len(again) == 3
    lines = (out / "messages" / "round_1.jsonl").read_text().splitlines()
    assert [json.loads(line)["messages"][-1]["content"] for line in lines] == ["chat", "Blue."]

    elsewhere = tmp_path / "sft.jsonl"
    assert export_main([str(out), "--format", "sharegpt", "--round", "1", "--out", str(elsewhere)]) == 0
    assert len(elsewhere.read_text().splitlines()) == 2
    assert export_main([str(out), "--format", "alpaca", "--round", "7"]) == 2
    assert "has no kept data for round 7" in capsys.readouterr().err


def test_export_module_runs_as_a_command(tmp_path):
    out = finished_run(tmp_path)
    done = subprocess.run([sys.executable, "-m", "engine.export", str(out), "--format", "sharegpt"], cwd=REPO,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["rows"] == 2
    bad = subprocess.run([sys.executable, "-m", "engine.export", str(out), "--format", "csv"], cwd=REPO,
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "invalid choice" in bad.stderr
