"""The verifier sandbox against hostile verifiers: every test asserts the specific evidence that the attack was
contained (the error text, the file that does not exist, the connection that never arrived, the process that is gone),
not just a non-pass verdict.

Most attacks run in every mode: `bwrap` (the default where it is installed; skipped with a reason where it is not),
`namespaces` (the child's own network, PID and mount namespaces) and `none`, the fallback used where namespaces are
unavailable (Python-level socket block, subreaper clean-up). The threats that only a private root contains (files,
/proc and /tmp of the host) assert that they are contained in the mount-isolated modes and, as a check that the test
can fail, that they are not in `none`."""

from __future__ import annotations

import os
import select
import socket
import sys
import textwrap
import threading
import time
import uuid

import psutil
import pytest

import engine
from engine.sandbox import Limits, Sandbox, Verdict
from engine.sandbox.isolation import INNER_CHILD_SCRIPT, cgroup_parents, find_bwrap
from engine.sandbox.supervisor import CHILD_SCRIPT

WALL_S = 2.0
LIMITS = Limits(wall_s=WALL_S, cpu_s=5, memory_mb=512, file_mb=1, processes=16, output_kb=64, workers=2)
JOB_UIDS = range(LIMITS.uid_first, LIMITS.uid_first + LIMITS.uid_count)
IS_ROOT = os.geteuid() == 0
HAS_BWRAP = find_bwrap() is not None
needs_root = pytest.mark.skipif(not IS_ROOT, reason="per-job uids (and what is built on them) need a root engine")


def src(code: str) -> str:
    return textwrap.dedent(code).strip() + "\n"


# Untrusted source that forks until the wall clock stops it, ignoring every failed fork.
STUBBORN_FORK_BOMB = src("""
    import os
    def evaluate(response):
        while True:
            try:
                os.fork()
            except OSError:
                pass
""")


@pytest.fixture(scope="module")
def sandbox():
    with Sandbox(LIMITS) as box:
        yield box


@pytest.fixture(scope="module")
def bwrap_box():
    if not HAS_BWRAP:
        pytest.skip("bwrap is not installed (apt-get install -y bubblewrap)")
    with Sandbox(LIMITS, isolation="bwrap") as box:
        yield box


@pytest.fixture(scope="module")
def namespace_box():
    with Sandbox(LIMITS, isolation="namespaces") as box:
        yield box


@pytest.fixture(scope="module")
def fallback():
    with Sandbox(LIMITS, isolation="none") as box:
        yield box


@pytest.fixture(params=["bwrap", "namespaces", "none"])
def any_box(request):
    return request.getfixturevalue({"bwrap": "bwrap_box", "namespaces": "namespace_box", "none": "fallback"}
                                   [request.param])


@pytest.fixture(params=["bwrap", "namespaces"])
def mounted(request):
    """The mount-isolated modes; on this machine (root) both must really have a private root."""
    box = request.getfixturevalue("bwrap_box" if request.param == "bwrap" else "namespace_box")
    if IS_ROOT:
        assert box.filesystem_isolation == {"bwrap": "bwrap", "namespaces": "mount_namespace"}[request.param]
    elif box.filesystem_isolation == "none":
        pytest.skip("no mount namespace for a non-root engine here")
    return box


def sandbox_processes() -> set[int]:
    """Pids of processes that belong to some sandbox job: forks of the child interpreter and bwrap (their command
    line names _child.py) and anything running as a job uid (os.system children)."""
    found = set()
    for proc in psutil.process_iter(["pid", "uids", "cmdline", "status"]):
        try:
            cmdline = proc.info["cmdline"] or []
            uids = proc.info["uids"]
            if (CHILD_SCRIPT in cmdline or INNER_CHILD_SCRIPT in cmdline
                    or (uids is not None and (uids.real in JOB_UIDS or uids.effective in JOB_UIDS))):
                found.add(proc.info["pid"])
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return found


def assert_no_leftovers(baseline: set[int], within_s: float = 2.0) -> None:
    deadline = time.monotonic() + within_s
    while (left := sandbox_processes() - baseline) and time.monotonic() < deadline:
        time.sleep(0.05)
    details = []
    for pid in left:
        try:
            p = psutil.Process(pid)
            details.append((pid, p.status(), p.cmdline()))
        except psutil.NoSuchProcess:
            pass
    assert not details, f"processes of the job survived it: {details}"


