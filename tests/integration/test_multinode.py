"""Losing a worker node mid-round, on a three-node Ray cluster on this machine (multinode_fixture.py).

The stage actors are pinned to node_b (`+cluster.actor_resources.node_b=1`). Once a shard has committed, node_b
is killed (raylet, object store, actors, and the blocks it held) and a replacement node offering node_b joins,
as an autoscaler or a restarted spot instance would: without it the pinned actors could never be placed again
and the run would wait forever. The run then either finishes on the new node, or fails with a clear message
and the same command finishes it. Either way every input row is in the output exactly once, the shards
committed before the loss are not computed again, and summary.json says what a rerun reused."""

import json
import subprocess
import time
from pathlib import Path

import pytest

from tests.integration.conftest import REPO
from tests.integration.multinode_fixture import multinode  # noqa: F401 (the fixture)
from tests.integration.test_faults import (
    assert_exactly_once,
    engine_command,
    shard_entries,
    start_driver,
    wait_for,
    write_seeds,
)

pytestmark = pytest.mark.slow

ROUND_TIMEOUT_S = 150  # one run of a round on 2 cores, with a node lost; a hang fails the test here
PIN = "+cluster.actor_resources.node_b=1"  # the `+` adds a key to the empty map
# Small batches and shards: the round lasts long enough to land the kill between its first and last commit.
ECHO = ("model=echo", "scorer=echo", "cluster.batch_size=8", "run.shard_rows=40")
TINY = ("model=tiny", "scorer=tiny", "recipe.evolve.max_new_tokens=16", "recipe.respond.max_new_tokens=16",
        "cluster.batch_size=4", "run.shard_rows=8")


def committed_rows(out: Path) -> int:
    return sum(e["rows"] for e in {e["file"]: e for e in shard_entries(out)}.values())


def finish_watching(driver: subprocess.Popen, log: Path, multinode) -> tuple[int, int]:
    """Wait for the driver within the round's time bound, watching the replacement node: returns the exit code
    and the most stage actors seen on it at once. A driver still running at the bound fails the test."""
    deadline, most = time.monotonic() + ROUND_TIMEOUT_S, 0
    while driver.poll() is None:
        if time.monotonic() > deadline:
            driver.kill()
            pytest.fail(f"the run neither finished nor failed within {ROUND_TIMEOUT_S} s of the node loss: "
                        + log.read_text()[-3000:])
        most = max(most, multinode.stage_actors_on("node_b"))
        time.sleep(0.2)
    return driver.returncode, most


