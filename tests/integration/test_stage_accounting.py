"""Per-stage accounting end to end: the actors' own timings add up to the row accounting, fractions stay in
[0, 1], outputs never carry the timing column, and a resumed round keeps its stages."""

import json
import logging
import re

import pyarrow.parquet as pq
import pytest

from engine.run.accounting import STATS_COLUMN
from engine.run.runner import run


def _seeds(tmp_path, n):
    seeds = tmp_path / "seeds.jsonl"
    lines = [json.dumps({"instruction": f"Describe item {i} of the list in detail.", "input": ""}) for i in range(n)]
    lines.insert(3, "{not json")
    seeds.write_text("\n".join(lines) + "\n")
    return seeds


def test_stage_accounting_adds_up_over_two_rounds(local_ray, tiny_cfg, tmp_path):
    tiny_cfg.data.path = str(_seeds(tmp_path, 20))
    tiny_cfg.rounds = 2
    tiny_cfg.cluster.batch_size = 8
    tiny_cfg.run.cost.cpu_hour_usd = 2.0
    summary = run(tiny_cfg)
    stages = summary["stages"]
    for round_counts in summary["per_round"]:
        mine = [s for s in stages if s["round"] == round_counts["round"]]
        assert [s["stage"] for s in mine][:3] == ["Evolve", "Eliminate", "Respond"]
        for s in mine:  # every row of the round passed every stage (one-to-one), ok or carried as rejected
            assert s["rows_in"] == s["rows_out"] == round_counts["rows_in"]
            assert s["kind"] == "actor_pool" and s["actors"] >= 1
            assert 0.0 <= s["busy_fraction"] <= 1.0
            assert 0.0 < s["busy_s"] <= s["lifetime_s"] and s["load_s"] <= s["lifetime_s"]
            assert s["span_s"] <= s["lifetime_s"] + 1e-6
            rejected_here = round_counts["rejected_by_stage"].get(s["stage"].lower(), 0)
            assert s["rejected"] == rejected_here
        # ok rows lost along the stages + rows rejected on reading = the round's rejections
        read = round_counts["rejected_by_stage"].get("read", 0)
        assert sum(s["rejected"] for s in mine) + read == round_counts["rows_rejected"]
        assert mine[0]["ok_in"] == round_counts["rows_in"] - read
        evolve = mine[0]
        assert evolve["generated_tokens"] == round_counts["tokens"]["evolve_tokens"]
        assert evolve["prompt_tokens"] == round_counts["tokens"]["evolve_prompt_tokens"]
        assert evolve["generated_tokens_per_s"] > 0
    t = summary["throughput"]
    assert t["bottleneck"]["stage"] in {s["stage"] for s in stages}
    assert t["accelerator_hours"] == 0.0 and t["node_hours"] > 0
    assert t["cost"]["total_usd"] == pytest.approx(t["node_hours"] * 2.0, abs=1e-5)
    assert t["cost"]["per_1k_kept_rows_usd"] > 0
    assert t["extrapolation_1m_seeds"]["hours"] > 0 and "extrapolation" in t["extrapolation_1m_seeds"]["label"]
    out = tmp_path / "out"
    for path in (out / "data").rglob("*.parquet"):
        assert STATS_COLUMN not in pq.read_schema(path).names
    for line in (out / "rejects" / "round_1.jsonl").open():
        assert STATS_COLUMN not in json.loads(line)

    # A rerun finds both rounds in the manifest: the same stage figures, read back, not recomputed.
    again = run(tiny_cfg)
    assert again["stages"] == stages


