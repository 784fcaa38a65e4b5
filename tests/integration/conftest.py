"""Ray for the integration tests: a local Ray with 2 CPUs (the size of the development and CI machines) shared by
in-process runs, and a real `ray start --head` with token auth for tests that need separate driver processes
or Ray's state API."""

import os
import secrets
import shutil
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ray = pytest.importorskip("ray")

REPO = Path(__file__).resolve().parents[2]
RAY = str(Path(sys.executable).with_name("ray"))


@pytest.fixture(scope="session")
def local_ray():
    ray.init(address="local", num_cpus=2, include_dashboard=False)
    yield
    ray.shutdown()


@dataclass(frozen=True)
class RayHead:
    dashboard: str  # http://127.0.0.1:PORT, for `ray job submit` and the state API
    gcs: str  # 127.0.0.1:PORT, the RAY_ADDRESS a driver joins
    env: dict  # PATH with this venv first, and the token auth settings


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def ray_head(tmp_path_factory):
    """`ray start --head` with token authentication, on loopback ports, torn down afterwards."""
    token = tmp_path_factory.mktemp("ray-head") / "auth_token"
    token.write_text(secrets.token_hex(32))
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"  # the job runs `python` from this venv
    env = {**os.environ, "PATH": path, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(token)}
    env.pop("RAY_ADDRESS", None)
    temp_dir = Path("/tmp") / f"ee-ray-{secrets.token_hex(3)}"  # short: socket paths are length-limited
    dashboard, gcs = _free_port(), _free_port()
    subprocess.run(
        [RAY, "start", "--head", "--node-ip-address=127.0.0.1", f"--port={gcs}",
         "--dashboard-host=127.0.0.1", f"--dashboard-port={dashboard}", "--num-cpus=2",
         "--disable-usage-stats", f"--temp-dir={temp_dir}",
         # Its own agent ports: the defaults are taken while the other tests' local Ray is up.
         *(f"--{flag}={_free_port()}" for flag in (
             "dashboard-agent-listen-port", "dashboard-agent-grpc-port", "runtime-env-agent-port",
             "metrics-export-port", "ray-client-server-port", "node-manager-port", "object-manager-port"))],
        env=env, check=True, capture_output=True, timeout=120,
    )
    try:
        yield RayHead(f"http://127.0.0.1:{dashboard}", f"127.0.0.1:{gcs}", env)
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


