"""The engine side of the verifier sandbox: starts, feeds, times and kills the child processes.

Nothing in this module executes verifier code. Each job (one verifier source plus its cases) gets a fresh child
interpreter (`_child.py`) in a throw-away working directory, with its own uid and cgroups (`isolation.py`); up to
`Limits.workers` jobs run at once, each supervised by one thread of a ThreadPoolExecutor. The wall-clock limit is
enforced here with select() deadlines, never with SIGALRM: signal handlers only run on the main thread, and `check`
must work from any thread.
"""

from __future__ import annotations

import contextlib
import json
import os
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import weakref
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from engine.sandbox import _child
from engine.sandbox.isolation import (
    INSTALL_HINT,
    JOB_DIR,
    SUPERVISOR_PROCESSES,
    JobCgroup,
    UidPool,
    bwrap_argv,
    cgroup_parents,
    find_bwrap,
    root_plan,
)

CHILD_SCRIPT = os.path.abspath(_child.__file__)
UID_FIRST = 2_000_000_000  # default sandbox uid range: far above login users, system users and nobody (65534)
ISOLATIONS = ("auto", "bwrap", "namespaces", "none")
STARTUP_TIMEOUT_S = 15.0  # interpreter start + isolation; generous for a loaded 2-CPU machine
STOP_GRACE_S = 5.0  # how long the supervisor gets to tear its PID namespace down before it is SIGKILLed
CHILD_ENV_PATH = "/usr/bin:/bin"


@dataclass(frozen=True)
class Limits:
    wall_s: float = 5.0  # per (function, case) call, and for defining the function; enforced by the parent
    cpu_s: int = 5  # RLIMIT_CPU of the worker process (SIGXCPU, then SIGKILL a second later)
    memory_mb: int = 512  # RLIMIT_AS (address space, per process)
    file_mb: int = 1  # RLIMIT_FSIZE (largest file the worker may write)
    processes: int = 16  # RLIMIT_NPROC of the job's own uid (enforced after the drop), and its cgroup's pids.max
    output_kb: int = 64  # captured stdout+stderr kept per job; the rest is read and discarded
    workers: int = 2  # jobs (child processes) running at once
    tmp_mb: int = 16  # size of each private tmpfs of a job (/tmp and its workdir), where mounts are isolated
    uid_first: int = UID_FIRST  # jobs run as uids [uid_first, uid_first + uid_count), one per concurrent job
    uid_count: int = 256  # must cover every concurrent job on the machine (all sandboxes, all processes)

    def __post_init__(self):
        for name in ("wall_s", "cpu_s", "memory_mb", "file_mb", "processes", "workers", "tmp_mb", "uid_first",
                     "uid_count"):
            if getattr(self, name) <= 0:
                raise ValueError(f"Limits.{name} must be positive")
        if self.output_kb < 0:
            raise ValueError("Limits.output_kb must not be negative")


@dataclass(frozen=True)
class Verdict:
    status: str  # "pass" | "fail" | "error" | "timeout"
    detail: str  # exception text / reason, bounded
    output: str  # captured stdout+stderr, truncated to output_kb


def _bounded(text: str) -> str:
    return text if len(text) <= _child.MAX_DETAIL else text[: _child.MAX_DETAIL - 3] + "..."


def _describe_exit(returncode: int) -> str:
    """Popen's returncode (negative: killed by a signal) or the 128+signal code that C and I pass up."""
    sig = -returncode if returncode < 0 else returncode - 128 if returncode > 128 else 0
    if sig:
        try:
            name = signal.Signals(sig).name
        except ValueError:
            name = f"signal {sig}"
        hint = {"SIGXCPU": " (CPU time limit)", "SIGKILL": " (killed)", "SIGSEGV": " (segmentation fault)",
                "SIGXFSZ": " (file size limit)"}.get(name, "")
        return f"was killed by {name}{hint}"
    return f"exited with status {returncode}"


class _Output:
    """Captured verifier output of one job: at most `limit` bytes are kept; everything past it is discarded as it
    is read, so a verifier printing 100 MB costs the engine one read buffer, not 100 MB."""

    def __init__(self, limit: int):
        self.room = limit
        self.pending = bytearray()

    def feed(self, data: bytes) -> None:
        if self.room > 0:
            kept = data[: self.room]
            self.pending += kept
            self.room -= len(kept)

    def take(self) -> str:
        """Output since the previous verdict (invalid UTF-8 replaced: never more characters than bytes)."""
        text = self.pending.decode("utf-8", "replace")
        self.pending = bytearray()
        return text


