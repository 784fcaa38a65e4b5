"""The child side of the verifier sandbox: the only place where untrusted verifier code ever runs.

The parent (`engine.sandbox.supervisor`) starts this file as a fresh interpreter:

    python -I -S -B -u _child.py CONFIG_JSON

with stdin/stdout as the protocol pipes, stderr as the output-capture pipe, a new session (so the parent can kill the
process group), a scrubbed environment and a throw-away working directory as cwd. It starts as whoever the engine
runs as (root on our machines), joins the job's cgroups (if any) before it starts anything, and then, before any
verifier code runs, isolates itself in one of three ways (`isolation` in the config):

  * `bwrap`: it execs bubblewrap with the command line the parent built (`isolation.bwrap_argv`): new network, PID,
    IPC and UTS namespaces and a minimal root. Inside, this file runs again (from /sandbox/_child.py) as the
    namespace init `I` below, with only CAP_SETUID, CAP_SETGID and CAP_CHOWN;
  * `namespaces`: new network and PID namespaces through libc `unshare`, and in the PID namespace's init a mount
    namespace with the same minimal root built by mount(2) and pivot_root(2) (`_build_root`); where the kernel
    refuses, weaker fallbacks (see README.md);
  * `none`: no namespaces; a Python-level socket block instead.

Then, in every mode: rlimits (CPU, AS, FSIZE, NPROC, CORE=0); the drop to the job's own uid/gid (no supplementary
groups) when started as root; stdout/stderr of the verifier to the capture pipe, the protocol on private fds, stdin
/dev/null.

Process trees. With a PID namespace (the normal case as root):

    engine -- C: supervisor (root, host PID ns) -- I: init of the new PID ns (root, pid 1) -- W: worker (job uid)
    engine -- bwrap -- bwrap's init (pid 1) -- I: this file (root, 3 capabilities) -- W: worker (job uid)

When the namespace's pid 1 exits, the kernel SIGKILLs everything left in the namespace: fork bombs, daemons that
called setsid(), double-forked grandchildren, all of it. C stays outside the namespace so that nothing inside can
see or signal it; on SIGTERM from the engine it kills I. bwrap dies on the engine's SIGTERM and its init follows
(--die-with-parent). Without a PID namespace:

    engine -- C: supervisor (root, child subreaper) -- W: worker (job uid, its own process group)

and C kills the worker's process group, then kills and reaps whatever escaped it and was re-parented to C. In all
trees the worker's parent is a root process that only waits: `os.kill(os.getppid(), 9)` gets EPERM.

Protocol, one JSON object per line. Parent -> child: {"op": "define", "source": str} then {"op": "call", "input":
value} per case. Child -> parent: first {"ready": ...}, then per request {"ok": true} / {"result": value} /
{"error": str}. Values use the tagged encoding below so the parent can rebuild plain Python values (and compare them
with the expected output itself: the child never sees the expected outputs).

This module must stay stdlib-only and importable without side effects: the parent imports it for the value codec.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys

# Tagged encoding of plain values. JSON already round-trips None/bool/int/float/str exactly in Python; containers
# and bytes become {"$t": type-name, "v": items} so that a tuple stays a tuple and a set stays a set.
TAG = "$t"
MAX_DEPTH = 100
MAX_DETAIL = 2000  # characters of exception text sent back
MAX_MESSAGE = 1 << 20  # bytes of one protocol line; the parent refuses longer ones

CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000
PR_SET_DUMPABLE = 4
PR_SET_CHILD_SUBREAPER = 36
PR_SET_NO_NEW_PRIVS = 38
CLONE_NEWNS = 0x00020000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 1, 2, 4, 8
MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = 32, 4096, 16384, 1 << 18
MNT_DETACH = 2
SYS_PIVOT_ROOT = {"x86_64": 155, "aarch64": 41}  # glibc has no pivot_root() wrapper
DEVICES = ("null", "zero", "full", "random", "urandom")

# Modules imported before privileges are dropped. On this machine the interpreter lives under /root (mode 0700), so
# without a mount-isolated root (which shows the interpreter's prefix readable) the worker can only import what is
# already in sys.modules. These cover what AutoIF-style verifiers use (text checks) plus a few the tests poke at.
PRELOAD = (
    "re", "json", "string", "math", "collections", "itertools", "functools", "unicodedata", "datetime", "random",
    "statistics", "textwrap", "difflib", "operator", "copy", "typing", "dataclasses", "enum", "decimal",
    "fractions", "html", "base64", "hashlib", "struct", "time", "heapq", "bisect", "io", "socket", "ctypes",
    "subprocess", "threading", "traceback", "keyword", "csv", "urllib.parse", "ast", "errno", "resource",
    "encodings.ascii", "encodings.latin_1", "encodings.utf_16", "encodings.utf_32", "encodings.cp1252",
    "encodings.idna",  # socket.getaddrinfo / create_connection encode host names with it
)


class UnsupportedValue(TypeError):
    """A value of a type the codec does not carry (anything but plain built-in data)."""


def encode_value(value, _depth=0):
    """A JSON-ready form of `value`; exact type checks so that subclasses (with their own __eq__) are refused."""
    kind = type(value)
    if value is None or kind is bool or kind is int or kind is float or kind is str:
        return value
    if _depth >= MAX_DEPTH:
        raise ValueError("value is nested too deeply")
    if kind is list or kind is tuple or kind is set or kind is frozenset:
        return {TAG: kind.__name__, "v": [encode_value(item, _depth + 1) for item in value]}
    if kind is dict:
        pairs = [[encode_value(k, _depth + 1), encode_value(v, _depth + 1)] for k, v in value.items()]
        return {TAG: "dict", "v": pairs}
    if kind is bytes:
        return {TAG: "bytes", "v": value.hex()}
    raise UnsupportedValue(f"{kind.__module__}.{kind.__qualname__}")


_CONTAINERS = {"list": list, "tuple": tuple, "set": set, "frozenset": frozenset}


def decode_value(obj, _depth=0):
    """Inverse of encode_value. Raises ValueError/TypeError on anything it did not produce (the parent treats the
    child's messages as untrusted: a verifier can write to the protocol fd itself)."""
    kind = type(obj)
    if obj is None or kind is bool or kind is int or kind is float or kind is str:
        return obj
    if _depth >= MAX_DEPTH:
        raise ValueError("value is nested too deeply")
    if kind is not dict or set(obj) != {TAG, "v"}:
        raise ValueError("malformed value")
    tag, items = obj[TAG], obj["v"]
    if tag == "bytes" and type(items) is str:
        return bytes.fromhex(items)
    if type(items) is not list:
        raise ValueError("malformed value")
    if tag in _CONTAINERS:
        return _CONTAINERS[tag](decode_value(item, _depth + 1) for item in items)
    if tag == "dict":
        out = {}
        for pair in items:
            if type(pair) is not list or len(pair) != 2:
                raise ValueError("malformed dict item")
            out[decode_value(pair[0], _depth + 1)] = decode_value(pair[1], _depth + 1)
        return out
    raise ValueError(f"unknown value tag {tag!r}")


# --------------------------------------------------------------------------------------------------------------
# Everything below runs only in the child process.


def _unshare(flags: int) -> bool:
    """libc unshare(2) through ctypes (Python 3.11 has no os.unshare). False where unavailable or refused."""
    try:
        import ctypes

        return ctypes.CDLL(None, use_errno=True).unshare(flags) == 0
    except (OSError, AttributeError):
        return False


def _isolate_namespaces(wanted: bool) -> tuple[str, bool]:
    """Enter new namespaces; returns (network mode, whether a new PID namespace was created for our children)."""
    if not wanted:
        return "socket_block", False
    # As non-root, a new user namespace is what grants the right to create the others (where the kernel allows it).
    user = 0 if os.geteuid() == 0 else CLONE_NEWUSER
    if _unshare(user | CLONE_NEWNET | CLONE_NEWPID):
        return "namespace", True
    if _unshare(user | CLONE_NEWNET):
        return "namespace", False
    return "socket_block", False


def _join_cgroups(procs_files: list[str]) -> None:
    """Move this process into the job's cgroups before it starts anything: every later process inherits them."""
    for path in procs_files:
        with open(path, "w") as f:
            f.write(str(os.getpid()))


def _mount(source, target: str, fstype, flags: int, data=None) -> None:
    import ctypes

    encode = lambda text: None if text is None else os.fsencode(text)  # noqa: E731
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.mount(encode(source), encode(target), encode(fstype), flags, encode(data)) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"mount {fstype or source} on {target}: {os.strerror(err)}")


