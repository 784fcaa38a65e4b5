"""The engine side of the verifier sandbox: starts, feeds, times and kills the child processes.

Nothing in this module executes verifier code. Each job (one verifier source plus its cases) gets a fresh child
interpreter (`_child.py`) in a throw-away working directory; up to `Limits.workers` jobs run at once, each
supervised by one thread of a ThreadPoolExecutor. The wall-clock limit is enforced here with select() deadlines,
never with SIGALRM: signal handlers only run on the main thread, and `check` must work from any thread.
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

CHILD_SCRIPT = os.path.abspath(_child.__file__)
NOBODY_UID = NOBODY_GID = 65534
STARTUP_TIMEOUT_S = 15.0  # interpreter start + isolation; generous for a loaded 2-CPU machine
STOP_GRACE_S = 5.0  # how long the supervisor gets to tear its PID namespace down before it is SIGKILLed
CHILD_ENV_PATH = "/usr/bin:/bin"


@dataclass(frozen=True)
class Limits:
    wall_s: float = 5.0  # per (function, case) call, and for defining the function; enforced by the parent
    cpu_s: int = 5  # RLIMIT_CPU of the worker process (SIGXCPU, then SIGKILL a second later)
    memory_mb: int = 512  # RLIMIT_AS (address space, per process)
    file_mb: int = 1  # RLIMIT_FSIZE (largest file the worker may write)
    processes: int = 16  # RLIMIT_NPROC: only enforced by Linux for non-root, i.e. after the drop to nobody
    output_kb: int = 64  # captured stdout+stderr kept per job; the rest is read and discarded
    workers: int = 2  # jobs (child processes) running at once

    def __post_init__(self):
        for name in ("wall_s", "cpu_s", "memory_mb", "file_mb", "processes", "workers"):
            if getattr(self, name) <= 0:
                raise ValueError(f"Limits.{name} must be positive")
        if self.output_kb < 0:
            raise ValueError("Limits.output_kb must not be negative")


@dataclass(frozen=True)
class Verdict:
    status: str  # "pass" | "fail" | "error" | "timeout"
    detail: str  # exception text / reason, bounded
    output: str  # captured stdout+stderr, truncated to output_kb


def normalise_expected(value):
    """Map the AutoIF expected-output strings "true"/"True"/"false"/"False" to booleans; anything else unchanged.
    `Sandbox.check` compares `result == expected` with `expected` as given; callers who want this mapping apply it."""
    if isinstance(value, str):
        if value in ("true", "True"):
            return True
        if value in ("false", "False"):
            return False
    return value


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

    def __init__(self, sandbox: Sandbox, workdir: str, output: _Output):
        cfg = {
            "cpu_s": sandbox.limits.cpu_s,
            "memory_mb": sandbox.limits.memory_mb,
            "file_mb": sandbox.limits.file_mb,
            "processes": sandbox.limits.processes,
            "uid": NOBODY_UID,
            "gid": NOBODY_GID,
            "namespaces": sandbox._namespaces,
        }
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

    `namespaces=False` skips the kernel namespaces and uses the fallback isolation (Python-level socket block,
    process-group kill) that is otherwise only used where namespaces are unavailable; the tests use it to exercise
    that path."""

    network_isolation: str  # "namespace" or "socket_block"
    process_isolation: str  # "pid_namespace" or "process_group"

    def __init__(self, limits: Limits = Limits(), *, namespaces: bool = True):
        self.limits = limits
        self._namespaces = namespaces
        self._lock = threading.Lock()
        self._live: set[_Child] = set()
        self._closed = False
        self._root = os.geteuid() == 0
        # A base directory that nobody can traverse (0711) but not list; job directories inside it belong to nobody.
        # /tmp rather than tempfile.gettempdir(): TMPDIR may point into a root-only (0700) directory.
        base_parent = "/tmp" if os.path.isdir("/tmp") else tempfile.gettempdir()
        self._base = tempfile.mkdtemp(prefix="engine-sandbox-", dir=base_parent)
        os.chmod(self._base, 0o711)
        self._finalizer = weakref.finalize(self, shutil.rmtree, self._base, True)
        self._pool = ThreadPoolExecutor(max_workers=limits.workers, thread_name_prefix="sandbox")
        try:
            self._start()
        except BaseException:
            self.close()
            raise

    def _start(self) -> None:
        """Start one child to learn (and check) which isolation is in effect."""
        workdir = self._make_workdir()
        output = _Output(1 << 16)
        try:
            child = _Child(self, workdir, output)
            try:
                kind, info = child.request(None, STARTUP_TIMEOUT_S)
            finally:
                child.stop()
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
        if kind != "reply" or not info.get("ready"):
            reason = {"dead": info, "timeout": "timed out"}.get(kind, "unexpected first message")
            raise RuntimeError(f"the sandbox child did not start ({reason}); its output: {output.take()[-2000:]}")
        self.network_isolation = "namespace" if info.get("network") == "namespace" else "socket_block"
        self.process_isolation = "pid_namespace" if info.get("pid_namespace") else "process_group"
        self.runs_as_nobody = bool(info.get("dropped_privileges"))

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

    def _make_workdir(self) -> str:
        path = tempfile.mkdtemp(prefix="job-", dir=self._base)
        if self._root:
            # Owned by nobody: the worker can write here, and (as nobody) nowhere else but world-writable places.
            os.chown(path, NOBODY_UID, NOBODY_GID)
        return path

    def _run_job_safely(self, source: str, cases: list) -> list[Verdict]:
        try:
            return self._run_job(source, cases)
        except Exception as exc:  # an engine-side bug must not take the other jobs down
            verdict = Verdict("error", _bounded(f"sandbox failure: {type(exc).__name__}: {exc}"), "")
            return [verdict] * len(cases)

    def _spawn(self, workdir: str, output: _Output) -> _Child:
        with self._lock:
            if self._closed:
                raise RuntimeError("the sandbox is closed")
            child = _Child(self, workdir, output)
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
        workdir = self._make_workdir()
        try:
            # One child serves the cases in order. A call that times out or kills its process costs that case
            # only: the remaining cases get a fresh child (which defines `evaluate` again).
            while len(verdicts) < len(cases):
                child = self._spawn(workdir, output)
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
            shutil.rmtree(workdir, ignore_errors=True)
        return verdicts

    def _start_child(self, child: _Child, source: str) -> tuple[str, str] | None:
        """Wait for the child's ready line, then define `evaluate`. None on success, else (status, detail)."""
        kind, reply = child.request(None, STARTUP_TIMEOUT_S)
        if kind != "reply" or not reply.get("ready"):
            return "error", _bounded(f"the sandbox did not start: {reply if kind == 'dead' else 'timed out'}")
        child.info = reply
        # Fail closed: every job must run with the isolation the sandbox reported when it started.
        network = "namespace" if reply.get("network") == "namespace" else "socket_block"
        process = "pid_namespace" if reply.get("pid_namespace") else "process_group"
        if (network, process) != (self.network_isolation, self.process_isolation):
            return "error", f"sandbox isolation degraded to {network}/{process}; job not run"
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
