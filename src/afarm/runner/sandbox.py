# SPDX-License-Identifier: MIT
"""Every task runs in a bubblewrap sandbox: it sees its job and the system's programs, nothing else.

Why bubblewrap (Debian's ``bubblewrap``) and not systemd-run transient units:

- It works wherever a task runs: as the unprivileged ``afarm`` user of an SSH slave (a
  forced command: no user manager, no D-Bus session), in a user's demo, under a master
  whose PID 1 is not systemd (containers, CI). systemd-run needs a running manager, and
  root to run a unit as another user.
- It builds the file system from nothing (an empty root plus the mounts named here), so
  what a task can read is a list in this file, not "everything except what we hid", which
  is what ProtectSystem= and InaccessiblePaths= give.
- It is cheap: +6 ms a process unprivileged, +10 ms as root (two bwraps), +9-11 ms a task
  through the agent, on a busy 2-core machine (benchmarks/sandbox_overhead.py); a
  transient unit is a D-Bus round trip and a fork by PID 1.
What systemd does better is memory accounting by cgroup; see the limits below.

Inside, a task sees:

- /job/in read-only, /job/out and /job/scratch read-write (scratch is HOME, TMPDIR and the
  working directory); the agent's paths in argv are rewritten to these;
- /usr read-only with the usrmerge links (/bin, /lib, ...), and of /etc only
  /etc/alternatives, /etc/ld.so.cache and /etc/localtime (no passwd, ssh, ssl, ...);
- afarm's own scripts and the program's directory read-only, at their own paths, when they
  live outside /usr (a checkout; a Blender release unpacked under the slave's apps/), and
  the admin's [sandbox] read_only_paths;
- its own /proc (own PID namespace), a minimal /dev, GPU device nodes only with
  [sandbox] gpu = yes, a small private /tmp;
- no network (a new, empty network namespace: not even the host's loopback), own IPC and
  UTS namespaces, a read-only root, a new session (no TIOCSTI into the agent's terminal),
  no capabilities, no_new_privs, and it is killed when the agent dies.

Which user runs it:

- The agent is an ordinary user (``afarm`` on an SSH slave, a user running the demo):
  bubblewrap runs unprivileged in a new user namespace, and ``--disable-userns`` keeps the
  task from making more. The task keeps that uid; it can reach only the mounts above.
- The agent is root (the local slaves of a root master, the demo or tests as root):
  bubblewrap runs privileged, keeping only CAP_SETUID/CAP_SETGID/CAP_DAC_OVERRIDE, and
  ``setpriv`` inside switches to a dedicated system user ([sandbox] user, default
  ``afarm-task``, created on demand); a second, unprivileged bubblewrap over the same tree
  then forbids new user namespaces before the task's program starts. Privileged, because
  job dirs sit below 0700 directories that an unprivileged bwrap 0.8 cannot reach (it
  resolves even ``--bind-fd`` sources by path). The task's out/ and scratch are handed to
  that user, in/ made readable.

Limits, set by ``prlimit`` before bubblewrap starts so they bind it and all it starts:
RLIMIT_AS for memory (virtual address space: a cgroup needs a systemd delegation that
neither an SSH session nor a container offers; measured, Blender 3.4 maps 0.93 GiB for a
small Cycles frame and 1.3 GiB with Eevee, 3.5 times what it touches, so the default is
memory and swap plus room for reservations, see default_memory), RLIMIT_NPROC (processes
and threads of the task's uid), RLIMIT_FSIZE (largest file written), RLIMIT_CORE 0.

The packaged master (afarm-master.service, user afarm-master) is neither: its unit keeps
its hardening (no namespaces, no mounts, no capabilities), under which bubblewrap cannot
start, and its tasks must not run as its own user. With [sandbox] helper = auto (the
default) an agent that is not root and may open the socket of ``afarm-sandbox.service``
(/run/afarm-sandbox/socket: root and group afarm-master only) hands each task to that
helper, which runs it as a root agent would, as the task user (sandbox_helper.py; the
wrapper is sandbox_client.py).

Where the sandbox cannot be set up, ``check()`` says what is missing and how to fix it, and
the agent refuses every task with that reason: a task never runs unsandboxed.
"""

from __future__ import annotations

import copy
import dataclasses
import glob
import json
import os
import pwd
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, BinaryIO