def _build_root(plan: list, mountpoint: str) -> None:
    """The `namespaces` mode's minimal root: a new mount namespace, `plan` (the same one bwrap gets) laid out on a
    tmpfs over `mountpoint`, and pivot_root into it; the host's tree is then detached. Runs as root in the PID
    namespace's init, so the fresh /proc shows that namespace only."""
    import ctypes
    import platform

    number = SYS_PIVOT_ROOT.get(platform.machine())
    if number is None:
        raise OSError(f"pivot_root: unknown syscall number on {platform.machine()}")
    if not _unshare(CLONE_NEWNS):
        raise OSError("unshare(CLONE_NEWNS) was refused")
    _mount(None, "/", None, MS_REC | MS_PRIVATE)  # nothing done here propagates back to the host
    root = mountpoint
    _mount("tmpfs", root, "tmpfs", MS_NOSUID | MS_NODEV, "size=1m,mode=0755")
    quiet = MS_NOSUID | MS_NODEV
    for step in plan:
        kind = step[0]
        target = root + (step[2] if kind in ("ro-bind", "symlink") else step[1])
        if kind == "ro-bind":
            if os.path.isdir(step[1]):
                os.makedirs(target, exist_ok=True)
            else:
                os.makedirs(os.path.dirname(target), exist_ok=True)
                open(target, "a").close()
            _mount(step[1], target, None, MS_BIND | MS_REC)
            _mount(None, target, None, MS_REMOUNT | MS_BIND | MS_RDONLY | quiet)
        elif kind == "symlink":
            os.symlink(step[1], target)
        elif kind == "hide":
            _mount("tmpfs", target, "tmpfs", MS_RDONLY | quiet, "size=4k,mode=0555")
        elif kind == "proc":
            os.makedirs(target)
            _mount("proc", target, "proc", quiet | MS_NOEXEC)
        elif kind == "dev":
            os.makedirs(target)
            _mount("tmpfs", target, "tmpfs", MS_NOSUID | MS_NOEXEC, "size=64k,mode=0755")
            for name in DEVICES:
                open(f"{target}/{name}", "a").close()
                _mount(f"/dev/{name}", f"{target}/{name}", None, MS_BIND)
            for k, name in enumerate(("stdin", "stdout", "stderr")):
                os.symlink(f"/proc/self/fd/{k}", f"{target}/{name}")
            os.symlink("/proc/self/fd", f"{target}/fd")
        elif kind == "tmpfs":
            os.makedirs(target, exist_ok=True)
            _mount("tmpfs", target, "tmpfs", quiet, f"size={step[2]},mode={step[3]:o}")
        else:
            raise OSError(f"unknown root plan step {kind!r}")
    os.chdir(root)
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.syscall(number, b".", b".") != 0:  # the new root stacks over the old one at "/" ...
        raise OSError(ctypes.get_errno(), "pivot_root failed")
    if libc.umount2(b".", MNT_DETACH) != 0:  # ... which is then detached: the host tree is gone from this namespace
        raise OSError(ctypes.get_errno(), "detaching the host's root failed")
    os.chdir("/")
    _mount(None, "/", None, MS_REMOUNT | MS_RDONLY | quiet)


