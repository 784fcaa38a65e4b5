"""A real Ray head on loopback with token auth on; the demo submitted with `ray job submit` succeeds."""

import json
import subprocess
import time

import pytest

from tests.integration.conftest import RAY, REPO

pytestmark = pytest.mark.slow


def _submit(command: list[str], env: dict) -> subprocess.CompletedProcess:
    """`ray job submit`, retried while a freshly started head has no job agent yet (nothing was submitted)."""
    deadline = time.monotonic() + 120
    while True:
        done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
        if "No available agent to submit job" not in done.stderr + done.stdout or time.monotonic() > deadline:
            return done
        time.sleep(3)


def test_demo_job_succeeds_under_token_auth(ray_head, tmp_path):
    address, env = ray_head.dashboard, ray_head.env
    out = tmp_path / "job-out"
    submit = [
        RAY, "job", "submit", "--address", address, "--working-dir", ".",
        "--runtime-env", "jobs/runtime_env.yaml", "--",
        "python", "-m", "engine", "data=demo", "model=tiny", "scorer=tiny", "select.fraction=0.5", "recipe.evolve.max_new_tokens=16",
        "recipe.respond.max_new_tokens=16", f"run.output_dir={out}", "run.progress=false",
    ]
    done = _submit(submit, env)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "succeeded" in done.stdout + done.stderr

    summary = json.loads((out / "summary.json").read_text())
    assert summary["rows_in"] == 60
    assert summary["rows_in"] == summary["rows_out"] + summary["rows_rejected"]
    assert list((out / "data" / "round_1").glob("*.parquet"))
    assert (out / "alpaca" / "round_1.jsonl").exists() and (out / "config.yaml").exists()

    # Auth stays on: the same submission without the token is refused.
    no_token = {k: v for k, v in env.items() if not k.startswith("RAY_AUTH")}
    refused = _submit(submit, no_token)
    assert refused.returncode != 0
    assert "Authentication" in refused.stdout + refused.stderr
