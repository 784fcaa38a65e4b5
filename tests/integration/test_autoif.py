"""recipe=autoif end to end through a local Ray on the tiny model. The random model cannot write a working
verifier, so every constraint is rejected at cross-validation and phase 3 has nothing to answer: the test checks
what that must still guarantee (every line and constraint accounted for, the pass rates reported). Phase 3 is
covered by the unit tests of its expansion and the Respond stage."""

import json
import os

import pyarrow.parquet as pq

from engine.run.runner import run
from engine.sandbox.isolation import find_bwrap
from engine.stages.autoif.augment import seed_constraints


def test_autoif_phases_account_for_every_line_and_constraint(local_ray, tiny_cfg, tmp_path):
    tiny_cfg.recipe.name = "autoif"
    tiny_cfg.scoring.enabled = False
    tiny_cfg.autoif.augment_calls = 3
    tiny_cfg.autoif.samples_per_instruction = 2
    tiny_cfg.autoif.generate.max_new_tokens = 24
    tiny_cfg.autoif.sandbox.wall_s = 2.0
    tiny_cfg.cluster.batch_size = 8
    tiny_cfg.run.progress = False
    summary = run(tiny_cfg)
    out = tmp_path / "out"

    phase1, phase2 = summary["per_round"][:2]
    assert phase1["rows_in"] == 3 and phase1["rows_out"] + phase1["rows_rejected"] == 3
    seeds = seed_constraints(tiny_cfg.autoif)
    lines = sum(len(row["output"].split("\n")) for row in pq.read_table(out / "data" / "round_1").to_pylist())
    assert phase2["rows_in"] == len(seeds) + lines  # every seed and every generated line is a row of phase 2
    rejects = [json.loads(line) for line in (out / "rejects" / "round_2.jsonl").open()]
    assert len(rejects) == phase2["rows_rejected"]
    assert {r["reason"] for r in rejects} <= {"empty_line", "duplicate_instruction", "nul_character", "no_verification",
                                              "no_executable_function", "no_case_kept", "no_function_kept"}
    assert summary["rows_conserved"]
    rates = summary["autoif"]
    assert rates["augment_lines"] == lines
    assert phase2["counts"]["cv_generations"] == 2 * rates["instructions_in"]
    assert rates["instructions_verified"] == phase2["rows_out"]
    assert len(rates["sandbox_isolation"]) == 1
    if os.geteuid() == 0:  # root here: network, PID and mount isolation (bwrap where it is installed)
        mounts = "bwrap" if find_bwrap() else "mount_namespace"
        assert rates["sandbox_isolation"] == [f"namespace/pid_namespace/{mounts}"]
    if phase2["rows_out"] == 0:
        assert summary["rounds_completed"] == 2  # nothing verified: phase 3 has nothing to answer