def _block_sockets() -> None:
    """Fallback when no network namespace could be made: make Python's socket constructors raise. This only stops
    Python-level sockets (not `_socket` reached some other way, ctypes, or a subprocess): see README.md."""
    import _socket
    import errno
    import socket

    def denied(*args, **kwargs):
        raise PermissionError(errno.EACCES, "network access is disabled in the sandbox (socket_block mode)")

    for module in (socket, _socket):
        for name in ("socket", "SocketType", "socketpair", "fromfd", "create_connection", "create_server",
                     "getaddrinfo", "gethostbyname", "gethostbyname_ex", "gethostbyaddr", "getnameinfo"):
            if hasattr(module, name):
                setattr(module, name, denied)


def _set_limits(cfg: dict) -> None:
    import resource

    def limit(which, soft, hard=None):
        hard = soft if hard is None else hard
        if os.geteuid() != 0:  # a non-root process cannot raise its hard limit: stay under the current one
            current = resource.getrlimit(which)[1]
            if current != resource.RLIM_INFINITY:
                soft, hard = min(soft, current), min(hard, current)
        resource.setrlimit(which, (soft, hard))

    mib = 1 << 20
    # CPU: SIGXCPU at the soft limit, SIGKILL one second later at the hard limit.
    limit(resource.RLIMIT_CPU, cfg["cpu_s"], cfg["cpu_s"] + 1)
    limit(resource.RLIMIT_AS, cfg["memory_mb"] * mib)
    limit(resource.RLIMIT_FSIZE, cfg["file_mb"] * mib)
    # Counted per real uid and ignored for root: effective after the drop to the job's own uid (one per job).
    limit(resource.RLIMIT_NPROC, cfg["processes"])
    limit(resource.RLIMIT_CORE, 0)