def test_fused_stages_make_the_same_rows_with_one_load_per_model(local_ray, tiny_cfg, tmp_path):
    tiny_cfg.data.path = str(_seeds(tmp_path, 10))
    tiny_cfg.cluster.batch_size = 4
    tiny_cfg.run.progress = "off"
    tiny_cfg.cluster.fuse_stages = "false"  # a pool per model stage (auto fuses them on CPUs)
    split = run(tiny_cfg)
    assert split["stage_pools"] == {"1": "per model stage"}
    tiny_cfg.cluster.fuse_stages = "true"
    tiny_cfg.run.output_dir = str(tmp_path / "fused")
    fused = run(tiny_cfg)

    def rows(out):
        return sorted(pq.read_table(out / "data" / "round_1").to_pylist(), key=lambda r: r["id"])

    assert rows(tmp_path / "fused") == rows(tmp_path / "out") and fused["rows_out"] == split["rows_out"]
    loads = {s["stage"]: s["load_s"] for s in fused["stages"]}
    # Evolve loads the model; Respond and Score (the same tiny config) find it loaded in the same actor
    assert loads["Respond"] < loads["Evolve"] / 5 and loads["Score"] < loads["Evolve"] / 5
    assert {s["kind"] for s in fused["stages"]} == {"actor_pool"}
    assert fused["stage_pools"] == {"1": "fused"}


def test_progress_logs_one_line_per_stage(local_ray, tiny_cfg, tmp_path, caplog):
    tiny_cfg.data.path = str(_seeds(tmp_path, 8))
    tiny_cfg.cluster.batch_size = 4
    tiny_cfg.run.progress = "line"
    tiny_cfg.run.progress_interval_s = 0.2
    with caplog.at_level(logging.INFO, logger="engine.run.runner"):
        run(tiny_cfg)
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("round 1 ")]
    stages = {line.split()[2].rstrip(":") for line in lines if "rows/s" in line}
    assert {"Evolve", "Respond"} <= stages
    assert all(re.search(r": \d+/9 rows \(\d+%\), [\d.]+ rows/s, ETA", line) for line in lines if "rows/s" in line)


def test_the_scorer_runs_with_its_own_batch_size(local_ray, tiny_cfg, tmp_path):
    """stages.score.* size the scorer apart from the generators: its batches are its own size, while Evolve and
    Respond keep the cluster's batch and single actor (which actors of a pool get work is Ray Data's choice, so
    the pool size itself is checked on the map_batches call in tests/unit/test_pipeline.py)."""
    tiny_cfg.data.path = str(_seeds(tmp_path, 12))
    tiny_cfg.cluster.batch_size = 4
    tiny_cfg.stages.score.pool_size, tiny_cfg.stages.score.batch_size = 2, 2
    summary = run(tiny_cfg)
    by_stage = {s["stage"]: s for s in summary["stages"]}
    assert by_stage["Evolve"]["actors"] == by_stage["Respond"]["actors"] == 1
    assert 1 <= by_stage["Score"]["actors"] <= 2
    rows = summary["rows_in"]  # 13: the bad line is carried as a rejected row
    assert by_stage["Score"]["rows_in"] == rows and by_stage["Score"]["batches"] >= -(-rows // 2)
    assert by_stage["Evolve"]["batches"] <= -(-rows // 4) + 1


def test_a_round_in_segments_on_ray_keeps_every_row_and_counts_each_pool_once(local_ray, tiny_cfg, tmp_path):
    tiny_cfg.data.path = str(_seeds(tmp_path, 20))  # 21 positions: 20 rows and one unreadable line
    tiny_cfg.cluster.batch_size = 4
    tiny_cfg.run.progress = "off"
    tiny_cfg.run.segment_rows = None
    whole = run(tiny_cfg)
    tiny_cfg.run.segment_rows = 8
    tiny_cfg.run.output_dir = str(tmp_path / "segmented")
    segmented = run(tiny_cfg)

    def rows(out):
        return sorted(pq.read_table(out / "data" / "round_1").to_pylist(), key=lambda r: r["id"])

    assert segmented["rows_conserved"] and segmented["rows_in"] == 21
    assert rows(tmp_path / "segmented") == rows(tmp_path / "out")  # the same rows as one execution
    evolve = next(s for s in segmented["stages"] if s["stage"] == "Evolve")
    assert (evolve["executions"], evolve["concurrent_actors"], evolve["rows_in"]) == (3, 1, 21)
    assert segmented["retried"]["stage_actors_replaced"] == {}  # a pool per segment is not a restart
    assert whole["stages"][0]["executions"] == 1