class _Child:
    """One sandbox child process and the parent's ends of its three pipes."""

    def __init__(self, sandbox: Sandbox, mode: str, workdir: str, output: _Output, uid: int | None,
                 cgroup: JobCgroup | None):
        cfg = {
            "cpu_s": sandbox.limits.cpu_s,
            "memory_mb": sandbox.limits.memory_mb,
            "file_mb": sandbox.limits.file_mb,
            "processes": sandbox.limits.processes,
            "uid": uid,
            "gid": uid,
            "isolation": mode,
            "root": sandbox._plan,
            "jobdir": JOB_DIR,
        }
        cgroups = cgroup.procs_files if cgroup is not None else []
        if mode == "bwrap":
            # The child joins the cgroups, then execs bwrap, which runs the child script again inside the job's root.
            argv = bwrap_argv(sandbox._bwrap, sandbox._plan, CHILD_SCRIPT, [json.dumps(cfg)])
            cfg = {"cgroups": cgroups, "exec": argv}
        else:
            cfg["cgroups"] = cgroups
        # An explicit, minimal environment: nothing of the engine's (tokens, keys, proxies) reaches the child.
        env = {"PATH": CHILD_ENV_PATH, "HOME": workdir, "LANG": "C.UTF-8"}
        # A fresh interpreter (-I: isolated, no env vars, no script dir or user site on sys.path; -S: no
        # site-packages, so the engine and its dependencies are not importable; -u: unbuffered output, so what a
        # verifier prints is captured with the case that printed it). start_new_session=True makes the child call
        # setsid(): it leads its own process group, which the parent can kill as a whole, and it is detached from
        # the engine's terminal and process group.
        self.proc = subprocess.Popen(
            [sys.executable, "-I", "-S", "-B", "-u", CHILD_SCRIPT, json.dumps(cfg)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, bufsize=0,
            cwd=workdir, env=env, close_fds=True, start_new_session=True,
        )
        self.output = output
        self.info: dict | None = None  # the ready message
        self.reaped = False
        self._stop_lock = threading.Lock()
        self.exited: int | None = None  # exit code once seen (not yet reaped)
        self._proto = bytearray()
        self._in_fd = self.proc.stdin.fileno()
        self._out_fd = self.proc.stdout.fileno()
        self._cap_fd = self.proc.stderr.fileno()
        for fd in (self._in_fd, self._out_fd, self._cap_fd):
            os.set_blocking(fd, False)
        self._sel = selectors.DefaultSelector()
        self._sel.register(self._out_fd, selectors.EVENT_READ)
        self._sel.register(self._cap_fd, selectors.EVENT_READ)
        self._open = {self._out_fd, self._cap_fd}

    # -- reading and liveness ------------------------------------------------------------------------------------

    def _read(self, fd: int) -> None:
        try:
            data = os.read(fd, 1 << 16)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self._sel.unregister(fd)
            self._open.discard(fd)
        elif fd == self._cap_fd:
            self.output.feed(data)
        else:
            self._proto += data

    def _drain(self) -> None:
        """Read whatever is already in the pipes without waiting (a leftover grandchild may keep them open)."""
        for fd in (self._out_fd, self._cap_fd):
            for _ in range(64):
                if fd not in self._open:
                    break
                before = len(self._proto) + len(self.output.pending)
                self._read(fd)
                if fd in self._open and len(self._proto) + len(self.output.pending) == before:
                    break

    def _exit_status(self) -> int | None:
        """The child's exit code if it has exited, without reaping it: while it is unreaped its pid (and process
        group id) cannot be reused, so a later killpg can never hit an unrelated process."""
        if self.exited is None:
            try:
                info = os.waitid(os.P_PID, self.proc.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
            except ChildProcessError:
                info = None
            if info is not None:
                if info.si_code == os.CLD_EXITED:
                    self.exited = info.si_status
                else:
                    self.exited = -info.si_status
        return self.exited

    def _wait_exit(self, timeout: float) -> int | None:
        end = time.monotonic() + timeout
        while (code := self._exit_status()) is None and time.monotonic() < end:
            time.sleep(0.005)
        return code

    def _pop_line(self) -> bytes | None:
        end = self._proto.find(b"\n")
        if end < 0:
            return None
        line = bytes(self._proto[:end])
        del self._proto[: end + 1]
        return line

    # -- requests ------------------------------------------------------------------------------------------------

    def request(self, message: dict | None, timeout: float) -> tuple[str, object]:
        """Send `message` (None: only wait, for the ready line) and wait for one reply line.

        Returns ("reply", dict), ("timeout", None) or ("dead", reason)."""
        deadline = time.monotonic() + timeout
        pending = memoryview(json.dumps(message).encode("utf-8", "surrogatepass") + b"\n") if message else None
        if pending is not None:
            self._sel.register(self._in_fd, selectors.EVENT_WRITE)
        try:
            while True:
                line = self._pop_line()
                if line is not None:
                    return self._parse(line)
                if len(self._proto) > _child.MAX_MESSAGE:
                    return "dead", f"the sandbox sent an oversized reply (over {_child.MAX_MESSAGE} bytes)"
                code = self._exit_status()
                if code is None and self._out_fd not in self._open:
                    # EOF on the reply pipe: the worker is gone, its supervisor follows within milliseconds.
                    # Wait a little for it so that the verdict can say how the worker died.
                    code = self._wait_exit(min(1.0, max(0.0, deadline - time.monotonic())))
                if code is not None or self._out_fd not in self._open:
                    self._drain()
                    line = self._pop_line()
                    if line is not None:
                        return self._parse(line)
                    if code is None:
                        return "dead", "the sandbox closed its reply pipe"
                    return "dead", f"the sandbox process {_describe_exit(code)}"
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return "timeout", None
                # Short waits so that a dead child is noticed even when a grandchild keeps the pipes open.
                for key, _ in self._sel.select(min(remaining, 0.05)):
                    if key.fd == self._in_fd:
                        try:
                            pending = pending[os.write(self._in_fd, pending[: 1 << 16]):]
                        except BlockingIOError:
                            continue
                        except OSError:  # EPIPE: the child is gone; the liveness check reports it
                            pending = pending[len(pending):]
                        if not pending:
                            self._sel.unregister(self._in_fd)
                    else:
                        self._read(key.fd)
        finally:
            if pending:  # unfinished write (timeout or death): the child is stopped next anyway
                self._sel.unregister(self._in_fd)

    @staticmethod
    def _parse(line: bytes) -> tuple[str, object]:
        try:
            reply = json.loads(line)
        except (ValueError, RecursionError):
            return "dead", "the sandbox sent a malformed reply"
        if type(reply) is not dict:
            return "dead", "the sandbox sent a malformed reply"
        return "reply", reply

    # -- teardown ------------------------------------------------------------------------------------------------

    def stop(self) -> None:
        """Kill the child and everything it started, reap it, close the pipes. Idempotent, thread-safe enough for
        Sandbox.close() racing a job thread (both paths only signal an unreaped pid)."""
        with self._stop_lock:
            if not self.reaped:
                self._stop()

    def _stop(self) -> None:
        pid = self.proc.pid
        # The supervisor (C) kills the worker side on SIGTERM: with a PID namespace the kernel then kills all of
        # it; without one C kills and reaps its leftovers itself. Killing C's group straight away would orphan
        # them instead.
        self._signal(lambda: os.kill(pid, signal.SIGTERM))
        try:
            self.proc.wait(STOP_GRACE_S)
        except subprocess.TimeoutExpired:
            # Last resort: SIGKILL the child's process group (it is the session leader: pgid == pid). Safe from
            # pid reuse because the child is not reaped yet.
            self._signal(lambda: os.killpg(pid, signal.SIGKILL))
            self.proc.wait()
        self.reaped = True
        if self.exited is None:
            self.exited = self.proc.returncode
        self._drain()
        self._sel.close()
        for stream in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            with contextlib.suppress(OSError):  # a pipe the dead child left broken: closing it is all we need
                stream.close()

    @staticmethod
    def _signal(send) -> None:
        try:
            send()
        except ProcessLookupError:
            return  # already exited: nothing to signal
        except PermissionError as exc:  # cannot happen for our own child; never silently ignore it
            raise RuntimeError(f"cannot signal the sandbox child: {exc}") from exc


class Sandbox:
    """Runs untrusted verifier functions (AutoIF) in isolated child processes. See README.md for the threat model.

    `isolation`: "auto" (bwrap when it is installed, else the child's own namespaces), "bwrap", "namespaces" (kernel
    namespaces set up by the child, mount namespace included), or "none" (the fallback used where namespaces are
    unavailable: Python-level socket block, process-group kill; the tests use it to exercise that path).
    `require_mounts=True` refuses to start without a private root (bwrap or the mount namespace)."""

    network_isolation: str  # "namespace" or "socket_block"
    process_isolation: str  # "pid_namespace" or "process_group"
    filesystem_isolation: str  # "bwrap", "mount_namespace" or "none"
    mode: str  # the mode that runs the jobs: "bwrap", "namespaces" or "none"

    def __init__(self, limits: Limits = Limits(), *, isolation: str = "auto", require_mounts: bool = False):
        if isolation not in ISOLATIONS:
            raise ValueError(f"unknown sandbox isolation {isolation!r}; one of {', '.join(ISOLATIONS)}")
        self.limits = limits
        self._lock = threading.Lock()
        self._live: set[_Child] = set()
        self._closed = False
        self._root = os.geteuid() == 0
        self._bwrap = find_bwrap()
        self._plan = root_plan(limits.tmp_mb << 20)
        # A base directory that others can traverse (0711) but not list; each job directory inside it belongs to the
        # job's uid. /tmp rather than tempfile.gettempdir(): TMPDIR may point into a root-only (0700) directory.
        base_parent = "/tmp" if os.path.isdir("/tmp") else tempfile.gettempdir()
        self._base = tempfile.mkdtemp(prefix="engine-sandbox-", dir=base_parent)
        os.chmod(self._base, 0o711)
        self._finalizer = weakref.finalize(self, shutil.rmtree, self._base, True)
        # As root, every job gets its own uid and (where the cgroup v1 hierarchy is writable) its own cgroups.
        self._uids = UidPool(limits.uid_first, limits.uid_count) if self._root else None
        self._cgroup_parents = cgroup_parents() if self._root else {}
        self.cgroups = sorted(self._cgroup_parents)  # the controllers that cap each job: "memory", "pids"
        self._job_count = 0
        self._pool = ThreadPoolExecutor(max_workers=limits.workers, thread_name_prefix="sandbox")
        try:
            self._start(isolation, require_mounts)
        except BaseException:
            self.close()
            raise

    @property
    def isolation(self) -> str:
        """What AutoIF records per row and in summary.json: network/process/filesystem isolation."""
        return f"{self.network_isolation}/{self.process_isolation}/{self.filesystem_isolation}"

    def _start(self, isolation: str, require_mounts: bool) -> None:
        """Start one child per candidate mode until one runs, to learn (and check) which isolation is in effect."""
        if isolation == "bwrap" and self._bwrap is None:
            raise RuntimeError(f"sandbox isolation 'bwrap' asked for, but bwrap is not installed: {INSTALL_HINT}")
        candidates = [isolation] if isolation != "auto" else ["bwrap", "namespaces"] if self._bwrap else ["namespaces"]
        problems = [] if self._bwrap or isolation == "none" else ["bwrap is not installed"]
        for mode in candidates:
            info = self._probe(mode, problems)
            if info is not None:
                break
        else:
            raise RuntimeError(f"the sandbox child did not start: {'; '.join(problems)}")
        self.mode = mode
        self.network_isolation, self.process_isolation, self.filesystem_isolation = self._modes(info)
        self.drops_privileges = bool(info.get("dropped_privileges"))
        if info.get("filesystem_error"):
            problems.append(f"no mount namespace: {info['filesystem_error']}")
        if require_mounts and self.filesystem_isolation == "none":
            raise RuntimeError("autoif.sandbox.require=strict: verifiers would run without mount isolation (they "
                               f"could read world-readable files and see host processes): {'; '.join(problems)}. "
                               f"To fix it, {INSTALL_HINT} and run the engine as root, or set "
                               "autoif.sandbox.require=auto to accept the weaker isolation")

    def _probe(self, mode: str, problems: list[str]) -> dict | None:
        """The ready message of one child started in `mode`, or None (with the reason added to `problems`)."""
        output = _Output(1 << 16)
        uid, lock = self._uids.claim() if self._uids else (None, None)
        workdir, cgroup = None, None
        try:
            workdir = self._make_workdir(uid)
            cgroup = self._make_cgroup()
            child = _Child(self, mode, workdir, output, uid, cgroup)
            try:
                kind, info = child.request(None, STARTUP_TIMEOUT_S)
            finally:
                child.stop()
        finally:
            if workdir is not None:
                shutil.rmtree(workdir, ignore_errors=True)
            self._remove_cgroup(cgroup, lock)
        if kind != "reply" or not info.get("ready"):
            reason = {"dead": info, "timeout": "timed out"}.get(kind, "unexpected first message")
            problems.append(f"{mode}: {reason}; its output: {output.take()[-2000:]}")
            return None
        return info

    @staticmethod
    def _modes(info: dict) -> tuple[str, str, str]:
        network = "namespace" if info.get("network") == "namespace" else "socket_block"
        process = "pid_namespace" if info.get("pid_namespace") else "process_group"
        filesystem = info.get("filesystem") if info.get("filesystem") in ("bwrap", "mount_namespace") else "none"
        return network, process, filesystem

    # -- public API ----------------------------------------------------------------------------------------------

    def check(self, func_source: str, cases: list[tuple[str, object]]) -> list[Verdict]:
        """Define `evaluate` from `func_source` in a fresh child and judge it on each (input, expected) case:
        pass if `evaluate(input) == expected`, fail if not, error if defining or calling it raised or the process
        died, timeout if one call took longer than `limits.wall_s`. Safe to call from any thread."""
        return self.check_many([(func_source, cases)])[0]

    def check_many(self, jobs: list[tuple[str, list[tuple[str, object]]]]) -> list[list[Verdict]]:
        """Run jobs in parallel, `limits.workers` at a time; verdicts come back in job order."""
        prepared = [(source, self._prepare(source, cases)) for source, cases in jobs]
        if self._closed:
            raise RuntimeError("the sandbox is closed")
        futures = [self._pool.submit(self._run_job_safely, source, cases) for source, cases in prepared]
        return [future.result() for future in futures]

    def close(self) -> None:
        with self._lock:
            self._closed = True
            live = list(self._live)
        for child in live:  # running jobs see their child die and report an error
            child.stop()
        self._pool.shutdown(wait=True, cancel_futures=True)
        self._finalizer()

    def __enter__(self) -> Sandbox:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- jobs ----------------------------------------------------------------------------------------------------

    @staticmethod
    def _prepare(source: str, cases) -> list[tuple[object, object]]:
        """Encode inputs up front: a caller's bad input is the caller's error, raised here, not a verdict."""
        if not isinstance(source, str):
            raise TypeError("func_source must be a str")
        prepared = []
        for case in cases:
            case_input, expected = case
            try:
                prepared.append((_child.encode_value(case_input), expected))
            except (TypeError, ValueError) as exc:
                raise ValueError(f"case input {case_input!r:.80} cannot be sent to the sandbox: {exc}") from exc
        return prepared

    def _make_workdir(self, uid: int | None) -> str:
        """The job's host directory: its workdir without mount isolation (owned by the job's uid), else only the
        place the child starts in (the mount namespace lays the job's root over it)."""
        path = tempfile.mkdtemp(prefix="job-", dir=self._base)
        if uid is not None:
            os.chown(path, uid, uid)
        return path

    def _make_cgroup(self) -> JobCgroup | None:
        if not self._cgroup_parents:
            return None
        with self._lock:
            self._job_count += 1
            name = f"engine-sandbox-{os.getpid()}-{self._job_count}"
        limits = self.limits
        # All of the job's processes together: the worker's processes plus the supervisors; its memory (tmpfs pages
        # included) plus 64 MiB for the supervisors' interpreters.
        memory = (limits.memory_mb + 2 * limits.tmp_mb + 64) << 20
        return JobCgroup(self._cgroup_parents, name, limits.processes + SUPERVISOR_PROCESSES, memory)

    def _remove_cgroup(self, cgroup: JobCgroup | None, uid_lock: int | None) -> None:
        """Kill what is left of the job and delete its cgroups; only then may its uid go to another job."""
        try:
            if cgroup is not None:
                cgroup.remove()
        finally:
            if uid_lock is not None:
                UidPool.release(uid_lock)

    def _run_job_safely(self, source: str, cases: list) -> list[Verdict]:
        try:
            return self._run_job(source, cases)
        except Exception as exc:  # an engine-side bug must not take the other jobs down
            verdict = Verdict("error", _bounded(f"sandbox failure: {type(exc).__name__}: {exc}"), "")
            return [verdict] * len(cases)

    def _spawn(self, workdir: str, output: _Output, uid: int | None, cgroup: JobCgroup | None) -> _Child:
        with self._lock:
            if self._closed:
                raise RuntimeError("the sandbox is closed")
            child = _Child(self, self.mode, workdir, output, uid, cgroup)
            self._live.add(child)
            return child

    def _retire(self, child: _Child) -> None:
        child.stop()
        with self._lock:
            self._live.discard(child)

    def _run_job(self, source: str, cases: list) -> list[Verdict]:
        limits = self.limits
        output = _Output(limits.output_kb * 1024)
        verdicts: list[Verdict] = []
        uid, lock = self._uids.claim() if self._uids else (None, None)
        workdir, cgroup = None, None
        try:
            workdir = self._make_workdir(uid)
            cgroup = self._make_cgroup()
            # One child serves the cases in order. A call that times out or kills its process costs that case
            # only: the remaining cases get a fresh child (which defines `evaluate` again).
            while len(verdicts) < len(cases):
                child = self._spawn(workdir, output, uid, cgroup)
                try:
                    failed = self._start_child(child, source)
                    if failed is not None:  # cannot define evaluate: every remaining case gets the same verdict
                        child.stop()
                        failed = Verdict(failed[0], failed[1], output.take())
                        verdicts.extend([failed] * (len(cases) - len(verdicts)))
                        break
                    while len(verdicts) < len(cases):
                        encoded_input, expected = cases[len(verdicts)]
                        kind, reply = child.request({"op": "call", "input": encoded_input}, limits.wall_s)
                        if kind == "reply":
                            verdicts.append(self._judge(reply, expected, output.take()))
                            continue
                        child.stop()  # timed out or died: kill it, collect what it printed, start over
                        if kind == "timeout":
                            detail = f"evaluate did not return within {limits.wall_s:g} s (wall clock)"
                            verdicts.append(Verdict("timeout", detail, output.take()))
                        else:
                            verdicts.append(Verdict("error", _bounded(str(reply)), output.take()))
                        break
                finally:
                    self._retire(child)
        finally:
            if workdir is not None:
                shutil.rmtree(workdir, ignore_errors=True)
            self._remove_cgroup(cgroup, lock)
        return verdicts

    def _start_child(self, child: _Child, source: str) -> tuple[str, str] | None:
        """Wait for the child's ready line, then define `evaluate`. None on success, else (status, detail)."""
        kind, reply = child.request(None, STARTUP_TIMEOUT_S)
        if kind != "reply" or not reply.get("ready"):
            return "error", _bounded(f"the sandbox did not start: {reply if kind == 'dead' else 'timed out'}")
        child.info = reply
        # Fail closed: every job must run with the isolation the sandbox reported when it started.
        modes = self._modes(reply)
        if modes != (self.network_isolation, self.process_isolation, self.filesystem_isolation):
            return "error", f"sandbox isolation degraded to {'/'.join(modes)}; job not run"
        kind, reply = child.request({"op": "define", "source": source}, self.limits.wall_s)
        if kind == "timeout":
            return "timeout", f"defining evaluate did not finish within {self.limits.wall_s:g} s (wall clock)"
        if kind == "dead":
            return "error", _bounded(f"{reply} while defining evaluate")
        if "error" in reply:
            return "error", _bounded(str(reply["error"]))
        if reply.get("ok") is not True:
            return "error", "the sandbox sent a malformed reply"
        return None

    @staticmethod
    def _judge(reply: dict, expected, output: str) -> Verdict:
        if "error" in reply:
            return Verdict("error", _bounded(str(reply["error"])), output)
        if "result" not in reply:
            return Verdict("error", "the sandbox sent a malformed reply", output)
        try:
            result = _child.decode_value(reply["result"])
        except (TypeError, ValueError, RecursionError):
            return Verdict("error", "the sandbox sent a malformed result", output)
        try:
            equal = bool(result == expected)
        except Exception as exc:  # `expected` is the caller's object; a failing comparison is reported, not raised
            return Verdict("error", _bounded(f"comparing the result with the expected output raised {exc!r}"), output)
        if equal:
            return Verdict("pass", "", output)
        return Verdict("fail", _bounded(f"evaluate returned {result!r}, expected {expected!r}"), output)