def _drop_privileges(uid: int, gid: int) -> bool:
    """Become the job's uid/gid when running as root. Returns whether privileges were dropped."""
    if os.geteuid() != 0:
        return False
    os.setgroups([])  # root's supplementary groups (gid 0) would otherwise survive the drop
    os.setgid(gid)
    os.setuid(uid)  # as root, sets real, effective and saved uid: there is no way back
    try:
        os.setuid(0)
    except PermissionError:
        return True
    raise RuntimeError("privilege drop failed: could regain root")


def _prctl(option: int, value: int) -> None:
    # Best effort: prctl is Linux-only; where it is missing the other limits still hold.
    with contextlib.suppress(OSError, AttributeError):
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(option, value, 0, 0, 0)


def _to_devnull(*fds: int) -> None:
    null = os.open(os.devnull, os.O_RDWR)
    for fd in fds:
        os.dup2(null, fd)
    os.close(null)


def _exit_code(status: int) -> int:
    """A wait status as a shell-style exit code (128 + signal) so it survives being passed up by C and I."""
    code = os.waitstatus_to_exitcode(status)
    return 128 - code if code < 0 else code


def _describe(exc: BaseException) -> str:
    """Exception text plus the verifier line it came from, bounded."""
    import traceback

    try:
        text = "".join(traceback.format_exception_only(type(exc), exc)).strip()
    except BaseException:  # a hostile __str__ may raise anything
        text = type(exc).__name__
    line, tb = None, exc.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == "<verifier>":
            line = tb.tb_lineno
        tb = tb.tb_next
    if line is not None:
        text += f" (verifier line {line})"
    return text[:MAX_DETAIL]