@pytest.mark.parametrize(("backend", "rows", "overrides"), [("echo", 800, ECHO), ("tiny", 40, TINY)])
def test_losing_the_stage_node_mid_round_loses_and_duplicates_no_row(multinode, tmp_path, backend, rows, overrides):
    seeds = write_seeds(tmp_path / "seeds.jsonl", rows)
    out = tmp_path / "out"
    command = engine_command(out, seeds, *overrides, PIN)
    log = tmp_path / "first.log"
    driver = start_driver(command, multinode.env, log)
    try:
        # The stage actors run on node_b and nowhere else, and the round has committed a shard.
        wait_for(lambda: multinode.stage_actors_on("node_b") >= 1, 180, "a stage actor on node_b", driver)
        wait_for(lambda: shard_entries(out), 180, "the first committed shard", driver)
        elsewhere = {name: multinode.stage_actors_on(name) for name in ("head", "node_a")}
        assert elsewhere == {"head": 0, "node_a": 0}, f"{PIN} did not pin the stage actors: {elsewhere}"
        multinode.kill_worker("node_b")
        before = shard_entries(out)
        assert 0 < committed_rows(out) < rows, "the kill should land mid-round"
        multinode.add_worker("node_b")  # the replacement: the only place the stage actors can go now
        first_rc, actors_on_replacement = finish_watching(driver, log, multinode)
    finally:
        driver.kill()
        driver.wait(timeout=30)

    if first_rc == 0:
        # It finished on the replacement node (a node added mid-run is used): nothing to resume.
        assert actors_on_replacement >= 1
        reused = {"shards_reused": 0, "rows_reused": 0}
    else:
        # Failing is allowed, silently is not: the driver's last words name the error; the same command finishes.
        last = [line for line in log.read_text().splitlines() if line.strip()][-5:]
        assert any("Error" in line or "error" in line for line in last), "\n".join(last)
        rerun = subprocess.run(command, cwd=REPO, env=multinode.env, capture_output=True, text=True,
                               timeout=ROUND_TIMEOUT_S)
        assert rerun.returncode == 0, rerun.stdout[-3000:] + rerun.stderr[-3000:]
        reused = None

    assert_exactly_once(out, rows)
    after = shard_entries(out)
    # The shards journaled before the loss are still the journal's first entries, unchanged, and the round's
    # shards add up to the input once: nothing committed was computed again.
    assert after[: len(before)] == before
    assert committed_rows(out) == rows
    summary = json.loads((out / "summary.json").read_text())
    if reused is None:  # the rerun skipped what the first run had committed, and says so
        assert summary["resumed"]["shards_reused"] >= len(before)
        assert summary["resumed"]["rows_reused"] >= sum(e["rows"] for e in before)
    else:
        assert summary["resumed"] == reused
        # and the summary says Ray replaced the lost stage actors (each ran batches before and after the loss)
        assert summary["retried"]["stage_actors_replaced"], summary["retried"]


def test_a_run_stopped_after_losing_its_node_resumes_from_its_committed_shards(multinode, tmp_path):
    """No replacement this time: the pinned actors have nowhere to go, so the round stalls (Ray waits for a node
    offering node_b) until the job is stopped, here by SIGKILL. Once a node_b joins, the same command finishes
    the round from the shards committed before the loss and says so in summary.json."""
    rows = 800
    seeds = write_seeds(tmp_path / "seeds.jsonl", rows)
    out = tmp_path / "out"
    command = engine_command(out, seeds, *ECHO, PIN)
    log = tmp_path / "first.log"
    driver = start_driver(command, multinode.env, log)
    try:
        wait_for(lambda: shard_entries(out), 180, "the first committed shard", driver)
        multinode.kill_worker("node_b")
        # Blocks already past the stages may still commit; then nothing moves and the driver waits.
        quiet_since, seen = time.monotonic(), len(shard_entries(out))
        deadline = time.monotonic() + 90
        while time.monotonic() - quiet_since < 10 and driver.poll() is None:
            assert time.monotonic() < deadline, "shards kept committing with the stage node gone"
            if len(shard_entries(out)) != seen:
                quiet_since, seen = time.monotonic(), len(shard_entries(out))
            time.sleep(0.5)
        stalled = driver.poll() is None
        driver.kill()
        driver.wait(timeout=30)
    finally:
        driver.kill()
    if not stalled:  # it gave up on its own: with a message, not silently
        last = [line for line in log.read_text().splitlines() if line.strip()][-5:]
        assert driver.returncode != 0 and any("rror" in line for line in last), "\n".join(last)
    before = shard_entries(out)
    assert 0 < committed_rows(out) < rows and not (out / "summary.json").exists()

    multinode.add_worker("node_b")
    rerun = subprocess.run(command, cwd=REPO, env=multinode.env, capture_output=True, text=True,
                           timeout=ROUND_TIMEOUT_S)
    assert rerun.returncode == 0, rerun.stdout[-3000:] + rerun.stderr[-3000:]
    assert_exactly_once(out, rows)
    assert shard_entries(out)[: len(before)] == before
    assert committed_rows(out) == rows
    reused = {e["file"]: e["rows"] for e in before}
    summary = json.loads((out / "summary.json").read_text())
    assert summary["resumed"] == {"shards_reused": len(reused), "rows_reused": sum(reused.values())}
