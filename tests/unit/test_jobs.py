"""The cluster job scripts parse, and none of them turns Ray's token authentication off."""

import subprocess
from pathlib import Path

import pytest

JOBS = sorted((Path(__file__).resolve().parents[2] / "jobs").glob("*.sh"))


@pytest.mark.parametrize("script", JOBS, ids=lambda p: p.name)
def test_job_script_parses_and_keeps_auth_on(script):
    done = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "RAY_AUTH_MODE=disabled" not in script.read_text()


def test_there_are_job_scripts():
    assert {"submit.sh", "gpu_single_node.sh", "gpu_multi_node.sh"} <= {p.name for p in JOBS}