class _Worker:
    """W: reads requests, runs the verifier, writes replies."""

    def __init__(self, proto_in: int, proto_out: int):
        self.pid = os.getpid()
        self.reader = os.fdopen(proto_in, "rb", buffering=1 << 16)
        self.proto_out = proto_out
        self.evaluate = None
        # Private references: the verifier shares this interpreter and may monkeypatch json or os. That can only
        # garble its own replies, which the parent validates anyway.
        self._dumps, self._loads, self._write = json.dumps, json.loads, os.write

    def send(self, message: dict) -> None:
        try:
            data = self._dumps(message).encode("utf-8", "surrogatepass") + b"\n"
        except BaseException as exc:  # unencodable, or out of memory (the verifier may still hold most of it)
            data = self._dumps({"error": f"could not transfer the result: {exc!r}"[:MAX_DETAIL]}).encode() + b"\n"
        if len(data) > MAX_MESSAGE:
            data = self._dumps({"error": f"result too large to transfer ({len(data)} bytes)"}).encode() + b"\n"
        view = memoryview(data)
        while view:
            view = view[self._write(self.proto_out, view):]

    def _only_me(self) -> None:
        """A verifier that forked (os.fork, fork bombs) returns into this loop in every copy. Only the real worker
        may answer; copies leave at once instead of reading the parent's next request."""
        if os.getpid() != self.pid:
            os._exit(0)

    def _flush_user_output(self) -> None:
        for stream in (sys.stdout, sys.stderr):
            # The verifier may have replaced or broken these streams; its output is best effort, the verdict not.
            with contextlib.suppress(BaseException):
                stream.flush()

    def define(self, source: str) -> dict:
        try:
            namespace = {"__name__": "verifier"}
            exec(compile(source, "<verifier>", "exec"), namespace)
            evaluate = namespace.get("evaluate")
        except BaseException as exc:  # SystemExit and KeyboardInterrupt included: all are the verifier's errors
            self._only_me()
            return {"error": _describe(exc)}
        self._only_me()
        if not callable(evaluate):
            return {"error": "the verifier source does not define a callable `evaluate`"}
        self.evaluate = evaluate
        return {"ok": True}

    def call(self, encoded_input) -> dict:
        if self.evaluate is None:
            return {"error": "evaluate is not defined"}
        try:
            result = self.evaluate(decode_value(encoded_input))
        except BaseException as exc:
            self._only_me()
            return {"error": _describe(exc)}
        self._only_me()
        try:
            return {"result": encode_value(result)}
        except UnsupportedValue as exc:
            return {"error": f"evaluate returned a {exc}; only plain data (None, bool, int, float, str, bytes, list, "
                             f"tuple, dict, set, frozenset) can be compared outside the sandbox"}
        except BaseException as exc:
            return {"error": f"could not transfer the result: {_describe(exc)}"}

    def serve(self, ready: dict) -> None:
        self.send(ready)
        while True:
            line = self.reader.readline()
            if not line:
                return  # the parent closed the pipe: job done
            request = self._loads(line)
            if request.get("op") == "define":
                reply = self.define(request["source"])
            elif request.get("op") == "call":
                reply = self.call(request["input"])
            else:
                reply = {"error": f"unknown request {request.get('op')!r}"}
            self._flush_user_output()
            self.send(reply)


def _worker_main(cfg: dict, proto_in: int, proto_out: int, state: dict) -> None:
    # Signals as a plain program expects them; SIGXFSZ ignored so that writing past RLIMIT_FSIZE fails with
    # OSError(EFBIG) (a readable error) instead of killing the process.
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    _set_limits(cfg)  # as root, before the drop: afterwards they can only be lowered
    _prctl(PR_SET_NO_NEW_PRIVS, 1)  # setuid binaries run through os.system cannot gain privileges
    if state["filesystem"] != "none":  # the private, size-capped tmpfs workdir becomes the job's and its HOME
        os.chdir(cfg["jobdir"])  # first: under bwrap this root has no CAP_DAC_OVERRIDE to enter it once chowned
        if os.geteuid() == 0:
            os.chown(cfg["jobdir"], cfg["uid"], cfg["gid"])
        os.environ["HOME"] = cfg["jobdir"]
        os.environ.pop("PWD", None)  # bwrap's --chdir adds it; the environment stays PATH, HOME and LANG
    dropped = _drop_privileges(cfg["uid"], cfg["gid"])
    # Not dumpable (the uid change already did this where fs.suid_dumpable=0; make it explicit): a process of the
    # same uid cannot ptrace this one or open its /proc/<pid>/mem or environ.
    _prctl(PR_SET_DUMPABLE, 0)
    os.umask(0o077)
    if state["network"] == "socket_block":
        _block_sockets()
    worker = _Worker(proto_in, proto_out)
    ready = {"ready": True, **state, "uid": os.getuid(), "dropped_privileges": dropped}
    worker.serve(ready)