from afarm.errors import AfarmError
from afarm.gpu import MAX_DEVICE, pinned_env

BWRAP = "/usr/bin/bwrap"
PRLIMIT = "/usr/bin/prlimit"
SETPRIV = "/usr/bin/setpriv"
JOB = "/job"
INSIDE_IN, INSIDE_OUT, INSIDE_SCRATCH = f"{JOB}/in", f"{JOB}/out", f"{JOB}/scratch"
DEFAULT_USER = "afarm-task"
ADDUSER = ["adduser", "--system", "--group", "--no-create-home", "--home", "/nonexistent",
           "--shell", "/usr/sbin/nologin", "--gecos", "afarm task sandbox", "--quiet"]
MIB = 1 << 20
# Where the usrmerge links point; on a system that is not merged they are directories.
_ROOT_LINKS = ("bin", "sbin", "lib", "lib32", "lib64", "libx32")
# What dynamically linked Debian programs need of /etc (without alternatives, links such as
# /usr/bin/editor dangle; without ld.so.cache every start searches the library path).
_ETC = ("/etc/alternatives", "/etc/ld.so.cache", "/etc/localtime")
_GPU_NODES = ("/dev/dri", "/dev/nvidiactl", "/dev/nvidia-uvm", "/dev/nvidia-uvm-tools",
              "/dev/nvidia-modeset", "/dev/kfd")
_GPU_GLOB = "/dev/nvidia[0-9]*"
# Drivers find their device by walking sysfs, and vendors register ICDs in /etc.
_GPU_READ = ("/sys/dev/char", "/sys/devices", "/etc/OpenCL", "/etc/vulkan", "/etc/glvnd",
             "/etc/nvidia")
PATH = "/usr/bin:/bin"
RECHECK = 30.0  # seconds before a failed check() is tried again
FIX_BWRAP = "install it: apt install bubblewrap"
HELPER_SOCKET = "/run/afarm-sandbox/socket"
CLIENT = str(Path(__file__).resolve().parent / "sandbox_client.py")


class SandboxError(AfarmError):
    """The sandbox cannot run a task here; the message says what is missing and the fix."""


