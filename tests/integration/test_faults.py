"""Faults in real processes: a stage actor SIGKILLed mid-run, the driver SIGKILLed and the command rerun, a
corpus of bad input with a poison row, and two runs with one seed. Every input row must end up exactly once in
the output or the rejects."""

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from engine.state.manifest import read_lines
from tests.integration.conftest import RAY, REPO

pytestmark = pytest.mark.slow


def engine_command(out: Path, seeds: Path, *overrides: str) -> list[str]:
    return [sys.executable, "-m", "engine", "data=file", f"data.path={seeds}", f"run.output_dir={out}",
            "run.progress=false", *overrides]


TINY = ("model=tiny", "scorer=tiny", "recipe.evolve.max_new_tokens=24", "recipe.respond.max_new_tokens=24",
        "cluster.batch_size=4", "run.shard_rows=8")


def write_seeds(path: Path, n: int) -> Path:
    rows = [{"instruction": f"Describe step {i} of planting a tree, with one practical tip.", "input": ""}
            for i in range(n)]
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def final_rows(out: Path, round_num: int = 1) -> tuple[list[dict], list[dict]]:
    """Rows of one round's data and rejects."""
    data = pq.read_table(out / "data" / f"round_{round_num}").to_pylist()
    rejects = [json.loads(line) for line in (out / "rejects" / f"round_{round_num}.jsonl").open()]
    return data, rejects


def assert_exactly_once(out: Path, seeds_total: int, rounds: int = 1) -> None:
    """Round 1 holds each seed position once (data or rejects); each later round holds each of the previous
    round's output rows once, as a parent; no id repeats."""
    data, rejects = final_rows(out, 1)
    positions = [row["seed_index"] for row in data] + [row["seed_index"] for row in rejects]
    assert sorted(positions) == list(range(seeds_total))
    ids = [row["id"] for row in data + rejects]
    for round_num in range(2, rounds + 1):
        previous = data
        data, rejects = final_rows(out, round_num)
        assert sorted(row["parent_id"] for row in data + rejects) == sorted(row["id"] for row in previous)
        ids += [row["id"] for row in data + rejects]
    assert len(ids) == len(set(ids))
    summary = json.loads((out / "summary.json").read_text())
    assert summary["rows_in"] == seeds_total and summary["rows_conserved"]


def start_driver(command: list[str], env: dict, log: Path) -> subprocess.Popen:
    return subprocess.Popen(command, cwd=REPO, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT)


