"""Engine-side parts of the sandbox's isolation: the job's minimal root, the bwrap command line, one uid per job and
the job's cgroups. Nothing here runs verifier code; `_child.py` applies what is planned here.

The same root plan serves both mount-isolated modes: `bwrap` turns it into command-line options, and the fallback
(`namespaces`: the child's own mount namespace) replays it with mount(2) before any verifier code runs.
"""

from __future__ import annotations

import errno
import fcntl
import os
import shutil
import signal
import stat
import sys
import sysconfig
import threading
import time

JOB_DIR = "/job"  # the worker's private, size-capped working directory (and HOME) inside the job's root
INNER_CHILD_SCRIPT = "/sandbox/_child.py"  # where bwrap shows the child script inside the root
BWRAP_PATHS = ("/usr/bin/bwrap", "/bin/bwrap", "/usr/local/bin/bwrap")
UID_LOCK_DIR = "/run/engine-sandbox"  # root-only; one lock file per uid in use
CGROUP_V1 = "/sys/fs/cgroup"
SUPERVISOR_PROCESSES = 4  # launcher/bwrap, bwrap's init, the namespace init: counted in pids.max beside the worker
INSTALL_HINT = ("install bubblewrap (`apt-get install -y bubblewrap` on Debian/Ubuntu, `dnf install bubblewrap` on "
                "Fedora)")


def find_bwrap() -> str | None:
    """The bwrap executable: on the engine's PATH, else in the usual system places."""
    found = shutil.which("bwrap")
    if found:
        return found
    return next((path for path in BWRAP_PATHS if os.access(path, os.X_OK)), None)


def interpreter() -> str:
    """The real interpreter binary (a venv's python is a symlink into the base prefix, which the root binds)."""
    return os.path.realpath(sys.executable)


def root_plan(tmp_bytes: int) -> list[list]:
    """The job's whole file system, in order: read-only binds of /usr and the interpreter's prefix (its stdlib; its
    site-packages hidden), a fresh /proc and minimal /dev, and size-capped private tmpfs for /tmp and the workdir.
    Nothing else exists: no /home, /root (beyond the interpreter's own path), /var, /etc, project tree or Ray dirs."""
    plan: list[list] = [["ro-bind", "/usr", "/usr"]]
    for name in ("bin", "sbin", "lib", "lib32", "lib64", "libx32"):
        path = "/" + name
        if os.path.islink(path):  # merged /usr: keep the symlink, its target is already bound
            plan.append(["symlink", os.readlink(path), path])
        elif os.path.isdir(path):
            plan.append(["ro-bind", path, path])
    prefix = os.path.realpath(sys.base_prefix)
    if not prefix.startswith("/usr/") and prefix != "/usr":
        plan.append(["ro-bind", prefix, prefix])
    exe = interpreter()
    if not exe.startswith(prefix + "/") and not exe.startswith("/usr/"):
        plan.append(["ro-bind", exe, exe])
    for key in ("purelib", "platlib"):  # the stdlib only: third-party packages stay out of reach
        site = os.path.realpath(sysconfig.get_paths(vars={"base": prefix, "platbase": prefix})[key])
        if site.startswith(prefix + "/") and os.path.isdir(site) and ["hide", site] not in plan:
            plan.append(["hide", site])
    plan += [["proc", "/proc"], ["dev", "/dev"], ["tmpfs", "/tmp", tmp_bytes, 0o1777],
             ["tmpfs", JOB_DIR, tmp_bytes, 0o700]]
    return plan


def bwrap_argv(bwrap: str, plan: list[list], child_script: str, inner_args: list[str]) -> list[str]:
    """bwrap's command line for one job: new network, PID, IPC and UTS namespaces (cgroup where possible), the root
    of `plan`, and the child script bound read-only at INNER_CHILD_SCRIPT. As root no user namespace is made: the
    child starts as root with only the capabilities it needs to hand the worker its own uid (and chown /job)."""
    argv = [bwrap, "--unshare-net", "--unshare-pid", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try",
            "--die-with-parent", "--hostname", "sandbox"]
    if os.geteuid() == 0:
        argv += ["--cap-drop", "ALL"]
        for cap in ("CAP_SETUID", "CAP_SETGID", "CAP_CHOWN"):
            argv += ["--cap-add", cap]
    else:
        argv += ["--unshare-user"]
    for step in plan:
        kind = step[0]
        if kind == "ro-bind":
            argv += ["--ro-bind", step[1], step[2]]
        elif kind == "symlink":
            argv += ["--symlink", step[1], step[2]]
        elif kind == "hide":
            argv += ["--perms", "0555", "--tmpfs", step[1], "--remount-ro", step[1]]
        elif kind == "proc":
            argv += ["--proc", step[1]]
        elif kind == "dev":
            argv += ["--dev", step[1]]
        elif kind == "tmpfs":
            argv += ["--size", str(step[2]), "--perms", f"{step[3]:04o}", "--tmpfs", step[1]]
        else:
            raise ValueError(f"unknown root plan step {kind!r}")
    argv += ["--ro-bind", child_script, INNER_CHILD_SCRIPT, "--remount-ro", "/", "--chdir", JOB_DIR, "--",
             interpreter(), "-I", "-S", "-B", "-u", INNER_CHILD_SCRIPT, *inner_args]
    return argv


