"""The evolver comparison's join: every seed of either run kept, lineage ids shared, rejections with reasons."""

import json
import math

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from engine.commands.compare import check_comparison, evolver_config, join_counts, join_sides, lineage_id, load_side
from engine.config import Config, ConfigError, ModelConfig, config_hash

TINY = ModelConfig(name="tiny", embedded="tiny")
WIDE = ModelConfig(name="tiny_wide", embedded="tiny_wide")


def side(rows: list[dict]) -> pa.Table:
    """A per-seed side table as load_side returns it."""
    full = []
    for row in rows:
        kept = row["status"] == "ok"
        full.append({"seed_id": row["seed_id"], "id": row["id"], "seed_instruction": row.get("seed", "seed text"),
                     "input": row.get("input", ""), "status": row["status"], "reason": row.get("reason", ""),
                     "round": row.get("round", 1), "instruction": row.get("instruction", "") if kept else "",
                     "output": row.get("output", "") if kept else "", "method": "deepen",
                     "ic_ifd": row.get("ic_ifd") if kept else None, "ifd": row.get("ifd") if kept else None})
    return pa.Table.from_pylist(full)


def test_a_row_one_evolver_rejected_stays_in_the_join_with_its_reason():
    slm = side([
        {"seed_id": "s1", "id": "s1.r1", "status": "ok", "instruction": "slm q1", "output": "slm a1", "ic_ifd": 0.3,
         "ifd": 0.9},
        {"seed_id": "s2", "id": "s2.r1", "status": "ok", "instruction": "slm q2", "output": "slm a2", "ic_ifd": 0.4,
         "ifd": 0.8},
    ])
    llm = side([
        {"seed_id": "s1", "id": "s1.r1", "status": "ok", "instruction": "llm q1", "output": "llm a1", "ic_ifd": 0.2,
         "ifd": 0.7},
        {"seed_id": "s2", "id": "s2.r1", "status": "rejected", "reason": "copied_instruction"},
    ])
    joined = join_sides({"slm": slm, "llm": llm}, rounds=1).to_pylist()

    assert [row["seed_id"] for row in joined] == ["s1", "s2"]
    assert [row["id"] for row in joined] == ["s1.r1", "s2.r1"]
    first, second = joined
    assert (first["instruction_slm"], first["instruction_llm"]) == ("slm q1", "llm q1")
    assert (first["ic_ifd_slm"], first["ic_ifd_llm"], first["ifd_llm"]) == (0.3, 0.2, 0.7)
    assert second["status_slm"] == "ok" and second["output_slm"] == "slm a2"
    assert second["status_llm"] == "rejected" and second["reason_llm"] == "copied_instruction"
    assert second["instruction_llm"] == "" and second["output_llm"] == "" and second["ic_ifd_llm"] is None

    counts = join_counts(join_sides({"slm": slm, "llm": llm}, rounds=1), ["slm", "llm"])
    assert counts["seeds"] == 2 and counts["kept_by_all"] == 1 and counts["kept_by_none"] == 0
    assert counts["kept_only_by"] == {"slm": 1, "llm": 0}
    assert counts["per_evolver"]["llm"] == {"ok": 1, "rejected": 1, "absent": 0}


def test_a_seed_missing_from_one_side_is_marked_absent_not_dropped():
    slm = side([{"seed_id": "s1", "id": "s1.r1.r2", "status": "ok", "instruction": "q", "round": 2},
                {"seed_id": "s3", "id": "s3.r1", "status": "rejected", "reason": "empty", "round": 1}])
    llm = side([{"seed_id": "s1", "id": "s1.r1.r2", "status": "ok", "instruction": "q'", "round": 2}])
    joined = join_sides({"slm": slm, "llm": llm}, rounds=2).to_pylist()

    assert [row["seed_id"] for row in joined] == ["s1", "s3"]
    assert joined[1]["id"] == "s3.r1.r2"  # the final lineage id, whatever round the row stopped in
    assert joined[1]["round_slm"] == 1 and joined[1]["reason_slm"] == "empty"
    assert joined[1]["status_llm"] == "absent" and "llm" in joined[1]["reason_llm"]
    assert join_counts(join_sides({"slm": slm, "llm": llm}, rounds=2), ["slm", "llm"])["kept_by_none"] == 1


def test_kept_rows_with_different_lineage_ids_are_an_error():
    slm = side([{"seed_id": "s1", "id": "s1.r1", "status": "ok"}])
    llm = side([{"seed_id": "s1", "id": "other.r1", "status": "ok"}])
    with pytest.raises(ValueError, match="lineages differ"):
        join_sides({"slm": slm, "llm": llm}, rounds=1)


def test_lineage_id_follows_the_evolved_row_id_scheme():
    assert lineage_id("s0000003-abc", 3) == "s0000003-abc.r1.r2.r3"


def _record(seed_id: str, row_id: str, round_num: int, **fields) -> dict:
    return {"seed_id": seed_id, "id": row_id, "round": round_num, "input": "", "output": "", "method": "m",
            "instruction": "", "parent_instruction": "", "status": "ok", "reason": "", **fields}