# -- the mode this machine runs in --------------------------------------------------------------------------------


def test_isolation_mode_is_reported(sandbox, fallback):
    assert sandbox.network_isolation in ("namespace", "socket_block")
    assert fallback.isolation == "socket_block/process_group/none"
    if IS_ROOT:  # this machine: root, Linux with unshare(CLONE_NEWNET | CLONE_NEWPID | CLONE_NEWNS) allowed
        # the default prefers bwrap; without it, the child's own mount namespace
        expected = "bwrap" if HAS_BWRAP else "mount_namespace"
        assert sandbox.isolation == f"namespace/pid_namespace/{expected}"
        assert sandbox.drops_privileges and fallback.drops_privileges
        assert set(sandbox.cgroups) <= {"memory", "pids"}


def test_strict_mode_refuses_to_run_without_mount_isolation():
    with pytest.raises(RuntimeError, match="require=strict: verifiers would run without mount isolation"):
        Sandbox(Limits(workers=1), isolation="none", require_mounts=True)
    if IS_ROOT:  # here it is available, so strict starts (with bwrap when installed)
        with Sandbox(Limits(workers=1), require_mounts=True) as box:
            assert box.filesystem_isolation == ("bwrap" if HAS_BWRAP else "mount_namespace")
            assert box.check("def evaluate(r):\n    return r\n", [("a", "a")])[0].status == "pass"


def test_bwrap_asked_for_but_missing_says_how_to_install(monkeypatch):
    monkeypatch.setattr("engine.sandbox.supervisor.find_bwrap", lambda: None)
    with pytest.raises(RuntimeError, match="apt-get install -y bubblewrap"):
        Sandbox(Limits(workers=1), isolation="bwrap")


@needs_root
def test_worker_runs_as_a_job_uid_with_scrubbed_env_in_its_workdir(any_box):
    code = src(f"""
        import os
        def evaluate(response):
            return [os.getuid() in range({JOB_UIDS.start}, {JOB_UIDS.stop}), os.getgid() == os.getuid(),
                    os.getgroups(), sorted(os.environ), os.getcwd() == os.environ["HOME"]]
    """)
    [verdict] = any_box.check(code, [("x", [True, True, [], ["HOME", "LANG", "PATH"], True])])
    assert verdict == Verdict("pass", "", "")


# -- honest verifiers and result comparison -----------------------------------------------------------------------


def test_honest_function(sandbox):
    code = "def evaluate(response):\n    return len(response) < 10\n"
    cases = [("short", True), ("a much longer response", False), ("a much longer response", True), ("ok", "true")]
    verdicts = sandbox.check(code, cases)
    assert [v.status for v in verdicts] == ["pass", "pass", "fail", "fail"]
    assert verdicts[2].detail == "evaluate returned False, expected True"
    # expected is compared as given (values only): "true" is a string, not True; AutoIF normalises its labels
    assert sandbox.check(code, [("ok", True)])[0].status == "pass"


def test_results_keep_their_exact_type_and_odd_results_are_errors(sandbox):
    code = src("""
        class Liar:
            def __eq__(self, other):
                return True
        def evaluate(response):
            if response == "liar":
                return Liar()
            if response == "bytes":
                return response.encode()
            return (1, {"a": {2, 3}}, None, 1.5)
    """)
    verdicts = sandbox.check(code, [("t", (1, {"a": {2, 3}}, None, 1.5)), ("t", [1, {"a": {2, 3}}, None, 1.5]),
                                    ("bytes", b"bytes"), ("liar", True)])
    assert [v.status for v in verdicts] == ["pass", "fail", "pass", "error"]
    # an object with a lying __eq__ never reaches the engine: only plain data crosses the boundary
    assert "evaluate returned a verifier.Liar" in verdicts[3].detail


def test_output_is_captured_per_case(sandbox):
    code = "def evaluate(response):\n    print('saw', response)\n    return True\n"
    verdicts = sandbox.check(code, [("one", True), ("two", True)])
    assert [v.output for v in verdicts] == ["saw one\n", "saw two\n"]