class UidPool:
    """Hands every running job its own uid (and gid) from [first, first + count): RLIMIT_NPROC is counted per uid,
    so one job's fork bomb cannot exhaust another's, and no job can read or write another's files. A claim is an
    flock() on a file in a root-only directory, so sandboxes in other processes (Ray actors on the same node) never
    get the same uid, and a claim dies with the process that held it."""

    def __init__(self, first: int, count: int, lock_dir: str = UID_LOCK_DIR):
        if first <= 0 or count <= 0 or first + count > 2**32 - 2:
            raise ValueError(f"invalid sandbox uid range: first={first}, count={count}")
        self.first, self.count, self.lock_dir = first, count, lock_dir
        os.makedirs(lock_dir, mode=0o700, exist_ok=True)
        info = os.lstat(lock_dir)
        if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.geteuid() or info.st_mode & 0o022:
            raise RuntimeError(f"{lock_dir} must be a directory owned by uid {os.geteuid()} and writable by it "
                               f"only; it is not, so sandbox uid claims there could be forged")
        self._next = 0
        self._lock = threading.Lock()

    def claim(self) -> tuple[int, int]:
        """(uid, lock fd); the uid stays this job's until `release(fd)`."""
        with self._lock:
            start, self._next = self._next, (self._next + 1) % self.count
        for k in range(self.count):  # round robin: a just-released uid is the last to be reused
            uid = self.first + (start + k) % self.count
            fd = os.open(os.path.join(self.lock_dir, f"uid-{uid}.lock"), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                continue
            return uid, fd
        raise RuntimeError(f"all {self.count} sandbox uids from {self.first} are in use by running jobs; raise "
                           f"autoif.sandbox.uid_count (it must cover every concurrent job on this machine)")

    @staticmethod
    def release(fd: int) -> None:
        os.close(fd)  # closing the only descriptor drops the flock


def _own_cgroup(controller: str) -> str | None:
    """This process's cgroup path in a cgroup v1 hierarchy, from /proc/self/cgroup."""
    try:
        with open("/proc/self/cgroup") as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if controller in controllers.split(","):
            return path
    return None


def cgroup_parents() -> dict[str, str]:
    """Writable cgroup v1 directories (this process's own group) for the `pids` and `memory` controllers; job groups
    are made inside them, so they stay under whatever limits the engine itself runs with. cgroup v2 is not used."""
    parents = {}
    for controller in ("pids", "memory"):
        own = _own_cgroup(controller)
        if own is None:
            continue
        parent = os.path.join(CGROUP_V1, controller) + own.rstrip("/")
        if os.path.isfile(os.path.join(parent, "cgroup.procs")) and os.access(parent, os.W_OK):
            parents[controller] = parent
    return parents


class JobCgroup:
    """One job's cgroups: a hard cap on its processes (pids.max) and on its memory, tmpfs included
    (memory.limit_in_bytes). The child joins them before it starts anything; `remove` kills what is left in them
    and deletes them."""

    def __init__(self, parents: dict[str, str], name: str, pids_max: int, memory_bytes: int):
        self.dirs: list[str] = []
        try:
            for controller, parent in parents.items():
                path = os.path.join(parent, name)
                os.mkdir(path)
                self.dirs.append(path)
                if controller == "pids":
                    _write(os.path.join(path, "pids.max"), str(pids_max))
                else:
                    _write(os.path.join(path, "memory.limit_in_bytes"), str(memory_bytes))
        except BaseException:
            self.remove()
            raise

    @property
    def procs_files(self) -> list[str]:
        return [os.path.join(path, "cgroup.procs") for path in self.dirs]

    def remove(self, timeout_s: float = 5.0) -> None:
        """Kill every process still in the groups and delete them. Raises if a group cannot be removed."""
        deadline = time.monotonic() + timeout_s
        for path in reversed(self.dirs):
            while True:
                pids = _read_pids(os.path.join(path, "cgroup.procs"))
                for pid in pids:
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except ProcessLookupError:  # exited since the read
                        continue
                try:
                    os.rmdir(path)
                    break
                except OSError as exc:
                    if exc.errno != errno.EBUSY or time.monotonic() > deadline:
                        raise RuntimeError(f"could not remove the sandbox cgroup {path}: {exc}") from exc
                time.sleep(0.02)  # killed processes leave the group once the kernel has torn them down
        self.dirs = []


def _write(path: str, text: str) -> None:
    with open(path, "w") as f:
        f.write(text)


def _read_pids(path: str) -> list[int]:
    try:
        with open(path) as f:
            return [int(line) for line in f.read().split()]
    except FileNotFoundError:
        return []
