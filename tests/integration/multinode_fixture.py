"""A Ray cluster of several nodes on one machine, for tests that lose or add a node mid-run.

Built with Ray's own `ray.cluster_utils.Cluster`: a head and two worker nodes, each a real raylet with its own
object store, CPU count and a custom resource (`node_a`, `node_b`) that forces placement. Token authentication
stays on, as on a `ray start --head` cluster.

The cluster lives in a controller process of its own (`python -m tests.integration.multinode_fixture`), which
reads one command a line on stdin (`add NAME CPUS`, `kill NAME`, `quit`) and answers one JSON line: Ray reads
its authentication mode once per process, and the pytest process may already hold a local Ray without auth.
Drivers join from their own processes (`RAY_ADDRESS`). Teardown removes only what this fixture started: the
controller's nodes, then any process whose command line names the cluster's temp dir."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import pytest

from tests.integration.conftest import REPO, _free_port

# Small on purpose: the machine has 2 cores, and stage actors take fractions of a CPU (cluster.actor_num_cpus).
HEAD_CPUS = 1
WORKER_CPUS = {"node_a": 1, "node_b": 1}
# A worker offers PLACEMENT_UNITS of its custom resource and a stage actor asks for 1
# (`cluster.actor_resources={node_b:1}`): every stage's pool fits on the node, and only there.
PLACEMENT_UNITS = 10
OBJECT_STORE_BYTES = 200 * 1024 * 1024
COMMAND_TIMEOUT_S = 90


@dataclass
class MultiNode:
    """The test's handle on a running cluster: the address and environment a driver joins with, and the raylet
    pid of each live worker node by the name of its custom resource."""

    controller: subprocess.Popen
    env: dict  # for a driver process: RAY_ADDRESS, token auth, this venv first on PATH
    temp_dir: Path
    raylets: dict = field(default_factory=dict)  # "head", then each worker's name -> its raylet's pid
    removed: list = field(default_factory=list)  # names of nodes killed so far, in order

    def _ask(self, line: str) -> dict:
        self.controller.stdin.write(line + "\n")
        self.controller.stdin.flush()
        answer = _read_answer(self.controller, COMMAND_TIMEOUT_S)
        self.raylets = answer["raylets"]
        return answer

    def add_worker(self, name: str, num_cpus: float = 1) -> None:
        """Start a worker node offering the custom resource `name` (also a node that replaces a lost one)."""
        self._ask(f"add {name} {num_cpus}")

    def kill_worker(self, name: str) -> None:
        """Lose a node the hard way: SIGKILL its raylet, object store and workers (no graceful drain)."""
        self._ask(f"kill {name}")
        self.removed.append(name)

    def stage_actors_on(self, name: str) -> int:
        """How many Ray Data stage actors (MapWorker processes) run on node `name` ("head" too) now."""
        count = 0
        for proc in psutil.Process(self.raylets[name]).children(recursive=True):
            try:
                count += "MapWorker" in " ".join(proc.cmdline())
            except psutil.NoSuchProcess:
                continue
        return count


def _read_answer(controller: subprocess.Popen, timeout: float) -> dict:
    """The controller's next JSON line, or a test failure naming what it printed instead (never a hang)."""
    import selectors

    with selectors.DefaultSelector() as sel:
        sel.register(controller.stdout, selectors.EVENT_READ)
        if not sel.select(timeout):
            pytest.fail(f"the multi-node controller did not answer within {timeout} s")
    line = controller.stdout.readline()
    if not line:
        pytest.fail(f"the multi-node controller exited ({controller.poll()}) without answering")
    answer = json.loads(line)
    if "error" in answer:
        pytest.fail(f"multi-node controller: {answer['error']}")
    return answer


def _kill_leftovers(temp_dir: Path) -> None:
    """Every process of this cluster that outlived the controller (its command line names the temp dir)."""
    mine = [p for p in psutil.process_iter(["cmdline"]) if str(temp_dir) in " ".join(p.info["cmdline"] or [])]
    for proc in mine:
        proc.kill()
    psutil.wait_procs(mine, timeout=30)
    shutil.rmtree(temp_dir, ignore_errors=True)