def test_syntax_error_fails_every_case(sandbox):
    verdicts = sandbox.check("def evaluate(response)\n    return True\n", [("a", True), ("b", False), ("c", True)])
    assert [v.status for v in verdicts] == ["error"] * 3
    assert all("SyntaxError" in v.detail and "line 1" in v.detail for v in verdicts)


def test_missing_evaluate_and_raising_evaluate(sandbox):
    [missing] = sandbox.check("def evaluat(response):\n    return True\n", [("a", True)])
    assert missing.status == "error" and "does not define a callable `evaluate`" in missing.detail
    [raising] = sandbox.check("def evaluate(response):\n    return 1 / 0\n", [("a", True)])
    assert raising.status == "error" and "ZeroDivisionError" in raising.detail and "verifier line 2" in raising.detail


# -- time, CPU, memory, recursion ---------------------------------------------------------------------------------


def test_infinite_loop_times_out_and_engine_is_fine(sandbox):
    baseline = sandbox_processes()
    threads_before = threading.active_count()
    start = time.monotonic()
    verdicts = sandbox.check("def evaluate(response):\n    while True:\n        pass\n", [("a", True)])
    elapsed = time.monotonic() - start
    assert [v.status for v in verdicts] == ["timeout"]
    assert "2 s" in verdicts[0].detail
    assert WALL_S <= elapsed < WALL_S + 3.0  # margin: process start-up and teardown on a busy machine
    assert threading.active_count() <= threads_before + LIMITS.workers
    assert sandbox.check("def evaluate(r):\n    return r\n", [("fine", "fine")])[0].status == "pass"
    assert_no_leftovers(baseline)


def test_timeout_in_one_case_does_not_cost_the_others(sandbox):
    code = "def evaluate(response):\n    while response == 'hang':\n        pass\n    return response\n"
    verdicts = sandbox.check(code, [("a", "a"), ("hang", "hang"), ("b", "b")])
    assert [v.status for v in verdicts] == ["pass", "timeout", "pass"]  # the third ran in a fresh child


def test_loop_while_defining_evaluate_times_out(sandbox):
    verdicts = sandbox.check("while True:\n    pass\n", [("a", True), ("b", True)])
    assert [v.status for v in verdicts] == ["timeout", "timeout"]
    assert "defining evaluate" in verdicts[0].detail


def test_cpu_limit_kills_before_wall_clock():
    # A generous wall clock: on a loaded 2-CPU machine the loop may get a small share of a CPU, and it is the 1 s of
    # CPU time, not the wall clock, that must end it.
    with Sandbox(Limits(wall_s=30, cpu_s=1, workers=1)) as box:
        [limit] = box.check("import resource\ndef evaluate(r):\n    return resource.getrlimit(resource.RLIMIT_CPU)\n",
                            [("a", (1, 2))])
        assert limit.status == "pass"  # soft 1 s (SIGXCPU), hard 2 s (SIGKILL)
        [verdict] = box.check("def evaluate(response):\n    while True:\n        pass\n", [("a", True)])
    assert verdict.status == "error"
    assert "SIGXCPU" in verdict.detail  # RLIMIT_CPU, not the 30 s wall clock


def test_memory_bomb(any_box):
    [verdict] = any_box.check("def evaluate(response):\n    x = bytearray(10**10)\n    return True\n", [("a", True)])
    assert verdict.status == "error"
    assert "MemoryError" in verdict.detail  # RLIMIT_AS (512 MB) refused the 10 GB allocation


def test_growing_memory_bomb():
    # A smaller address space keeps this quick: touching hundreds of MB is slow on a busy VM.
    with Sandbox(Limits(wall_s=20, memory_mb=128, workers=1)) as box:
        code = "def evaluate(response):\n    x = []\n    while True:\n        x.append(bytearray(10**6))\n"
        [verdict] = box.check(code, [("a", True)])
    assert verdict.status == "error" and "MemoryError" in verdict.detail


def test_deep_recursion(any_box):
    [verdict] = any_box.check("def evaluate(response):\n    return evaluate(response)\n", [("a", True)])
    assert verdict.status == "error" and "RecursionError" in verdict.detail
    assert any_box.check("def evaluate(r):\n    return 1\n", [("a", 1)])[0].status == "pass"


