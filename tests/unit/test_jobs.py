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


def test_gpu_job_submits_through_submit_sh_with_auth_and_its_runtime_env(tmp_path):
    fake = tmp_path / "ray"  # records what `ray job submit` would receive
    fake.write_text('#!/bin/sh\necho "AUTH=$RAY_AUTH_MODE $*"\n')
    fake.chmod(0o755)
    script = next(p for p in JOBS if p.name == "gpu_single_node.sh")
    env = {"PATH": f"{tmp_path}:/usr/bin:/bin", "RAY_ADDRESS": "http://head:8265"}
    done = subprocess.run(["bash", str(script), "model.path=/models/q"], capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert out.startswith("AUTH=token job submit --address http://head:8265")
    assert "--runtime-env jobs/runtime_env_gpu.yaml --entrypoint-num-cpus 1 -- python -m engine" in out
    assert out.rstrip().endswith("cluster.batch_size=256 model.path=/models/q")
    missing = subprocess.run(["bash", str(script)], capture_output=True, text=True, env={"PATH": env["PATH"]})
    assert missing.returncode != 0 and "set RAY_ADDRESS" in missing.stderr
