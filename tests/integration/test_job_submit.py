"""A real Ray head on loopback with token auth on; the demo submitted with `ray job submit` succeeds."""

import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]
RAY = str(Path(sys.executable).with_name("ray"))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture()
def ray_head(tmp_path):
    """`ray start --head` with token authentication, on loopback ports, torn down afterwards."""
    token = tmp_path / "auth_token"
    token.write_text(secrets.token_hex(32))
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"  # the job runs `python` from this venv
    env = {**os.environ, "PATH": path, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(token)}
    env.pop("RAY_ADDRESS", None)
    temp_dir = Path("/tmp") / f"ee-ray-{secrets.token_hex(3)}"  # short: socket paths are length-limited
    dashboard = _free_port()
    subprocess.run(
        [RAY, "start", "--head", "--node-ip-address=127.0.0.1", f"--port={_free_port()}",
         "--dashboard-host=127.0.0.1", f"--dashboard-port={dashboard}", "--num-cpus=2",
         "--disable-usage-stats", f"--temp-dir={temp_dir}",
         # Its own agent ports: the defaults are taken while the other tests' local Ray is up.
         *(f"--{flag}={_free_port()}" for flag in (
             "dashboard-agent-listen-port", "dashboard-agent-grpc-port", "runtime-env-agent-port",
             "metrics-export-port", "ray-client-server-port", "node-manager-port", "object-manager-port"))],
        env=env, check=True, capture_output=True, timeout=120,
    )
    try:
        yield f"http://127.0.0.1:{dashboard}", env
    finally:
        _stop_head(temp_dir)


def _stop_head(temp_dir: Path) -> None:
    """Stop only this head's processes (every one names its temp dir): `ray stop` would also kill the local
    Ray of the other integration tests, and with it this pytest process."""
    import psutil

    mine = [p for p in psutil.process_iter(["cmdline"]) if str(temp_dir) in " ".join(p.info["cmdline"] or [])]
    for proc in mine:
        proc.kill()
    psutil.wait_procs(mine, timeout=30)
    shutil.rmtree(temp_dir, ignore_errors=True)


def _submit(command: list[str], env: dict) -> subprocess.CompletedProcess:
    """`ray job submit`, retried while a freshly started head has no job agent yet (nothing was submitted)."""
    deadline = time.monotonic() + 120
    while True:
        done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
        if "No available agent to submit job" not in done.stderr + done.stdout or time.monotonic() > deadline:
            return done
        time.sleep(3)


def test_demo_job_succeeds_under_token_auth(ray_head, tmp_path):
    address, env = ray_head
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