def test_file_size_limit(sandbox):
    code = "def evaluate(response):\n    open('big', 'wb').write(b'x' * (2 << 20))\n    return True\n"
    [verdict] = sandbox.check(code, [("a", True)])
    assert verdict.status == "error" and "File too large" in verdict.detail  # RLIMIT_FSIZE = 1 MB, EFBIG


# -- processes ----------------------------------------------------------------------------------------------------


@needs_root
def test_fork_bomb(any_box):
    baseline = sandbox_processes()
    bomb = "import os\ndef evaluate(response):\n    while True:\n        os.fork()\n"
    [verdict] = any_box.check(bomb, [("a", True)])
    assert verdict.status in ("error", "timeout")
    assert "BlockingIOError" in verdict.detail  # RLIMIT_NPROC of the job's uid (and its cgroup's pids.max)
    assert_no_leftovers(baseline)
    # a bomb that ignores the failures and keeps forking until the wall clock: killed as a whole
    stubborn = STUBBORN_FORK_BOMB
    [verdict] = any_box.check(stubborn, [("a", True)])
    assert verdict.status == "timeout"
    assert_no_leftovers(baseline)


def test_escaped_daemon_is_killed_with_its_job(any_box):
    baseline = sandbox_processes()
    code = src("""
        import os, time
        def evaluate(response):
            if os.fork() == 0:
                os.setsid()          # leave the worker's session and process group
                if os.fork() == 0:   # and its parent: a classic daemon
                    time.sleep(300)
                os._exit(0)
            os.wait()
            return True
    """)
    [verdict] = any_box.check(code, [("a", True)])
    assert verdict.status == "pass"
    assert_no_leftovers(baseline)


@needs_root
def test_os_system_runs_as_the_job_uid_and_cannot_write_into_root_dirs(any_box, tmp_path):
    private = tmp_path / "private"
    private.mkdir(mode=0o700)  # owned by root, like root's temp dirs
    marker = private / f"marker-{uuid.uuid4().hex}"
    code = src(f"""
        import os
        def evaluate(response):
            if response == "id":
                return os.system("id -u")
            if response == "workdir":
                return os.system("touch ./ok && test -f ./ok")
            return os.system("touch {marker}")
    """)
    verdicts = any_box.check(code, [("id", 0), ("workdir", 0), ("outside", 0)])
    # the shell really runs (and prints the job's uid into the captured output) ...
    assert verdicts[0].status == "pass" and int(verdicts[0].output.strip()) in JOB_UIDS
    assert verdicts[1].status == "pass"  # ... and can write into the job's own directory ...
    # ... but touch exits 1 (wait status 256) on the root-owned 0700 directory, which stays empty
    assert verdicts[2].status == "fail" and verdicts[2].detail == "evaluate returned 256, expected 0"
    # (with a private root the directory does not even exist there)
    assert ("No such file or directory" if any_box.filesystem_isolation != "none" else "Permission denied") \
        in verdicts[2].output
    assert not marker.exists() and list(private.iterdir()) == []


def test_killing_the_parent(any_box):
    me = psutil.Process()
    code = src(f"""
        import os
        def evaluate(response):
            if response == "parent":
                os.kill(os.getppid(), 9)
            elif response == "group":
                os.killpg(os.getpgid(os.getppid()), 9)
            elif response == "engine":
                os.kill({os.getpid()}, 9)
            return "survived"
    """)
    verdicts = any_box.check(code, [("parent", "x"), ("group", "x"), ("engine", "x")])
    assert me.is_running() and me.status() != psutil.STATUS_ZOMBIE  # we are still here
    # the parent is a root supervisor (EPERM for the job uid; in a PID namespace, pid 1's SIGKILL from inside is
    # refused too); killpg at best kills the worker itself; the engine's pid is not signalable by the job uid (or not
    # visible inside the PID namespace)
    assert all(v.status == "error" for v in verdicts), verdicts
    if IS_ROOT:
        assert "PermissionError" in verdicts[0].detail
        assert any(word in verdicts[2].detail for word in ("PermissionError", "ProcessLookupError"))
    assert any_box.check("def evaluate(r):\n    return r\n", [("still working", "still working")])[0].status == "pass"


