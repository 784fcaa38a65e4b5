"""run.output_dir as a pyarrow-filesystem URI: a file:// run folder (a shared mount on a cluster) gets every
output, conserves rows, and resumes. Object stores (s3://, gs://) go through the same storage layer; their
manifest, ledger commits and split are tested on pyarrow's mock filesystem in tests/unit/test_storage.py (Ray
tasks cannot see an in-process mock filesystem, so a whole run cannot use one)."""

import json
import os
import subprocess
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from engine.state.manifest import read_lines
from tests.integration.conftest import REPO
from tests.integration.test_faults import assert_exactly_once, engine_command, write_seeds

pytestmark = pytest.mark.slow

ECHO = ("model=echo", "scorer=echo", "cluster.batch_size=4", "cluster.num_cpus=2", "run.shard_rows=8", "rounds=2",
        "analysis.report=false")


def _outputs(out: Path) -> dict[str, list]:
    """Each round's data rows and export and rejects lines, sorted (shards may group rows differently on a rerun)."""
    found = {}
    for round_num in (1, 2):
        rows = pq.read_table(out / "data" / f"round_{round_num}").to_pylist()
        found[f"data/round_{round_num}"] = sorted(json.dumps(row, sort_keys=True, default=str) for row in rows)
        for kind in ("alpaca", "sharegpt", "messages", "rejects"):
            lines = (out / kind / f"round_{round_num}.jsonl").read_text().splitlines()
            found[f"{kind}/round_{round_num}"] = sorted(lines)
    return found


def test_a_file_uri_run_writes_every_output_conserves_rows_and_resumes(tmp_path):
    seeds = write_seeds(tmp_path / "seeds.jsonl", 30)
    out = tmp_path / "out"
    command = engine_command(f"file://{out}", seeds, *ECHO)
    env = {key: value for key, value in os.environ.items() if key != "RAY_ADDRESS"}

    first = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    assert f"outputs in {out}" in first.stdout
    assert_exactly_once(out, 30, rounds=2)
    assert (out / "config.yaml").exists() and (out / ".hydra").is_dir() and (out / "dataset_info.json").exists()
    assert not (REPO / "file:").exists()  # Hydra's own record went to the run folder, not to a folder named "file:"
    outputs = _outputs(out)

    # The driver died after round 1 was journaled and after a round-2 shard was written but not journaled.
    manifest = out / "manifest.jsonl"
    entries = read_lines(manifest)
    cut = next(i for i, e in enumerate(entries) if e["kind"] == "round" and e["round"] == 1) + 1
    manifest.write_text("".join(json.dumps(e) + "\n" for e in entries[:cut]))
    orphan = out / "_ledger" / "round_2" / "part-00000000000000000000.parquet"
    orphan.parent.mkdir(parents=True)
    orphan.write_bytes((out / "data" / "round_1" / "part-00000.parquet").read_bytes())
    round1_times = {p.name: p.stat().st_mtime_ns for p in (out / "data" / "round_1").iterdir()}

    rerun = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stdout[-3000:] + rerun.stderr[-3000:]
    log = rerun.stdout + rerun.stderr
    assert "round 1: complete in the manifest" in log and "removing uncommitted" in log
    assert {p.name: p.stat().st_mtime_ns for p in (out / "data" / "round_1").iterdir()} == round1_times
    assert not orphan.parent.exists()
    assert_exactly_once(out, 30, rounds=2)
    assert _outputs(out) == outputs  # round 2 recomputed into the same rows and lines