def _write_run(run_dir, data: dict[int, list[dict]], rejects: dict[int, list[dict]]) -> None:
    for round_num, rows in data.items():
        (run_dir / "data" / f"round_{round_num}").mkdir(parents=True)
        pq.write_table(pa.Table.from_pylist(rows), run_dir / "data" / f"round_{round_num}" / "part-00000.parquet")
    (run_dir / "rejects").mkdir(parents=True)
    for round_num, rows in rejects.items():
        (run_dir / "rejects" / f"round_{round_num}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


def test_load_side_reads_final_rows_and_every_rejection_with_the_seed_instruction(tmp_path):
    round1 = [_record("s0", "s0.r1", 1, instruction="evolved 0", parent_instruction="seed 0"),
              _record("s1", "s1.r1", 1, instruction="evolved 1", parent_instruction="seed 1")]
    round2 = [_record("s0", "s0.r1.r2", 2, instruction="twice 0", output="answer", parent_instruction="evolved 0",
                      ic_ifd=0.5, ifd=float("nan"))]
    rejects = {
        1: [_record("s2", "s2", 0, instruction="seed 2", status="rejected", reason="too_long"),
            _record("s3", "s3.r1", 1, instruction="bad", parent_instruction="seed 3", status="rejected",
                    reason="copied_instruction")],
        2: [_record("s1", "s1.r1.r2", 2, instruction="twice 1", parent_instruction="evolved 1", status="rejected",
                    reason="not_selected")],
    }
    _write_run(tmp_path, {1: round1, 2: round2}, rejects)
    summary = {"rows_in": 4, "per_round": [{"round": 1}, {"round": 2}]}

    rows = {row["seed_id"]: row for row in load_side(tmp_path, summary).to_pylist()}

    assert set(rows) == {"s0", "s1", "s2", "s3"}
    assert {k: rows["s0"][k] for k in ("status", "round", "instruction", "output", "ic_ifd")} == {
        "status": "ok", "round": 2, "instruction": "twice 0", "output": "answer", "ic_ifd": 0.5}
    assert math.isnan(rows["s0"]["ifd"])
    assert (rows["s1"]["status"], rows["s1"]["reason"], rows["s1"]["round"]) == ("rejected", "not_selected", 2)
    assert rows["s1"]["instruction"] == ""  # a rejected side is empty; its reason says why
    assert (rows["s2"]["reason"], rows["s3"]["reason"]) == ("too_long", "copied_instruction")
    assert {k: rows[k]["seed_instruction"] for k in rows} == {"s0": "seed 0", "s1": "seed 1", "s2": "seed 2",
                                                              "s3": "seed 3"}

    with pytest.raises(ValueError, match="5 seed rows went in"):
        load_side(tmp_path, {**summary, "rows_in": 5})


def test_load_side_refuses_a_seed_counted_twice(tmp_path):
    row = _record("s0", "s0.r1", 1, parent_instruction="seed")
    _write_run(tmp_path, {1: [row]}, {1: [{**row, "status": "rejected", "reason": "empty"}]})
    with pytest.raises(ValueError, match="appears twice"):
        load_side(tmp_path, {"rows_in": 1, "per_round": [{"round": 1}]})


def test_check_comparison_names_what_to_change():
    cfg = Config()
    cfg.compare.evolvers = {"slm": TINY}
    with pytest.raises(ConfigError, match="two or more"):
        check_comparison(cfg)
    cfg.compare.evolvers = {"slm": TINY, "side_by_side": WIDE}
    with pytest.raises(ConfigError, match="compare.evolvers.side_by_side"):
        check_comparison(cfg)
    cfg.compare.evolvers = {"slm": TINY, "llm": WIDE}
    cfg.recipe.name = "autoif"
    with pytest.raises(ConfigError, match="recipe=autoif"):
        check_comparison(cfg)
    cfg.recipe.name = "evol_instruct"
    check_comparison(cfg)


def test_each_evolver_runs_into_its_own_directory_with_its_own_config_hash(tmp_path):
    cfg = Config()
    cfg.run.output_dir = str(tmp_path)
    cfg.compare.evolvers = {"slm": TINY, "llm": WIDE}
    slm, llm = evolver_config(cfg, "slm", TINY), evolver_config(cfg, "llm", WIDE)

    assert (slm.run.output_dir, llm.run.output_dir) == (str(tmp_path / "slm"), str(tmp_path / "llm"))
    assert (slm.model.name, llm.model.name) == ("tiny", "tiny_wide")
    assert slm.compare.evolvers == {} and cfg.compare.evolvers.keys() == {"slm", "llm"}
    assert config_hash(slm) != config_hash(llm)
    # The same evolver run alone (no comparison) hashes the same: its directory resumes either way.
    alone = Config(model=TINY)
    alone.run.output_dir = str(tmp_path / "slm")
    assert config_hash(alone) == config_hash(slm)