def test_ctypes_segfault(any_box):
    code = "import ctypes\ndef evaluate(response):\n    return ctypes.string_at(0)\n"
    [verdict] = any_box.check(code, [("a", True)])
    assert verdict.status == "error" and "SIGSEGV" in verdict.detail
    assert any_box.check("def evaluate(r):\n    return 2\n", [("a", 2)])[0].status == "pass"


# -- network, files, secrets --------------------------------------------------------------------------------------


def test_network_is_unreachable(any_box):
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    port = listener.getsockname()[1]
    try:
        code = src(f"""
            import socket
            def evaluate(response):
                s = socket.create_connection(("127.0.0.1", {port}), timeout=1)
                s.sendall(b"exfiltrated")
                return True
        """)
        [verdict] = any_box.check(code, [("a", True)])
        assert verdict.status == "error"
        if any_box.filesystem_isolation == "bwrap":  # bwrap brings up a loopback of the job's own: nobody listens
            assert "Connection refused" in verdict.detail
        elif any_box.network_isolation == "namespace":
            assert "Network is unreachable" in verdict.detail  # an empty network namespace: no usable loopback
        else:
            assert "network access is disabled in the sandbox (socket_block mode)" in verdict.detail
        readable, _, _ = select.select([listener], [], [], 0.5)
        assert readable == []  # no connection ever reached the test's listening socket
    finally:
        listener.close()


@needs_root
def test_writing_outside_the_workdir(any_box, tmp_path):
    private = tmp_path / "private"
    private.mkdir(mode=0o700)
    targets = [str(private / "evil.txt"), f"/root/evil-{uuid.uuid4().hex}.txt"]
    code = src("""
        def evaluate(path):
            with open(path, "w") as f:
                f.write("owned")
            return True
    """)
    verdicts = any_box.check(code, [(path, True) for path in targets] + [("inside.txt", True)])
    assert [v.status for v in verdicts] == ["error", "error", "pass"]  # the workdir itself is writable
    if any_box.filesystem_isolation == "none":
        assert all("PermissionError" in v.detail for v in verdicts[:2])
    else:  # the host's directory is not in the job's root; its /root holds only the interpreter, read-only
        assert "FileNotFoundError" in verdicts[0].detail
        assert any(word in verdicts[1].detail for word in ("PermissionError", "Read-only file system"))
    assert not any(os.path.exists(path) for path in targets)


def test_environment_secrets_are_absent(any_box, monkeypatch):
    monkeypatch.setenv("EE_SECRET_TOKEN", "s3cr3t")
    code = "import os\ndef evaluate(response):\n    return os.environ.get('EE_SECRET_TOKEN')\n"
    [verdict] = any_box.check(code, [("a", "s3cr3t")])
    assert verdict.status == "fail" and verdict.detail == "evaluate returned None, expected 's3cr3t'"
    if IS_ROOT:  # nor can the job uid read the engine's environment through /proc (which, mounted, has no such pid)
        code = f"def evaluate(response):\n    return open('/proc/{os.getpid()}/environ', 'rb').read()\n"
        [verdict] = any_box.check(code, [("a", b"")])
        missing = "FileNotFoundError" if any_box.filesystem_isolation != "none" else "PermissionError"
        assert verdict.status == "error" and missing in verdict.detail


def test_engine_and_site_packages_are_off_the_path(sandbox):
    repo = os.path.dirname(os.path.dirname(os.path.abspath(engine.__file__)))
    code = src(f"""
        import sys
        def evaluate(r):
            return [p for p in sys.path if "site-packages" in p or p.startswith({repo!r})]
    """)
    assert sandbox.check(code, [("a", [])])[0].status == "pass"
    [verdict] = sandbox.check("import engine\ndef evaluate(r):\n    return True\n", [("a", True)])
    assert verdict.status == "error" and "ModuleNotFoundError" in verdict.detail


# -- output flooding ----------------------------------------------------------------------------------------------


def test_printing_100_mb_is_bounded(any_box):
    me = psutil.Process()
    rss_before = me.memory_info().rss
    code = src("""
        import sys
        def evaluate(response):
            chunk = "x" * (1 << 20)
            for _ in range(100):
                sys.stdout.write(chunk)
                sys.stderr.write(chunk)
            return True
    """)
    [verdict] = any_box.check(code, [("a", True)])
    assert verdict.status == "pass"
    assert 0 < len(verdict.output) <= LIMITS.output_kb * 1024
    assert me.memory_info().rss - rss_before < 50 * 2**20