@dataclass(frozen=True)
class SandboxSettings:
    """The [sandbox] section of slave.conf and master.conf."""

    user: str = DEFAULT_USER
    memory_mib: int = 0  # 0: default_memory()
    processes: int = 4096
    file_size_mib: int = 16384
    tmp_mib: int = 256
    gpu: bool = False
    # Set per task, never in a config file: the GPU a task is pinned to ("" none). Its
    # device nodes pass through whatever `gpu` says, and only it is visible (CUDA/HIP).
    gpu_pin: str = ""
    read_only_paths: tuple[str, ...] = ()
    # "auto": afarm-sandbox.service's socket when this non-root agent may open it; "": never;
    # a path: always that socket (tasks fail when it is not there).
    helper: str = "auto"

    @classmethod
    def from_config(cls, section: Mapping[str, Any]) -> SandboxSettings:
        """From a config section; missing keys keep their defaults. Raises ValueError."""
        defaults = asdict(cls())
        unknown = sorted(set(section) - set(defaults))
        if unknown:
            raise ValueError(f"unknown sandbox setting {unknown[0]!r}; known: "
                             + ", ".join(defaults))
        values: dict[str, Any] = {}
        for key, value in section.items():
            default = defaults[key]
            if key == "read_only_paths":
                if not isinstance(value, list | tuple) or not all(
                        isinstance(p, str) and p.startswith("/") for p in value):
                    raise ValueError("sandbox read_only_paths must be a list of absolute "
                                     "paths")
                value = tuple(value)
            elif isinstance(default, bool) or isinstance(default, str):
                if type(value) is not type(default):
                    raise ValueError(f"sandbox {key} must be a {type(default).__name__}")
                if key == "gpu_pin" and value and not (
                        value.isdigit() and int(value) <= MAX_DEVICE):
                    raise ValueError(f"sandbox gpu_pin must be a GPU number 0-{MAX_DEVICE}")
                if key == "helper" and value not in ("", "auto") and not value.startswith("/"):
                    raise ValueError("sandbox helper must be auto, empty or the absolute path "
                                     "of afarm-sandbox's socket")
            elif isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"sandbox {key} must be a whole number >= 0")
            values[key] = value
        return cls(**values)

    def to_json(self) -> str:
        """For the agent's command line (a local slave gets its master's settings)."""
        return json.dumps(asdict(self), separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> SandboxSettings:
        """Inverse of to_json; raises ValueError naming the bad setting."""
        data = json.loads(text)
        if not isinstance(data, dict):
            raise ValueError("sandbox settings must be a JSON object")
        return cls.from_config(data)


@dataclass(frozen=True)
class TaskUser:
    """The system user a root agent's tasks run as."""

    name: str
    uid: int
    gid: int


@dataclass(frozen=True)
class Plan:
    """Everything build_argv needs to know about this machine, gathered by Sandbox."""

    memory_bytes: int  # 0: no RLIMIT_AS
    processes: int
    file_size_bytes: int
    tmp_bytes: int
    user: TaskUser | None  # None: the agent's own uid, in a user namespace
    read_only: tuple[str, ...] = ()  # host dirs bound read-only at their own path
    devices: tuple[str, ...] = ()  # device nodes passed through (GPU)
    gpu_read: tuple[str, ...] = ()  # what GPU drivers read besides their nodes
    root_links: tuple[tuple[str, str], ...] = (("usr/bin", "/bin"), ("usr/sbin", "/sbin"),
                                               ("usr/lib", "/lib"), ("usr/lib64", "/lib64"))
    root_dirs: tuple[str, ...] = ()  # /bin etc. on a system that is not usrmerged
    env: tuple[tuple[str, str], ...] = ()  # set inside besides PATH, HOME, TMPDIR, LANG


def rewrite(argv: Sequence[str], mapping: Mapping[str, str]) -> list[str]:
    """argv with each host directory of the job replaced by its path inside the sandbox."""
    if not mapping:
        return list(argv)
    hosts = sorted(mapping, key=len, reverse=True)
    pattern = re.compile("(?:" + "|".join(re.escape(h) for h in hosts) + r")(?=/|$)")
    return [pattern.sub(lambda m: mapping[m.group(0)], a) for a in argv]


def _ancestors(path: str) -> list[str]:
    parts = Path(path).parts[1:-1]
    return ["/" + "/".join(parts[:i + 1]) for i in range(len(parts))]


def build_argv(argv: Sequence[str], in_dir: Path, out_dir: Path, scratch: Path,
               plan: Plan) -> list[str]:
    """The argv that runs ``argv`` sandboxed: prlimit, bwrap, (setpriv,) the program."""
    head = [PRLIMIT]
    if plan.memory_bytes:
        head.append(f"--as={plan.memory_bytes}")
    head += [f"--nproc={plan.processes}", f"--fsize={plan.file_size_bytes}", "--core=0",
             "--"]
    bw = [BWRAP, "--die-with-parent", "--new-session"]
    if plan.user is None:
        bw += ["--unshare-all", "--unshare-user", "--disable-userns"]
    else:
        # No user namespace: setpriv must switch to a real uid of this machine. bwrap keeps
        # only what it and setpriv need (DAC_OVERRIDE: chdir into the task user's 0700
        # scratch); the uid switch clears them all before the task's program starts.
        bw += ["--unshare-ipc", "--unshare-pid", "--unshare-net", "--unshare-uts",
               "--unshare-cgroup-try", "--cap-drop", "ALL", "--cap-add", "CAP_SETUID",
               "--cap-add", "CAP_SETGID", "--cap-add", "CAP_DAC_OVERRIDE"]
    bw += ["--clearenv", "--setenv", "PATH", PATH, "--setenv", "HOME", INSIDE_SCRATCH,
           "--setenv", "TMPDIR", INSIDE_SCRATCH, "--setenv", "LANG", "C.UTF-8"]
    for name, value in plan.env:
        bw += ["--setenv", name, value]
    made = {"/", "/usr", "/proc", "/dev", "/tmp", JOB}

    def bind(flag: str, path: str) -> None:
        # Parents bwrap makes on its own are root's and 0700: a privileged bwrap's task
        # user could not walk through them.
        for parent in _ancestors(path):
            if parent not in made:
                bw.extend(["--perms", "0755", "--dir", parent])
                made.add(parent)
        bw.extend([flag, path, path])

    bw += ["--ro-bind", "/usr", "/usr"]
    for target, link in plan.root_links:
        bw += ["--symlink", target, link]
    for d in plan.root_dirs:
        bind("--ro-bind", d)
    for etc in _ETC:
        bind("--ro-bind-try", etc)
    bw += ["--proc", "/proc", *_dev(plan)]
    for path in plan.gpu_read:
        bind("--ro-bind-try", path)
    bw += ["--perms", "1777", "--size", str(plan.tmp_bytes), "--tmpfs", "/tmp"]
    bw += ["--perms", "0755", "--dir", JOB, "--ro-bind", str(in_dir), INSIDE_IN,
           "--bind", str(out_dir), INSIDE_OUT, "--bind", str(scratch), INSIDE_SCRATCH]
    for path in plan.read_only:
        bind("--ro-bind", path)
    bw += ["--remount-ro", "/", "--chdir", INSIDE_SCRATCH]
    inner = rewrite(argv, {str(in_dir): INSIDE_IN, str(out_dir): INSIDE_OUT,
                           str(scratch): INSIDE_SCRATCH})
    if plan.user is not None:
        # After the switch, a second, unprivileged bwrap over the same tree only to forbid
        # new user namespaces (the way to the kernel's CAP_NET_ADMIN code, e.g. nftables),
        # which a privileged bwrap cannot do: it needs a user namespace of its own.
        bw += ["--", SETPRIV, f"--reuid={plan.user.uid}", f"--regid={plan.user.gid}",
               "--clear-groups", "--inh-caps=-all", "--",
               BWRAP, "--unshare-user", "--disable-userns", "--die-with-parent",
               # Device nodes do not open through mounts carried into a user namespace:
               # /dev is made again inside it.
               "--bind", "/", "/", *_dev(plan), "--chdir", INSIDE_SCRATCH]
    return [*head, *bw, "--", *inner]


def _dev(plan: Plan) -> list[str]:
    """A minimal /dev (null, zero, random, ...; GPU nodes only when asked for). Its own
    tmpfs belongs to the task in a user namespace: read-only, or it would be an unbounded
    place to fill memory; /dev/shm is a small tmpfs of its own."""
    out = ["--dev", "/dev"]
    for node in plan.devices:
        out += ["--dev-bind", node, node]
    return [*out, "--perms", "1777", "--size", str(plan.tmp_bytes), "--tmpfs", "/dev/shm",
            "--remount-ro", "/dev"]


def default_memory() -> int:
    """RLIMIT_AS for [sandbox] memory_mib = 0: memory and swap, plus what is reserved and
    never touched (measured: Blender 3.4 maps 0.65-0.8 GiB beyond what it uses on 2 CPUs;
    glibc reserves up to 64 MiB of arena per thread, and each thread has a stack)."""
    try:
        ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError):
        return 0  # unknown: no limit rather than a wrong one
    swap = 0
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("SwapTotal:"):
                    swap = int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return ram + swap + (1 << 30) + (os.cpu_count() or 1) * 128 * MIB