def _supervise(cfg: dict, proto_in: int, proto_out: int, state: dict) -> None:
    """C: stays root, runs no verifier code, and cleans up after the worker.

    With a PID namespace it forks I (pid 1 of the namespace) and, on SIGTERM from the engine, kills I: the kernel
    then kills every process of the namespace. C is outside the namespace, so nothing inside can see or signal it.

    Without one it forks the worker itself and becomes a "child subreaper": descendants orphaned by the worker
    (double forks, daemons that called setsid()) are re-parented to C instead of the machine's init, so C can find,
    kill and reap all of them before it exits. Reaping them matters: until a zombie is reaped it still counts
    against the job uid's RLIMIT_NPROC."""
    pid_namespace = state["pid_namespace"]
    target = {"pid": None, "stop": False}

    def kill_worker_side(pid: int) -> None:
        # `pid` is always an unreaped child of ours, so neither it nor its process group id can have been reused.
        try:
            if pid_namespace:
                os.kill(pid, signal.SIGKILL)  # I; the kernel then kills the whole namespace
            else:
                os.killpg(pid, signal.SIGKILL)  # the worker's own group: it and all its forks, atomically
        except ProcessLookupError:  # already gone: nothing left to kill
            return

    def on_term(signum, frame):
        target["stop"] = True
        if target["pid"] is not None:
            kill_worker_side(target["pid"])

    signal.signal(signal.SIGTERM, on_term)  # installed before the fork: a SIGTERM can never orphan the child
    if not pid_namespace:
        _prctl(PR_SET_CHILD_SUBREAPER, 1)
    child = os.fork()
    if child == 0:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)  # (pid 1 with SIG_DFL ignores signals from inside its ns)
        if pid_namespace:
            _namespace_init(cfg, proto_in, proto_out, state)  # never returns
        os.setpgid(0, 0)  # C is the session leader and cannot leave its group; the worker gets its own
        _worker_main(cfg, proto_in, proto_out, state)
        os._exit(0)
    if not pid_namespace:
        # Both sides call it, so the group exists before C can kill it; whichever side is second gets EACCES
        # or ESRCH (the child already exec'd or exited), which is fine.
        with contextlib.suppress(OSError):
            os.setpgid(child, child)
    target["pid"] = child
    if target["stop"]:
        kill_worker_side(child)
    os.close(proto_in)
    os.close(proto_out)
    _to_devnull(0, 1, 2)  # hold no pipe open: the engine sees EOF once the worker side is gone
    status = 1 << 8
    while True:
        try:
            # WNOWAIT first: learn which child exited while it is still a zombie, forget it as a kill target,
            # and only then reap it.
            info = os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOWAIT)
        except ChildProcessError:
            break
        if info is None:
            continue
        if info.si_pid == child:
            target["pid"] = None
            if not pid_namespace:
                kill_worker_side(child)  # the worker is gone; its forks go with it (the group id is still valid)
            _, status = os.waitpid(child, 0)
            break
        os.waitpid(info.si_pid, 0)  # an orphan re-parented to us
    if not pid_namespace:
        _kill_leftovers(child)
    os._exit(_exit_code(status))