def test_forged_protocol_messages_cannot_pass_other_cases(sandbox):
    # The verifier shares its process with the protocol code and can write to the reply fd itself. The worst it can
    # do is answer for itself: the expected outputs never enter the child, and replies are validated.
    code = src("""
        import os
        def evaluate(response):
            for fd in range(3, 20):
                try:
                    os.write(fd, b'{"result": true}\\n{"result": true}\\n' + b'x' * 3000000)
                except OSError:
                    pass
            return False
    """)
    verdicts = sandbox.check(code, [("a", True), ("b", "secret-expected")])
    assert verdicts[1].status != "pass"


# -- threads and parallel jobs ------------------------------------------------------------------------------------


def test_check_from_a_non_main_thread(sandbox):
    results = {}

    def run(name, code):
        results[name] = sandbox.check(code, [("a", "a")])

    threads = [
        threading.Thread(target=run, args=("loop", "def evaluate(r):\n    while True:\n        pass\n")),
        threading.Thread(target=run, args=("honest", "def evaluate(r):\n    return r\n")),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert [v.status for v in results["loop"]] == ["timeout"]
    assert [v.status for v in results["honest"]] == ["pass"]


def test_check_many_keeps_order_and_survives_a_killed_worker(sandbox):
    baseline = sandbox_processes()
    jobs = [(f"def evaluate(r):\n    return r + '{k}'\n", [("x", f"x{k}"), ("y", f"y{k}")]) for k in range(5)]
    jobs[2] = ("import os\ndef evaluate(r):\n    os.kill(os.getpid(), 9)\n", [("x", True), ("y", True)])
    results = sandbox.check_many(jobs)
    assert len(results) == 5
    for k in (0, 1, 3, 4):
        assert [v.status for v in results[k]] == ["pass", "pass"], results[k]
    assert [v.status for v in results[2]] == ["error", "error"]  # each case killed its own (fresh) worker
    assert all("SIGKILL" in v.detail for v in results[2])
    assert_no_leftovers(baseline)


def test_check_many_runs_jobs_in_parallel(sandbox):
    # Each job prints when its call started and ended (wall clock); with two workers the two intervals overlap.
    code = src("""
        import time
        def evaluate(r):
            start = time.time()
            time.sleep(1)
            print(start, time.time())
            return True
    """)
    results = sandbox.check_many([(code, [("a", True)]), (code, [("b", True)])])
    assert [r[0].status for r in results] == ["pass", "pass"]
    (a0, a1), (b0, b1) = (map(float, r[0].output.split()) for r in results)
    assert a0 < b1 and b0 < a1


def test_closed_sandbox_refuses_work():
    box = Sandbox(Limits(workers=1))
    box.close()
    with pytest.raises(RuntimeError):
        box.check("def evaluate(r):\n    return True\n", [("a", True)])


def test_huge_result_is_refused_not_buffered(sandbox):
    [verdict] = sandbox.check("def evaluate(r):\n    return 'x' * (8 << 20)\n", [("a", "x")])
    assert verdict.status == "error" and "result too large to transfer" in verdict.detail


def test_engine_never_runs_verifier_code(sandbox):
    # A verifier that would leave a trace in the environment if it ran in this process.
    code = "import sys\nsys.modules['os'].environ['RAN_HERE'] = '1'\ndef evaluate(r):\n    return True\n"
    assert sandbox.check(code, [("a", True)])[0].status == "pass"
    assert "RAN_HERE" not in os.environ
    assert sys.modules.get("verifier") is None


# -- what only a private root contains: the host's files, processes and /tmp; other jobs; disk --------------------


def test_planted_world_readable_secret_outside_the_job_cannot_be_read(any_box):
    secret = f"s3cr3t-{uuid.uuid4().hex}"
    planted = f"/var/tmp/ee-planted-{uuid.uuid4().hex}"
    with open(planted, "w") as f:
        f.write(secret)
    os.chmod(planted, 0o644)  # readable by every user of the machine
    project_file = os.path.abspath(engine.__file__)  # the project tree (world-readable here too)
    try:
        code = "def evaluate(path):\n    return open(path).read()\n"
        verdicts = any_box.check(code, [(planted, secret), (project_file, "")])
    finally:
        os.unlink(planted)
    if any_box.filesystem_isolation == "none":  # the check can fail: without a private root the secret leaks
        assert verdicts[0].status == "pass"
        return
    assert [v.status for v in verdicts] == ["error", "error"]
    assert all("FileNotFoundError" in v.detail for v in verdicts)  # neither /var nor the project exists in the root
    assert not any(secret in v.detail or secret in v.output for v in verdicts)


def test_proc_shows_only_the_jobs_own_processes(any_box):
    import subprocess

    marker = f"ee-host-marker-{uuid.uuid4().hex}"
    host = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", marker])  # a host command line
    code = src(f"""
        import os
        def evaluate(response):
            lines = {{}}
            for name in os.listdir("/proc"):
                if name.isdigit():
                    try:
                        lines[int(name)] = open(f"/proc/{{name}}/cmdline", "rb").read().replace(b"\\0", b" ")
                    except OSError:
                        pass
            mine = all(b"_child.py" in line for line in lines.values())  # (bwrap's init names it too)
            return [len(lines), max(lines), mine, any(b"{marker}" in line for line in lines.values()),
                    {host.pid} in lines]
    """)
    try:
        [verdict] = any_box.check(code, [("a", None)])
    finally:
        host.kill()
        host.wait()
    assert verdict.status == "fail"
    if any_box.filesystem_isolation == "none":  # the check can fail: the host's /proc shows everything
        assert verdict.detail.endswith(", False, True, True], expected None")
        return
    # the job's own tree only: (bwrap's init,) the namespace init and the worker, all running the child script;
    # no host process, its command line or its pid
    count = 3 if any_box.filesystem_isolation == "bwrap" else 2
    assert verdict.detail == f"evaluate returned [{count}, {count}, True, False, False], expected None"


def test_nothing_written_to_tmp_survives_the_job_or_reaches_the_host(any_box):
    name = f"ee-left-{uuid.uuid4().hex}"
    code = src(f"""
        import os
        def evaluate(response):
            if response == "write":
                with open("/tmp/{name}", "w") as f:
                    f.write("left behind")
                with open("kept-in-workdir", "w") as f:
                    f.write("x")
            return sorted(os.listdir("/tmp")) == [] or "{name}" in os.listdir("/tmp")
    """)
    [written] = any_box.check(code, [("write", True)])
    assert written.status == "pass"  # it really wrote the file (it saw it in its /tmp)
    on_host = os.path.exists(f"/tmp/{name}")
    if any_box.filesystem_isolation == "none":  # the check can fail: the host's /tmp keeps it
        assert on_host
        os.unlink(f"/tmp/{name}")
        return
    assert not on_host
    # a later job starts with an empty /tmp and an empty workdir: nothing survived
    look = "import os\ndef evaluate(r):\n    return [os.listdir('/tmp'), os.listdir('.')]\n"
    [later] = any_box.check(look, [("a", [[], []])])
    assert later.status == "pass", later


@needs_root
def test_second_job_keeps_forking_while_the_first_forks_without_limit(any_box):
    baseline = sandbox_processes()
    bomb = STUBBORN_FORK_BOMB
    # Starts once the bomb is under way (1.5 s; it fills RLIMIT_NPROC in well under 0.5 s and runs for 4 s), then
    # needs 8 processes at once: with one uid shared by both jobs the bomb holds all of RLIMIT_NPROC (16) and these
    # forks fail (checked by hand with every job given the same uid: "Resource temporarily unavailable").
    worker = src(f"""
        import os, time
        def evaluate(response):
            time.sleep(1.5)
            pids = []
            for _ in range(8):
                pid = os.fork()
                if pid == 0:
                    time.sleep(0.3)
                    os._exit(0)
                pids.append(pid)
            for pid in pids:
                os.waitpid(pid, 0)
            return [len(pids), os.getuid() in range({JOB_UIDS.start}, {JOB_UIDS.stop})]
    """)
    with Sandbox(Limits(wall_s=4, processes=16, workers=2), isolation=any_box.mode) as box:
        results = box.check_many([(bomb, [("a", True)]), (worker, [("b", [8, True])])])
    assert results[0][0].status == "timeout"  # the bomb ran until the wall clock
    assert results[1][0] == Verdict("pass", "", "")  # all 8 forks of the other job worked, under its own job uid
    assert_no_leftovers(baseline)
    # concurrent jobs never share a uid
    uid_of = "import os, time\ndef evaluate(r):\n    time.sleep(0.5)\n    return os.getuid()\n"
    uids = any_box.check_many([(uid_of, [("a", None)])] * 2)
    assert len({v[0].detail for v in uids}) == 2, uids


def test_disk_fill_stops_at_the_cap(mounted):
    with Sandbox(Limits(wall_s=20, tmp_mb=4, file_mb=1, workers=1), isolation=mounted.mode) as box:
        code = src("""
            import errno
            def evaluate(where):
                written = 0
                for k in range(100):   # 100 files of 512 KiB: far past the 4 MiB cap, each under RLIMIT_FSIZE
                    try:
                        with open(f"{where}/fill-{k}", "wb") as f:
                            f.write(b"x" * (512 << 10))
                        written += 512 << 10
                    except OSError as exc:
                        return [errno.errorcode[exc.errno], written]
                return ["no limit", written]
        """)
        verdicts = box.check(code, [("/tmp", None), (".", None)])
    for verdict in verdicts:  # /tmp and the workdir: each stopped at its own 4 MiB tmpfs, not at the host disk
        assert verdict.status == "fail"
        assert verdict.detail in (f"evaluate returned ['ENOSPC', {n << 19}], expected None" for n in (6, 7, 8))


@needs_root
@pytest.mark.skipif(not cgroup_parents(), reason="no writable cgroup v1 pids/memory hierarchy here")
def test_job_cgroups_cap_processes_and_memory_and_are_removed(sandbox):
    parents = cgroup_parents()
    ours = lambda: [(c, d) for c, p in parents.items() for d in os.listdir(p)  # noqa: E731
                    if d.startswith(f"engine-sandbox-{os.getpid()}-")]
    seen = {}

    def watch():
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and not seen:
            for controller, name in ours():
                knob = "pids.max" if controller == "pids" else "memory.limit_in_bytes"
                try:
                    with open(os.path.join(parents[controller], name, knob)) as f:
                        seen[controller] = int(f.read())
                except OSError:
                    continue
            time.sleep(0.02)

    watcher = threading.Thread(target=watch)
    watcher.start()
    [verdict] = sandbox.check("import time\ndef evaluate(r):\n    time.sleep(1)\n    return 1\n", [("a", 1)])
    watcher.join()
    assert verdict.status == "pass"
    if "pids" in parents:
        assert seen["pids"] == LIMITS.processes + 4
    if "memory" in parents:
        assert seen["memory"] == (LIMITS.memory_mb + 2 * LIMITS.tmp_mb + 64) << 20
    assert ours() == []  # removed with the job


@needs_root
@pytest.mark.skipif("memory" not in cgroup_parents(), reason="no writable cgroup v1 memory controller here")
def test_memory_of_the_whole_job_is_capped():
    # Each child stays under RLIMIT_AS (128 MiB) but together they touch 4 x 90 MiB, past the job's cgroup limit
    # (128 + 2 x 4 + 64 = 200 MiB): the kernel kills one of them.
    with Sandbox(Limits(wall_s=30, memory_mb=128, tmp_mb=4, workers=1)) as box:
        code = src("""
            import os, time
            def evaluate(response):
                pids = []
                for _ in range(4):
                    pid = os.fork()
                    if pid == 0:
                        block = bytearray(90 << 20)
                        for i in range(0, len(block), 4096):
                            block[i] = 1
                        time.sleep(2)
                        os._exit(0)
                    pids.append(pid)
                return sorted(os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) for pid in pids)
        """)
        [verdict] = box.check(code, [("a", [0, 0, 0, 0])])
    assert verdict.status in ("fail", "error"), verdict
    assert "-9" in verdict.detail or "SIGKILL" in verdict.detail  # the OOM killer of the job's cgroup