def _under_usr(path: str) -> bool:
    return path == "/usr" or path.startswith("/usr/")


def _afarm_scripts() -> str:
    import afarm  # its own location: a checkout or the installed package

    return str(Path(afarm.__file__).resolve().parent / "applications" / "scripts")


class Sandbox:
    """Wraps a task's argv; one per agent. ``check()`` first: it says what is missing."""

    def __init__(self, settings: SandboxSettings | None = None) -> None:
        self.settings = settings or SandboxSettings()
        self.privileged = os.geteuid() == 0
        self._lock = threading.Lock()
        self._checked_at: float | None = None
        self._problem: str | None = None
        self._user: TaskUser | None = None

    @property
    def helper(self) -> str | None:
        """The socket of afarm-sandbox.service this agent hands its tasks to, if any."""
        h = self.settings.helper
        if self.privileged or not h:
            return None
        if h == "auto":
            return HELPER_SOCKET if os.access(HELPER_SOCKET, os.W_OK) else None
        return h

    # -- can it run? ------------------------------------------------------------------
    def check(self) -> str | None:
        """None when tasks can run sandboxed here, else what is missing and the fix.

        A real sandboxed /usr/bin/true (~10 ms): success is remembered; a problem is probed
        again after RECHECK seconds, so installing bubblewrap helps a running agent.
        """
        with self._lock:
            now = time.monotonic()
            if self._checked_at is None or (self._problem and now - self._checked_at
                                            > RECHECK):
                self._problem = self._probe()
                self._checked_at = now
            return self._problem

    def _probe(self) -> str | None:
        helper = self.helper
        if helper is not None:
            from afarm.runner import sandbox_client

            return sandbox_client.check(helper)
        for tool, fix in ((BWRAP, FIX_BWRAP), (PRLIMIT, "apt install util-linux"),
                          (SETPRIV, "apt install util-linux")):
            if tool == SETPRIV and not self.privileged:
                continue
            if not os.access(tool, os.X_OK):
                return f"the task sandbox needs {tool}, which is missing; {fix}"
        if self.privileged:
            try:
                self._user = task_user(self.settings.user, create=True)
            except SandboxError as exc:
                return str(exc)
        with tempfile.TemporaryDirectory(prefix="afarm-sandbox-check-") as tmp:
            dirs = [Path(tmp) / d for d in ("in", "out", "scratch")]
            for d in dirs:
                d.mkdir()
            try:
                self._prepare(*dirs)
                cp = subprocess.run(  # noqa: S603 - argv list, never a shell
                    self._wrap(["/usr/bin/true"], *dirs), capture_output=True, text=True,
                    timeout=30, check=False, cwd=tmp)
            except (OSError, subprocess.SubprocessError) as exc:
                return f"the task sandbox cannot start: {exc}"
        if cp.returncode == 0:
            return None
        why = (cp.stderr.strip().splitlines() or [f"exit code {cp.returncode}"])[-1]
        fix = FIX_BWRAP
        if "namespace" in why or "Operation not permitted" in why:
            fix = ("allow unprivileged user namespaces: sysctl -w user.max_user_namespaces="
                   "10000 (on kernels with it, also kernel.unprivileged_userns_clone=1); "
                   "under afarm-master.service, start the helper instead: systemctl enable "
                   "--now afarm-sandbox")
        return f"the task sandbox cannot start here ({why}); {fix}"

    # -- one task ---------------------------------------------------------------------
    def pinned(self, device: int | None) -> Sandbox:
        """This sandbox for a task pinned to GPU `device` (None: itself): the GPU nodes
        pass through even without [sandbox] gpu = yes, and only that device is visible."""
        if device is None:
            return self
        other = copy.copy(self)
        other.settings = dataclasses.replace(self.settings, gpu_pin=str(device))
        return other

    def wrap_workspace(self, argv: list[str], ws: Any) -> list[str]:
        """wrap() for a runner Workspace (in/, out/, scratch/)."""
        return self.wrap(argv, ws.in_dir, ws.out_dir, ws.scratch)

    def wrap(self, argv: Sequence[str], in_dir: Path, out_dir: Path,
             scratch: Path) -> list[str]:
        """The sandboxed argv for one of a task's processes; prepares the task's dirs.

        Raises SandboxError when the sandbox cannot run here (never runs without it).
        """
        problem = self.check()
        if problem:
            raise SandboxError(problem)
        helper = self.helper
        if helper is not None:
            # The helper prepares the dirs and builds the sandbox; the master runs (and
            # kills) only this small wrapper.
            return [sys.executable, "-I", "-S", CLIENT, helper, self.settings.to_json(),
                    str(in_dir), str(out_dir), str(scratch), "--", *argv]
        self._prepare(in_dir, out_dir, scratch)
        return self._wrap(argv, in_dir, out_dir, scratch)

    def _wrap(self, argv: Sequence[str], in_dir: Path, out_dir: Path,
              scratch: Path) -> list[str]:
        return build_argv(argv, in_dir, out_dir, scratch, self.plan(argv))

    def plan(self, argv: Sequence[str]) -> Plan:
        s = self.settings
        memory = s.memory_mib * MIB if s.memory_mib else default_memory()
        read_only = [_afarm_scripts(), *s.read_only_paths]
        if argv:
            program = os.path.realpath(argv[0])
            if os.path.isabs(argv[0]) and not _under_usr(program):
                read_only.append(os.path.dirname(program))
        kept: list[str] = []
        for p in read_only:
            real = os.path.realpath(p)
            if real == "/":
                raise SandboxError(f"{p!r} would show the task the whole file system; name "
                                   "the application's own directory in [sandbox] "
                                   "read_only_paths (or install it below /usr or /opt/NAME)")
            if _under_usr(real) or real in kept or not os.path.exists(real):
                continue
            kept.append(real)
        devices: list[str] = []
        gpu_read: tuple[str, ...] = ()
        env: tuple[tuple[str, str], ...] = ()
        if s.gpu_pin:
            env = tuple(pinned_env(int(s.gpu_pin)).items())
        if s.gpu or s.gpu_pin:
            devices = [d for d in (*_GPU_NODES, *sorted(glob.glob(_GPU_GLOB)))
                       if os.path.exists(d)]
            gpu_read = _GPU_READ if devices else ()
        links, dirs = [], []
        for name in _ROOT_LINKS:
            top = f"/{name}"
            if os.path.islink(top):
                links.append((os.readlink(top), top))
            elif os.path.isdir(top):
                dirs.append(top)
        return Plan(memory_bytes=memory, processes=s.processes,
                    file_size_bytes=s.file_size_mib * MIB, tmp_bytes=s.tmp_mib * MIB,
                    user=self._user if self.privileged else None, read_only=tuple(kept),
                    devices=tuple(devices), gpu_read=gpu_read, root_links=tuple(links),
                    root_dirs=tuple(dirs), env=env)

    def _prepare(self, in_dir: Path, out_dir: Path, scratch: Path) -> None:
        """A root agent's task user gets out/ and scratch, and can read in/."""
        user = self._user
        if not self.privileged or user is None:
            return
        for d in (out_dir, scratch):
            os.chown(d, user.uid, user.gid)
            os.chmod(d, 0o700)
        for root, subdirs, files in os.walk(in_dir):
            os.chown(root, 0, user.gid)
            os.chmod(root, 0o750)
            for name in files:
                f = os.path.join(root, name)
                st = os.lstat(f)
                if not st.st_mode & 0o004:
                    # In-files are hard links into the cache; only that group's sandboxed
                    # tasks, which never see the cache, gain read access to the inode.
                    os.chown(f, -1, user.gid, follow_symlinks=False)
                    os.chmod(f, (st.st_mode & 0o7777) | 0o040)
            del subdirs  # walked by os.walk itself