@pytest.fixture()
def multinode(tmp_path):
    """A fresh head + node_a + node_b for one test (a node-loss test leaves the cluster changed)."""
    token = tmp_path / "auth_token"
    token.write_text(secrets.token_hex(32))
    temp_dir = Path("/tmp") / f"ee-mn-{secrets.token_hex(3)}"  # short: socket paths are length-limited
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    env = {**os.environ, "PATH": path, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(token)}
    env.pop("RAY_ADDRESS", None)
    log = (tmp_path / "controller.log").open("w")
    controller = subprocess.Popen(
        [sys.executable, "-m", "tests.integration.multinode_fixture", str(temp_dir)], cwd=REPO, env=env,
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, text=True,
    )
    try:
        ready = _read_answer(controller, COMMAND_TIMEOUT_S * 2)
        nodes = MultiNode(controller, {**env, "RAY_ADDRESS": ready["address"]}, temp_dir, ready["raylets"])
        yield nodes
    finally:
        if controller.poll() is None:
            controller.stdin.write("quit\n")
            controller.stdin.flush()
            try:
                controller.wait(timeout=60)
            except subprocess.TimeoutExpired:
                controller.kill()
                controller.wait(timeout=30)
        log.close()
        _kill_leftovers(temp_dir)


# ---- the controller process ------------------------------------------------------------------------------


def _node_args(temp_dir: str, num_cpus: float, resources: dict) -> dict:
    return {"num_cpus": num_cpus, "resources": resources, "object_store_memory": OBJECT_STORE_BYTES,
            "temp_dir": temp_dir, "include_dashboard": False,
            # Ports of its own: the defaults may be held by the other tests' local Ray or `ray start` head.
            "metrics_export_port": _free_port(), "runtime_env_agent_port": _free_port()}


def _serve(temp_dir: str) -> None:
    """Build the cluster, then obey stdin until `quit` or EOF; always remove every node on the way out."""
    import ray._private.utils
    from ray._private import ray_constants
    from ray.cluster_utils import Cluster

    # Cluster.add_node records the head in /tmp/ray/ray_current_cluster, where `ray.init(address="auto")` and the
    # ray CLI of anyone else on this machine would find it: this cluster is the test's alone.
    ray._private.utils.write_ray_address = lambda *args, **kwargs: None
    cluster = Cluster(shutdown_at_exit=False)
    workers = {}

    def raylets() -> dict:
        nodes = {"head": cluster.head_node, **workers} if cluster.head_node else workers
        return {name: node.all_processes[ray_constants.PROCESS_TYPE_RAYLET][0].process.pid
                for name, node in nodes.items()}

    def answer(**fields) -> None:
        print(json.dumps({**fields, "raylets": raylets()}), flush=True)

    def add(name: str, cpus: float) -> None:
        workers[name] = cluster.add_node(**_node_args(temp_dir, cpus, {name: PLACEMENT_UNITS}))
        cluster.wait_for_nodes(timeout=60)

    try:
        head = _node_args(temp_dir, HEAD_CPUS, {})
        head.update(gcs_server_port=_free_port(), ray_client_server_port=_free_port(), dashboard_port=_free_port(),
                    dashboard_agent_listen_port=_free_port())
        cluster.add_node(**head)
        for name, cpus in WORKER_CPUS.items():
            add(name, cpus)
        answer(address=cluster.address)
        for line in sys.stdin:
            words = line.split()
            try:
                if words[0] == "quit":
                    break
                if words[0] == "add":
                    add(words[1], float(words[2]))
                elif words[0] == "kill":
                    cluster.remove_node(workers.pop(words[1]), allow_graceful=False)
                else:
                    raise ValueError(f"unknown command {line.strip()!r}")
            except (ValueError, KeyError, IndexError, TimeoutError) as err:
                answer(error=f"{type(err).__name__}: {err}")
                continue
            answer(done=words[0])
    finally:
        cluster.shutdown()


if __name__ == "__main__":
    _serve(sys.argv[1])