def _processes() -> list[tuple[int, int, int]]:
    """(pid, ppid, pgrp) of every process, from /proc."""
    out = []
    try:
        names = os.listdir("/proc")
    except OSError:
        return out
    for name in names:
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                fields = f.read().rpartition(b")")[2].split()  # the command name may contain spaces and ")"
            out.append((int(name), int(fields[1]), int(fields[2])))
        except (OSError, IndexError, ValueError):
            continue
    return out


def _kill_leftovers(worker_group: int) -> None:
    """Kill and reap every process left in C's or the worker's process group or re-parented to C (no PID
    namespace). Killing a parent re-parents its children to C, so repeat until none is left."""
    me = os.getpid()
    groups = {os.getpgid(0), worker_group}
    for _ in range(1000):
        victims = [pid for pid, ppid, pgrp in _processes() if pid != me and (ppid == me or pgrp in groups)]
        if not victims:
            return
        for pid in victims:
            with contextlib.suppress(ProcessLookupError):  # it exited between the scan and the kill
                os.kill(pid, signal.SIGKILL)
        while True:
            try:
                pid, _ = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                break


def _namespace_init(cfg: dict, proto_in: int, proto_out: int, state: dict) -> None:
    """I, pid 1 of the new PID namespace (under bwrap: its first process): build the job's root where this mode
    does it itself, fork the worker, reap everything, exit with the worker's status. Its exit makes the kernel (or
    bwrap's init) kill every process left in the namespace."""
    try:
        os.setsid()  # own session and group: the worker's kill(0, ...) / killpg(...) cannot reach C
        if cfg["isolation"] == "namespaces":
            try:
                _build_root(cfg["root"], os.getcwd())
                state = {**state, "filesystem": "mount_namespace"}
            except OSError as exc:  # reported in the ready line: the engine refuses it or records the weaker mode
                state = {**state, "filesystem": "none", "filesystem_error": str(exc)[:MAX_DETAIL]}
        worker = os.fork()
        if worker == 0:
            _worker_main(cfg, proto_in, proto_out, state)
            os._exit(0)
        os.close(proto_in)
        os.close(proto_out)
        _to_devnull(0, 1, 2)
        while True:
            try:
                pid, status = os.wait()
            except ChildProcessError:
                os._exit(1)
            if pid == worker:
                os._exit(_exit_code(status))
    except BaseException:
        os._exit(1)


def main(argv: list[str]) -> None:
    cfg = json.loads(argv[1])
    # Popen already closed every fd but 0-2 (close_fds=True); make sure, in case we were started some other way.
    os.closerange(3, 1 << 16)
    _join_cgroups(cfg.get("cgroups", []))  # before anything forks: bwrap, C and I and W all start inside them
    if cfg.get("exec"):
        os.execv(cfg["exec"][0], cfg["exec"])  # bwrap, which runs this file again inside the job's root
    # Protocol onto private fds (os.dup makes them non-inheritable, so exec'd programs never get them); the
    # verifier's stdout and stderr both go to the capture pipe; its stdin reads nothing.
    proto_in, proto_out = os.dup(0), os.dup(1)
    _to_devnull(0)
    os.dup2(2, 1)
    for name in PRELOAD:
        # Modules verifiers may use, imported while still root (the job uid may not read this interpreter's
        # library); one this Python lacks is simply unavailable to verifiers.
        with contextlib.suppress(ImportError):
            __import__(name)
    if cfg["isolation"] == "bwrap":  # inside bwrap: namespaces and root are in place; this process is I
        state = {"network": "namespace", "pid_namespace": True, "filesystem": "bwrap"}
        _namespace_init(cfg, proto_in, proto_out, state)
    network, pid_namespace = _isolate_namespaces(cfg["isolation"] == "namespaces")
    _supervise(cfg, proto_in, proto_out, {"network": network, "pid_namespace": pid_namespace, "filesystem": "none"})


if __name__ == "__main__":
    main(sys.argv)