def open_output(path: Path) -> BinaryIO:
    """A fresh file in a task's out/ for the agent to write (a program's stdout).

    The sandboxed task owns out/: whatever it left under that name (a symlink to a file of
    the agent's user, a FIFO that blocks) is removed, never followed or opened.
    """
    try:
        path.unlink()
    except FileNotFoundError:
        pass
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                 0o644)
    return os.fdopen(fd, "wb")


_create_lock = threading.Lock()


def task_user(name: str, create: bool) -> TaskUser:
    """The system user tasks run as under a root agent; made when it is the default one."""
    if not name or name == "root":
        raise SandboxError("[sandbox] user must name an unprivileged user, not root")
    with _create_lock:
        try:
            pw = pwd.getpwnam(name)
        except KeyError:
            if not (create and name == DEFAULT_USER and os.geteuid() == 0):
                raise SandboxError(
                    f"the task user {name!r} does not exist; create it with: "
                    f"{' '.join(ADDUSER)} {name} (or set [sandbox] user)") from None
            _add_user(name)
            pw = pwd.getpwnam(name)
    if pw.pw_uid == 0 or pw.pw_gid == 0:
        raise SandboxError(f"the task user {name!r} has uid or gid 0; tasks never run as root:"
                           " set [sandbox] user to an unprivileged system user")
    return TaskUser(name, pw.pw_uid, pw.pw_gid)


def _add_user(name: str) -> None:
    if shutil.which("adduser"):
        argv = [*ADDUSER, name]
    else:
        argv = ["useradd", "--system", "--user-group", "--no-create-home", "--home-dir",
                "/nonexistent", "--shell", "/usr/sbin/nologin", name]
    why = ""
    # Local slaves start together: another agent may hold the passwd lock or be making the
    # same user right now. Only a user that is still missing after a few tries fails.
    for delay in (0.0, 0.2, 0.5, 1.0, 2.0):
        time.sleep(delay)
        try:
            pwd.getpwnam(name)
            return
        except KeyError:
            cp = subprocess.run(argv, capture_output=True, text=True,  # noqa: S603
                                check=False)
            why = cp.stderr.strip() or f"exit code {cp.returncode}"
    try:
        pwd.getpwnam(name)
    except KeyError:
        raise SandboxError(f"cannot create the task user {name!r} ({' '.join(argv)}: {why});"
                           " create it by hand or set [sandbox] user") from None
