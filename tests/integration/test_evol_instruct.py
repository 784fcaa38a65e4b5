"""Evol-Instruct end to end through a local Ray on the tiny model: lineage, rotation and rows conserved."""

import json

import pyarrow.parquet as pq

from engine.prompts.evol import method_order, pick_method
from engine.run.runner import run


def _rows(path):
    return pq.read_table(path).to_pylist()


def test_two_rounds_keep_lineage_and_conserve_rows(local_ray, tiny_cfg, tmp_path):
    seeds = tmp_path / "seeds.jsonl"
    lines = [json.dumps({"instruction": f"Describe item {i} of the list in detail.", "input": "", "output": ""})
             for i in range(44)]
    lines.insert(5, "{not json")
    lines.insert(9, json.dumps({"instruction": "   ", "input": ""}))
    seeds.write_text("\n".join(lines) + "\n")
    tiny_cfg.data.path = str(seeds)
    tiny_cfg.rounds = 2
    tiny_cfg.cluster.batch_size = 8
    summary = run(tiny_cfg)
    out = tmp_path / "out"

    assert summary["rows_in"] == 46
    assert summary["rows_in"] == summary["rows_out"] + summary["rows_rejected"]
    assert summary["rejected_by_reason"]["malformed_json"] == 1
    assert summary["rejected_by_reason"]["empty_instruction"] == 1
    round1, round2 = summary["per_round"]
    assert round2["rows_in"] == round1["rows_out"]

    r1 = _rows(out / "data" / "round_1")
    r2 = _rows(out / "data" / "round_2")
    assert len(r1) == round1["rows_out"] > 0 and len(r2) == round2["rows_out"] > 0
    r1_ids = {row["id"] for row in r1}
    methods = method_order(True)
    for row in r2:
        assert row["parent_id"] in r1_ids
        assert row["round"] == 2
        assert row["method"] == pick_method(methods, row["seed_index"], 2)
    for row in r1:
        assert row["method"] == pick_method(methods, row["seed_index"], 1)
        assert row["parent_id"] == row["seed_id"]
    assert len({row["id"] for row in r1 + r2}) == len(r1) + len(r2)

    rejects = [json.loads(line) for r in (1, 2) for line in (out / "rejects" / f"round_{r}.jsonl").open()]
    assert len(rejects) == summary["rows_rejected"]
    bad_json = next(r for r in rejects if r["reason"] == "malformed_json")
    assert "seeds.jsonl:6" in bad_json["detail"]
    alpaca = [json.loads(line) for line in (out / "alpaca" / "round_2.jsonl").open()]
    assert len(alpaca) == len(r2) and set(alpaca[0]) == {"instruction", "input", "output"}
    assert json.loads((out / "summary.json").read_text())["rows_out"] == summary["rows_out"]