def wait_for(predicate, timeout: float, what: str, proc: subprocess.Popen | None = None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        if proc is not None and proc.poll() is not None:
            pytest.fail(f"the driver exited ({proc.returncode}) before {what}")
        time.sleep(0.2)
    pytest.fail(f"timed out waiting for {what}")


def shard_entries(out: Path, round_num: int = 1) -> list[dict]:
    path = out / "manifest.jsonl"
    if not path.exists():
        return []
    return [e for e in read_lines(path) if e.get("kind") == "shard" and e["round"] == round_num]


def alive_stage_actors(head) -> list[dict]:
    """Ray Data's stage actors alive on the head, from Ray's state API (`ray list actors`)."""
    done = subprocess.run(
        [RAY, "list", "actors", "--address", head.dashboard, "--filter", "state=ALIVE", "--detail",
         "--format", "json", "--limit", "1000"],
        env=head.env, capture_output=True, text=True, timeout=60,
    )
    if done.returncode != 0 or not done.stdout.lstrip().startswith("["):  # e.g. "No resource in the cluster"
        return []
    return [a for a in json.loads(done.stdout) if "MapWorker" in (a.get("class_name") or "")]


def test_a_killed_stage_actor_costs_a_retry_not_rows(ray_head, tmp_path):
    seeds = write_seeds(tmp_path / "seeds.jsonl", 48)
    out = tmp_path / "out"
    env = {**ray_head.env, "RAY_ADDRESS": ray_head.gcs}
    driver = start_driver(engine_command(out, seeds, *TINY), env, tmp_path / "driver.log")
    try:
        # An evolve/respond/score actor that has been working for a moment, found through the state API.
        actor = wait_for(lambda: alive_stage_actors(ray_head), 240, "a stage actor to start", driver)[0]
        time.sleep(2)
        import os

        os.kill(int(actor["pid"]), signal.SIGKILL)
        assert driver.wait(timeout=600) == 0, (tmp_path / "driver.log").read_text()[-4000:]
    finally:
        driver.kill()
    assert_exactly_once(out, 48)


def test_a_killed_driver_resumes_without_recomputing_committed_shards(ray_head, tmp_path):
    """Two rounds; the driver is SIGKILLed once round 1 is done and round 2 has committed a shard. The rerun
    leaves round 1 alone, reuses the committed shard, and finishes round 2 with every row exactly once."""
    seeds = write_seeds(tmp_path / "seeds.jsonl", 40)
    out = tmp_path / "out"
    env = {**ray_head.env, "RAY_ADDRESS": ray_head.gcs}
    command = engine_command(out, seeds, *TINY, "rounds=2")

    def round1_done_and_a_round2_shard():
        path = out / "manifest.jsonl"
        entries = read_lines(path) if path.exists() else []
        return any(e["kind"] == "round" for e in entries) and shard_entries(out, 2)

    driver = start_driver(command, env, tmp_path / "first.log")
    try:
        wait_for(round1_done_and_a_round2_shard, 400, "round 1 and a round-2 shard", driver)
        driver.send_signal(signal.SIGKILL)
        driver.wait(timeout=60)
    finally:
        driver.kill()
    before = shard_entries(out, 2)
    round1_rows_out = next(e for e in read_lines(out / "manifest.jsonl") if e["kind"] == "round")["counts"]["rows_out"]
    assert 0 < sum(e["rows"] for e in before) < round1_rows_out, "the kill should land mid-round"
    assert not (out / "summary.json").exists()
    round1_files = {p.name: p.stat().st_mtime_ns for p in (out / "data" / "round_1").glob("*.parquet")}

    rerun = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stdout[-3000:] + rerun.stderr[-3000:]
    assert_exactly_once(out, 40, rounds=2)
    assert {p.name: p.stat().st_mtime_ns for p in (out / "data" / "round_1").glob("*.parquet")} == round1_files
    after = shard_entries(out, 2)
    # The shards journaled before the kill are still the journal's first entries, unchanged (same commit
    # times), and the shards of the round add up to the input once: nothing committed was computed again.
    assert after[: len(before)] == before
    assert sum(e["rows"] for e in {e["file"]: e for e in after}.values()) == round1_rows_out
    summary = json.loads((out / "summary.json").read_text())
    assert summary["per_round"][1]["resumed"]["rows_reused"] == sum(e["rows"] for e in before)

    # The finished run rerun is a no-op; a changed config is refused with a clear message.
    again = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0 and shard_entries(out, 2) == after
    changed = subprocess.run(command + ["recipe.evolve.temperature=0.9"], cwd=REPO, env=env, capture_output=True,
                             text=True, timeout=600)
    assert changed.returncode == 2
    message = changed.stdout + changed.stderr
    assert "different configuration" in message and "run.resume=false" in message
    assert "temperature: 0.9" not in (out / "config.yaml").read_text()  # the refused run left the record alone


GOOD = [f"Explain fact {i} about volcanoes to a curious child." for i in range(18)]


def write_bad_corpus(root: Path) -> dict[str, tuple[str, str]]:
    """A directory of mixed seed files: good rows plus every kind of bad one. Returns {source:line: (reason,
    what)} for each bad row."""
    root.mkdir()
    lines = [json.dumps({"id": f"g{i}", "instruction": text}).encode() for i, text in enumerate(GOOD[:8])]
    bad = {
        b"{not json": "malformed_json",
        json.dumps({"input": "no instruction"}).encode(): "missing_field",
        json.dumps({"instruction": 5}).encode(): "not_a_string",
        json.dumps({"instruction": "   "}).encode(): "empty_instruction",
        json.dumps({"instruction": "Summarise: " + "lava " * 200_000}).encode(): "too_long",  # 1 MB
        b'{"instruction": "Caf\xe9 au lait?"}': "invalid_utf8",
        json.dumps({"instruction": "a\u0000b"}).encode(): "nul_character",
        json.dumps({"id": "g3", "instruction": "A second row with id g3."}).encode(): "duplicate_id",
        json.dumps({"instruction": "POISON: this row makes the evolver raise."}).encode(): "stage_error",
    }
    expected = {}
    for raw, reason in bad.items():
        lines.append(raw)
        expected[f"good.jsonl:{len(lines)}"] = reason
    (root / "good.jsonl").write_bytes(b"\n".join(lines) + b"\n")
    items = [{"instruction": text} for text in GOOD[8:11]] + ["just a string"]
    (root / "more.json").write_text(json.dumps(items, indent=1))
    expected["more.json:"] = "not_an_object"
    import pyarrow as pa

    pq.write_table(pa.table({"instruction": GOOD[11:15], "input": [""] * 4}), root / "rows.parquet")
    (root / "empty.jsonl").write_text("")
    (root / "notes.txt").write_text("not seeds")
    (root / "sub").mkdir()
    (root / "sub" / "deeper.jsonl").write_text("".join(json.dumps({"instruction": t}) + "\n" for t in GOOD[15:]))
    return expected


ECHO = ("model=echo", "model.fail_on=POISON", "scorer=echo", "cluster.batch_size=4")


def test_bad_input_is_rejected_row_by_row_and_good_rows_all_come_out(ray_head, tmp_path):
    expected = write_bad_corpus(tmp_path / "seeds")
    out = tmp_path / "out"
    env = {**ray_head.env, "RAY_ADDRESS": ray_head.gcs}
    done = subprocess.run(engine_command(out, tmp_path / "seeds", *ECHO), cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    data, rejects = final_rows(out)
    assert sorted(row["parent_instruction"] for row in data) == sorted(GOOD)
    assert len(rejects) == len(expected)
    for place, reason in expected.items():
        match = [r for r in rejects if r["detail"].startswith(place) or (place.endswith(":") and place in r["detail"])]
        assert [r["reason"] for r in match] == [reason], (place, match)
    poison = next(r for r in rejects if r["reason"] == "stage_error")
    assert "PoisonRow" in poison["detail"] and poison["rejected_at"] == "evolve"
    summary = json.loads((out / "summary.json").read_text())
    assert summary["rows_in"] == len(GOOD) + len(expected) and summary["rows_conserved"]
    assert [Path(p).name for p in summary["skipped_files"]] == ["notes.txt"]

    # An unsupported file named directly fails fast, with the reason and no traceback.
    refused = subprocess.run(engine_command(tmp_path / "out2", tmp_path / "seeds" / "notes.txt", *ECHO), cwd=REPO,
                             env=env, capture_output=True, text=True, timeout=300)
    assert refused.returncode == 2
    assert "'.txt' is not supported" in refused.stdout + refused.stderr
    assert "Traceback" not in refused.stdout + refused.stderr


def test_the_same_seed_reproduces_the_same_data(local_ray, tiny_cfg, tmp_path):
    from engine.run.runner import run

    tiny_cfg.data.path = str(write_seeds(tmp_path / "seeds.jsonl", 12))
    tiny_cfg.cluster.batch_size = 4
    tiny_cfg.run.progress = False
    outputs = []
    for name in ("a", "b"):
        tiny_cfg.run.output_dir = str(tmp_path / name)
        run(tiny_cfg)
        rows = pq.read_table(tmp_path / name / "data" / "round_1").to_pylist()
        outputs.append(sorted((r["id"], r["instruction"], r["output"], r["ifd"]) for r in rows))
    assert outputs[0] == outputs[1] and len(outputs[0]) > 0
    assert tiny_cfg.recipe.evolve.temperature > 0  # sampled, not greedy: the per-row seeds are what agree

