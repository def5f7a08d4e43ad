# SPDX-License-Identifier: MIT
"""Real SSH hosts on one machine, made of Linux network namespaces, for system tests.

A ``TestNet`` is a bridge in the root namespace plus one network namespace per host, each
joined to the bridge by a veth pair and running its own ``sshd`` (own host key, config, pid
file, log, user, home and work dir). The master runs in the root namespace and reaches the
hosts by address over the bridge, so no IP forwarding or iptables is involved.

Net number ``k`` (normally 0) uses::

    bridge     afbr<k>            10.231.<k>.1/24
    namespace  afarm-h<i>[-n<k>]  10.231.<k>.<10+i>/24   (the suffix only for k > 0)
    user       afarm-t<i>[-n<k>]
    veth       afv<k>h<i>         (bridge side, root namespace; the host side is eth0)

Several nets can live at once (a module-scoped fixture and a factory, or two test runs of
different people on one machine): each start takes the lowest free number, guarded by an
abstract unix socket that the kernel frees when its process dies, so a number whose socket
is free but whose things still exist belongs to a dead run and is cleaned before reuse.

Needs root, ``ip`` (iproute2), ``nsenter`` (util-linux), ``useradd`` (passwd),
``/usr/sbin/sshd`` and ``ssh-keygen``. Run ``python3 tests/system/testnet.py up 4`` for a
network to play with by hand, ``... clean`` to remove what a killed run left behind.
"""

from __future__ import annotations

import argparse
import atexit
import errno
import grp
import os
import pwd
import re
import shlex
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any, Literal

SSHD = "/usr/sbin/sshd"
NSENTER = "/usr/bin/nsenter"
SETPRIV = "/usr/bin/setpriv"
NETNS_DIR = Path("/run/netns")
MAX_NETS = 32
DEFAULT_TMP = Path("/tmp")
BASE_PREFIX = "afarm-testnet-n"
# The sshd drop-in the afarm-slave package ships; slave_door() puts it on a host.
SLAVE_DROPIN = (Path(__file__).resolve().parents[2]
                / "etc/ssh/sshd_config.d/afarm-slave.conf")

_NS_RE = re.compile(r"^afarm-h(\d+)(?:-n(\d+))?$")
_USER_RE = re.compile(r"^afarm-t(\d+)(?:-n(\d+))?$")
_BRIDGE_RE = re.compile(r"^afbr(\d+)$")
_VETH_RE = re.compile(r"^afv(\d+)h(\d+)$")
_CONFIG_RE = re.compile(r"/afarm-h\d+(?:-n(\d+))?/sshd_config$")
_REAPER_TAG_RE = re.compile(r"^afarm-testnet-reaper-n(\d+)$")
_MOUNT_RE = re.compile(r"^afarm-testnet-n(\d+)$")
_BASE_RE = re.compile(r"^afarm-testnet-n(\d+)-")

# PID 1 of some containers (this machine's included) reaps orphans late or never, and a crash
# orphans every session child of the killed sshd; so sshd runs under this tiny subreaper in
# the root namespace, which survives the crash, reaps the orphans and exits when none are
# left. argv: -c CODE TAG PROGRAM ARGS...
_REAPER_CODE = r"""
import ctypes, os, sys
ctypes.CDLL(None, use_errno=True).prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER
main = os.fork()
if main == 0:
    try:
        os.execv(sys.argv[2], sys.argv[2:])
    finally:
        os._exit(127)
code = 0
while True:
    try:
        pid, status = os.wait()
    except ChildProcessError:
        break
    if pid == main:
        code = os.waitstatus_to_exitcode(status)
sys.exit(code if code >= 0 else 128 - code)
"""


class TestNetError(RuntimeError):
    """Setting up, changing or tearing down a TestNet failed."""


def _suffix(net: int) -> str:
    return "" if net == 0 else f"-n{net}"


def netns_name(net: int, i: int) -> str:
    return f"afarm-h{i}{_suffix(net)}"


def user_name(net: int, i: int) -> str:
    return f"afarm-t{i}{_suffix(net)}"


def bridge_name(net: int) -> str:
    return f"afbr{net}"


def veth_name(net: int, i: int) -> str:
    return f"afv{net}h{i}"


def host_address(net: int, i: int) -> str:
    return f"10.231.{net}.{10 + i}"


def _lock_name(net: int) -> bytes:
    return f"\0afarm-testnet-net{net}".encode()


def _run(
    argv: Sequence[str],
    *,
    check: bool = True,
    input: str | None = None,
    timeout: float = 60.0,
    env: Mapping[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """The one place that runs a helper program: always an argv list, never a shell."""
    try:
        cp = subprocess.run(  # noqa: S603 - argv lists built here from fixed programs
            list(argv), input=input, capture_output=True, text=True, timeout=timeout,
            env=None if env is None else dict(env), check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise TestNetError(f"{shlex.join(argv)} took more than {timeout} s") from exc
    if check and cp.returncode != 0:
        raise TestNetError(
            f"{shlex.join(argv)} exited {cp.returncode}: {(cp.stderr or cp.stdout).strip()}"
        )
    return cp


def _run_passwd_tool(argv: Sequence[str]) -> subprocess.CompletedProcess[str]:
    """useradd/userdel/groupdel, retried while another process holds the passwd lock (other
    test runs on this machine add system users too)."""
    deadline = time.monotonic() + 10
    while True:
        cp = _run(argv, check=False)
        if cp.returncode == 0 or "lock" not in cp.stderr.lower() or \
                time.monotonic() > deadline:
            return cp
        time.sleep(0.05)


def _popen(argv: Sequence[str], **kwargs: Any) -> subprocess.Popen[Any]:
    return subprocess.Popen(list(argv), **kwargs)  # noqa: S603 - argv list, never a shell


# ---------------------------------------------------------------- which numbers are in use


def net_owner(net: int) -> int | None:
    """Pid of the process holding net number ``net``; -1 if held by an unknown one."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.setblocking(False)
    try:
        s.connect(_lock_name(net))
    except (ConnectionRefusedError, FileNotFoundError):
        return None
    except BlockingIOError:
        return -1
    except OSError as exc:
        if exc.errno == errno.EAGAIN:
            return -1
        raise
    else:
        pid, _uid, _gid = struct.unpack("3i", s.getsockopt(socket.SOL_SOCKET,
                                                           socket.SO_PEERCRED, 12))
        return int(pid)
    finally:
        s.close()


def _try_take(net: int) -> socket.socket | None:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.bind(_lock_name(net))
    except OSError as exc:
        s.close()
        if exc.errno == errno.EADDRINUSE:
            return None
        raise
    # Listening (not just bound) lets net_owner() learn the holder's pid via SO_PEERCRED.
    s.listen(64)
    return s


# ------------------------------------------------------------------------- /proc helpers


@dataclass(frozen=True)
class _Proc:
    pid: int
    argv: list[str]
    uid: int
    state: str


def _procs() -> Iterator[_Proc]:
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        pid = int(entry.name)
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                argv = [a.decode(errors="replace") for a in f.read().split(b"\0") if a]
            uid, state = -1, "?"
            with open(f"/proc/{pid}/status", encoding="utf-8", errors="replace") as f:
                for line in f:
                    if line.startswith("State:"):
                        state = line.split()[1]
                    elif line.startswith("Uid:"):
                        uid = int(line.split()[1])
                        break
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
        yield _Proc(pid, argv, uid, state)


def _netns_inodes(names: Sequence[str]) -> dict[tuple[int, int], str]:
    out: dict[tuple[int, int], str] = {}
    for name in names:
        try:
            st = os.stat(NETNS_DIR / name)
        except OSError:
            continue
        out[(st.st_dev, st.st_ino)] = name
    return out


def _pids_in_netns(names: Sequence[str]) -> dict[str, list[int]]:
    """What ``ip netns pids`` says for each name, from one pass over /proc."""
    inodes = _netns_inodes(names)
    out: dict[str, list[int]] = {n: [] for n in names}
    if not inodes:
        return out
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            st = os.stat(f"/proc/{entry.name}/ns/net")
        except OSError:
            continue
        name = inodes.get((st.st_dev, st.st_ino))
        if name is not None:
            out[name].append(int(entry.name))
    return out


def _kill(pids: Sequence[int], sig: int = signal.SIGKILL) -> None:
    for pid in pids:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass


def _netns_list() -> list[str]:
    cp = _run(["ip", "netns", "list"], check=False)
    return [line.split()[0] for line in cp.stdout.splitlines() if line.strip()]


def _link_list() -> list[str]:
    cp = _run(["ip", "-o", "link", "show"], check=False)
    names = []
    for line in cp.stdout.splitlines():
        parts = line.split(":", 2)
        if len(parts) >= 2:
            names.append(parts[1].strip().split("@")[0])
    return names


def _mounts() -> list[tuple[str, str]]:
    """(source, mount point) of every mount, mount points unescaped."""
    out = []
    with open("/proc/self/mounts", encoding="utf-8", errors="replace") as f:
        for line in f:
            parts = line.split()
            if len(parts) >= 2:
                point = re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), parts[1])
                out.append((parts[0], point))
    return out


def _net_of_proc(p: _Proc, our_uids: Mapping[int, int]) -> int | None:
    """Which net number a process belongs to, or None if it is not ours."""
    if p.uid in our_uids:
        return our_uids[p.uid]
    if len(p.argv) >= 4 and p.argv[1] == "-c":
        m = _REAPER_TAG_RE.match(p.argv[3])
        if m:
            return int(m.group(1))
    # sshd rewrites its argv into one string ("sshd: /usr/sbin/sshd -D -f ... [listener]").
    words = " ".join(p.argv).split()
    if not words or ("sshd" not in words[0] and "nsenter" not in words[0]):
        return None
    for a, b in zip(words, words[1:], strict=False):
        if a == "-f":
            m = _CONFIG_RE.search(b)
            if m:
                return int(m.group(1) or 0)
    return None


def _describe_proc(p: _Proc) -> str:
    argv = p.argv[4:] if _is_reaper(p) else p.argv
    what = ("reaper of " if _is_reaper(p) else "") + shlex.join(argv)
    return f"process {p.pid} uid={p.uid}: {what[:200]}"


@dataclass
class _Found:
    """Everything of ours that exists, each item with its net number."""

    netns: list[tuple[int, str]] = field(default_factory=list)
    links: list[tuple[int, str]] = field(default_factory=list)
    users: list[tuple[int, str]] = field(default_factory=list)
    groups: list[tuple[int, str]] = field(default_factory=list)
    procs: list[tuple[int, _Proc]] = field(default_factory=list)
    mounts: list[tuple[int, str]] = field(default_factory=list)
    dirs: list[tuple[int, Path]] = field(default_factory=list)


def _find_procs(netns: Sequence[tuple[int, str]],
                our_uids: Mapping[int, int]) -> list[tuple[int, _Proc]]:
    ns_net = {ns: net for net, ns in netns}
    pid_net = {pid: ns_net[ns] for ns, pids in _pids_in_netns(list(ns_net)).items()
               for pid in pids}
    me = os.getpid()
    out = []
    for p in _procs():
        if p.pid == me or p.state == "Z":
            # A zombie is already dead and holds nothing; only its parent could remove it.
            continue
        net = pid_net.get(p.pid)
        if net is None:
            net = _net_of_proc(p, our_uids)
        if net is not None:
            out.append((net, p))
    return out


def _our_uids() -> dict[int, int]:
    out = {}
    for pw in pwd.getpwall():
        m = _USER_RE.match(pw.pw_name)
        if m:
            out[pw.pw_uid] = int(m.group(2) or 0)
    return out


def _find() -> _Found:
    f = _Found()
    for ns in _netns_list():
        m = _NS_RE.match(ns)
        if m:
            f.netns.append((int(m.group(2) or 0), ns))
    for link in _link_list():
        m = _BRIDGE_RE.match(link) or _VETH_RE.match(link)
        if m:
            f.links.append((int(m.group(1)), link))
    for pw in pwd.getpwall():
        m = _USER_RE.match(pw.pw_name)
        if m:
            f.users.append((int(m.group(2) or 0), pw.pw_name))
    for gr in grp.getgrall():
        m = _USER_RE.match(gr.gr_name)
        if m:
            f.groups.append((int(m.group(2) or 0), gr.gr_name))
    f.procs = _find_procs(f.netns, _our_uids())
    for source, point in _mounts():
        m = _MOUNT_RE.match(source)
        if m:
            f.mounts.append((int(m.group(1)), point))
    try:
        for entry in os.scandir(DEFAULT_TMP):
            m = _BASE_RE.match(entry.name)
            if m and entry.is_dir(follow_symlinks=False):
                f.dirs.append((int(m.group(1)), Path(entry.path)))
    except OSError:
        pass
    return f


def _live_nets() -> set[int]:
    """Net numbers held right now by a live TestNet (in this or another process)."""
    with _REGISTRY_LOCK:
        live = {n.net for n in _LIVE if n.net is not None}
    for net in range(MAX_NETS):
        if net not in live and net_owner(net) is not None:
            live.add(net)
    return live


def leftovers(*, include_live: bool = False) -> list[str]:
    """Everything of ours that still exists: namespaces, links, users, groups, processes,
    tmpfs mounts and base dirs, one line each.

    Things of nets that are live right now (held by an open TestNet, here or in another
    process) are left out unless ``include_live``, so a check at the end of one test run is
    not confused by another run on the same machine.
    """
    f = _find()
    skip = set() if include_live else _live_nets()
    out: list[str] = []
    out += [f"netns {ns}" for net, ns in f.netns if net not in skip]
    out += [f"link {link}" for net, link in f.links if net not in skip]
    out += [f"user {u}" for net, u in f.users if net not in skip]
    out += [f"group {g}" for net, g in f.groups if net not in skip]
    out += [_describe_proc(p) for net, p in f.procs if net not in skip]
    out += [f"mount {point}" for net, point in f.mounts if net not in skip]
    out += [f"dir {d}" for net, d in f.dirs if net not in skip]
    return out


def _is_reaper(p: _Proc) -> bool:
    return len(p.argv) >= 4 and p.argv[1] == "-c" and bool(_REAPER_TAG_RE.match(p.argv[3]))


def _kill_procs(f: _Found, nets: set[int], errors: list[str]) -> None:
    """SIGKILL every process of the given nets until none is left. Reapers are spared
    while anything else lives, so they can still reap the orphans; they exit by
    themselves once their children are gone."""
    procs = [p for net, p in f.procs if net in nets]
    netns = [(net, ns) for net, ns in f.netns if net in nets]
    uids = {uid: net for uid, net in _our_uids().items() if net in nets}
    deadline = time.monotonic() + 10
    reaper_grace = None
    while procs:
        others = [p.pid for p in procs if not _is_reaper(p)]
        if others:
            _kill(others)
        else:
            reaper_grace = reaper_grace or time.monotonic() + 1
            if time.monotonic() > reaper_grace:
                _kill([p.pid for p in procs])
        if time.monotonic() > deadline:
            errors.append(f"processes survive SIGKILL: {[p.pid for p in procs]}")
            return
        time.sleep(0.005)
        procs = [p for net, p in _find_procs(netns, uids) if net in nets]


def _remove(f: _Found, nets: set[int], errors: list[str]) -> None:
    """Remove the found things of the given net numbers, in an order that works: processes
    first (they pin users and namespaces), then mounts, links, namespaces, users, dirs."""
    _kill_procs(f, nets, errors)
    for net, point in sorted(f.mounts, key=lambda x: -len(x[1])):
        if net in nets:
            cp = _run(["umount", point], check=False)
            if cp.returncode != 0:
                cp = _run(["umount", "-l", point], check=False)
                if cp.returncode != 0:
                    errors.append(f"umount {point}: {cp.stderr.strip()}")
    batch = [f"link del {link}" for net, link in f.links if net in nets]
    batch += [f"netns del {ns}" for net, ns in f.netns if net in nets]
    if batch:
        # -force: go on past a line that fails, e.g. a veth already gone with its bridge.
        _run(["ip", "-force", "-batch", "-"], input="\n".join(batch) + "\n", check=False)
    for net, user in f.users:
        if net in nets:
            cp = _run_passwd_tool(["userdel", user])
            if cp.returncode != 0:
                # A zombie of the user (PID 1 here reaps orphans late) makes userdel think
                # the user is still logged in.
                cp = _run_passwd_tool(["userdel", "-f", user])
                if cp.returncode != 0:
                    errors.append(f"userdel {user}: {cp.stderr.strip()}")
    for net, group in f.groups:
        if net in nets:
            try:
                grp.getgrnam(group)
            except KeyError:
                continue
            cp = _run_passwd_tool(["groupdel", group])
            if cp.returncode != 0:
                errors.append(f"groupdel {group}: {cp.stderr.strip()}")
    for net, d in f.dirs:
        if net in nets:
            shutil.rmtree(d, ignore_errors=True)


def clean(*, force: bool = False) -> list[str]:
    """Remove what dead TestNets left behind; with ``force`` also live ones of other
    processes. Returns what was there before."""
    f = _find()
    found = leftovers(include_live=force)
    skip = set() if force else _live_nets()
    nets = {net for net in range(MAX_NETS)} - skip
    errors: list[str] = []
    _remove(f, nets, errors)
    if errors:
        raise TestNetError("; ".join(errors))
    return found


# ------------------------------------------------------------------- clean-up on the way out

_LIVE: set[TestNet] = set()
_REGISTRY_LOCK = threading.Lock()
_HOOKS_INSTALLED = False
_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def close_all() -> list[str]:
    """Close every TestNet of this process still open; returns their descriptions."""
    with _REGISTRY_LOCK:
        nets = list(_LIVE)
    out = []
    for n in nets:
        desc = repr(n)
        try:
            n.close()
        except Exception as exc:  # close the others anyway; the caller reports
            desc += f" (teardown failed: {exc})"
        out.append(desc)
    return out


def _on_signal(signum: int, frame: FrameType | None) -> None:
    close_all()
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)


def _install_hooks() -> None:
    global _HOOKS_INSTALLED
    with _REGISTRY_LOCK:
        if _HOOKS_INSTALLED:
            return
        _HOOKS_INSTALLED = True
    atexit.register(close_all)
    if threading.current_thread() is not threading.main_thread():
        return
    # SIGINT already raises KeyboardInterrupt, which unwinds through close(); SIGTERM and
    # SIGHUP would kill the process without atexit, so catch them, but never replace a
    # handler somebody else installed.
    for sig in (signal.SIGTERM, signal.SIGHUP):
        if signal.getsignal(sig) == signal.SIG_DFL:
            signal.signal(sig, _on_signal)


# --------------------------------------------------------------------------------- hosts


@dataclass
class Host:
    """One host of a TestNet. Everything a test needs to reach or inspect it."""

    index: int  # 1-based
    name: str  # network namespace, e.g. "afarm-h1"
    addr: str  # e.g. "10.231.0.11"
    user: str  # slave user on this host, e.g. "afarm-t1"
    uid: int
    gid: int
    dir: Path  # everything of this host lives below
    home: Path  # the user's home
    workdir: Path  # owned by the user
    authorized_keys: Path  # the one sshd reads for the user (owned by root)
    sshd_config: Path
    sshd_log: Path
    pid_file: Path
    host_key: Path  # private; the public one is host_key + ".pub"
    host_key_pub: str  # "ssh-ed25519 AAAA..."
    veth: str  # bridge side, in the root namespace
    ifname: str = "eth0"  # host side, in the host's namespace
    port: int = 22

    @property
    def target(self) -> str:
        """``user@addr`` for ssh."""
        return f"{self.user}@{self.addr}"

    @property
    def netns_path(self) -> Path:
        return NETNS_DIR / self.name


HostRef = Host | int | str
Side = Literal["host", "bridge"]


_SSHD_OPTIONS: str | None = None


def _sshd_version_options() -> str:
    """Config lines only some sshd versions know (an unknown keyword stops sshd)."""
    global _SSHD_OPTIONS
    if _SSHD_OPTIONS is None:
        out = _run([SSHD, "-V"], check=False)
        m = re.search(r"OpenSSH_(\d+)\.(\d+)", out.stdout + out.stderr)
        version = (int(m.group(1)), int(m.group(2))) if m else (0, 0)
        # From 9.8 sshd punishes an address for failed or aborted connections by refusing
        # it for a while; crash and cut tests would then lock the master out.
        _SSHD_OPTIONS = "PerSourcePenalties no\n" if version >= (9, 8) else ""
    return _SSHD_OPTIONS


class TestNet:
    """A bridge, ``n_hosts`` network namespaces with one sshd each, and their users.

    Use as a context manager (or ``start()`` / ``close()``); ``close()`` is idempotent and
    also runs at exit and on SIGTERM/SIGHUP.
    """

    __test__ = False  # not a pytest test class despite its name

    def __init__(
        self,
        n_hosts: int = 4,
        *,
        base_dir: Path | str | None = None,
        net: int | None = None,
        keep_dir: bool = False,
    ) -> None:
        """``base_dir``: where host dirs and keys go (default: a fresh dir under /tmp; a
        given one must not exist yet or be empty). ``net``: a fixed net number instead of
        the lowest free one. ``keep_dir``: leave the base dir (logs) after close()."""
        if not 1 <= n_hosts <= 200:
            raise ValueError("n_hosts must be 1..200")
        if net is not None and not 0 <= net < MAX_NETS:
            raise ValueError(f"net must be 0..{MAX_NETS - 1}")
        self.n_hosts = n_hosts
        self.net: int | None = net
        self.keep_dir = keep_dir
        self._want_base = Path(base_dir).absolute() if base_dir is not None else None
        self.base_dir = Path()
        self.hosts: list[Host] = []
        self.client_key = Path()
        self.client_pubkey = ""
        self.known_hosts = Path()
        self.ssh_config = Path()
        self.bridge = ""
        self.bridge_addr = ""
        self.timings: dict[str, float] = {}
        self._lock: socket.socket | None = None
        self._started = False
        self._closed = False
        self._made_base = False
        self._reapers: dict[int, list[subprocess.Popen[bytes]]] = {}
        self._children: list[subprocess.Popen[Any]] = []
        self._tmpfs: dict[int, Path] = {}
        self._crash_cut: set[int] = set()

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open" if self._started else "new"
        return f"<TestNet net={self.net} hosts={self.n_hosts} {state} {self.base_dir}>"

    # ------------------------------------------------------------------ context manager

    def __enter__(self) -> TestNet:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            self.close()
        except TestNetError:
            if exc is None:
                raise
            # Do not hide the test's own exception behind a teardown one.
            print(f"testnet: teardown also failed: {sys.exc_info()[1]}", file=sys.stderr)

    # ------------------------------------------------------------------------ set-up

    def start(self) -> TestNet:
        if self._closed:
            raise TestNetError("a closed TestNet cannot be started again; make a new one")
        if self._started:
            return self
        if os.geteuid() != 0:
            raise TestNetError("TestNet needs root (namespaces, users, sshd)")
        _install_hooks()
        t0 = time.monotonic()
        with _REGISTRY_LOCK:
            _LIVE.add(self)
        self._started = True
        try:
            self._take_number()
            self._setup()
        except BaseException:
            self.close()
            raise
        self.timings["setup"] = time.monotonic() - t0
        return self

    def _take_number(self) -> None:
        candidates = [self.net] if self.net is not None else list(range(MAX_NETS))
        deadline = time.monotonic() + 5
        while True:
            for net in candidates:
                assert net is not None
                lock = _try_take(net)
                if lock is not None:
                    self._lock, self.net = lock, net
                    break
            if self._lock is not None:
                break
            if time.monotonic() > deadline:
                raise TestNetError(f"net number(s) {candidates} held by pid "
                                   f"{[net_owner(c) for c in candidates if c is not None]}")
            time.sleep(0.1)
        # The number was free, so whatever exists under it was left by a dead run.
        assert self.net is not None
        errors: list[str] = []
        _remove(_find(), {self.net}, errors)
        if errors:
            raise TestNetError(f"cannot clean leftovers of a dead run: {errors}")

    def _setup(self) -> None:
        net = self.net
        assert net is not None
        self.bridge = bridge_name(net)
        self.bridge_addr = f"10.231.{net}.1"

        if self._want_base is None:
            self.base_dir = Path(tempfile.mkdtemp(prefix=f"{BASE_PREFIX}{net}-",
                                                  dir=DEFAULT_TMP))
            self._made_base = True
        else:
            self.base_dir = self._want_base
            if self.base_dir.exists():
                if any(self.base_dir.iterdir()):
                    raise TestNetError(f"base dir {self.base_dir} is not empty")
            else:
                self.base_dir.mkdir(parents=True)
                self._made_base = True
        # Slave users (and a master running as a non-root user) must traverse it.
        self.base_dir.chmod(0o755)
        # sshd's privilege separation chroots here; nothing creates it without systemd.
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)

        self.client_key = self.base_dir / "id_ed25519"
        self.known_hosts = self.base_dir / "known_hosts"
        self.ssh_config = self.base_dir / "ssh_config"

        hosts_spec = []
        for i in range(1, self.n_hosts + 1):
            d = self.base_dir / netns_name(net, i)
            d.mkdir(mode=0o755)
            d.chmod(0o755)
            hosts_spec.append((i, d))

        # Key generation is CPU-light but each ssh-keygen is a process: run them together.
        keygens = [(self.client_key, f"afarm-testnet-master-n{net}")]
        keygens += [(d / "ssh_host_ed25519_key", f"{netns_name(net, i)}") for i, d in hosts_spec]
        procs = [
            _popen(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment,
                    "-f", str(path)],
                   stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
            for path, comment in keygens
        ]
        for (path, _), p in zip(keygens, procs, strict=True):
            out, _ = p.communicate(timeout=30)
            if p.returncode != 0:
                raise TestNetError(f"ssh-keygen {path}: {out!r}")
        self.client_pubkey = self.client_key.with_suffix(".pub").read_text().strip()

        for i, d in hosts_spec:
            self.hosts.append(self._make_user(net, i, d))

        self._make_network()

        for h in self.hosts:
            self._write_sshd_config(h)
            self.authorize(h)
        self.known_hosts.write_text(
            "".join(f"{h.addr} {h.host_key_pub}\n" for h in self.hosts))
        self.known_hosts.chmod(0o644)
        self._write_ssh_config()
        self._start_sshd(self.hosts)

    def _make_user(self, net: int, i: int, d: Path) -> Host:
        user = user_name(net, i)
        home = d / "home"
        # useradd rather than adduser: 10x faster, and -p '*' leaves the account unlocked
        # at once (sshd with UsePAM no refuses a locked "!" account even for a key).
        cp = _run_passwd_tool(["useradd", "--system", "--user-group", "--no-create-home",
                               "--home-dir", str(home), "--shell", "/bin/sh",
                               "--password", "*", user])
        if cp.returncode != 0:
            raise TestNetError(f"useradd {user}: {cp.stderr.strip()}")
        pw = pwd.getpwnam(user)
        # The layout of the afarm-slave package (debian/afarm-slave.postinst): a root-owned
        # home the user cannot write to, so it can neither rename .ssh nor plant
        # .local/... for the next login; .ssh and authorized_keys belong to root (sshd's
        # StrictModes accepts that); the work dir is a subdirectory, the user's own, 0700.
        home.mkdir(mode=0o755)
        (home / ".ssh").mkdir(mode=0o755)
        (d / "sshd_config.d").mkdir(mode=0o755)
        work = home / "work"
        work.mkdir(mode=0o700)
        os.chown(work, pw.pw_uid, pw.pw_gid)
        key = d / "ssh_host_ed25519_key"
        pub = key.with_suffix(".pub").read_text().split()
        return Host(
            index=i, name=netns_name(net, i), addr=host_address(net, i), user=user,
            uid=pw.pw_uid, gid=pw.pw_gid, dir=d, home=home, workdir=work,
            authorized_keys=home / ".ssh" / "authorized_keys",
            sshd_config=d / "sshd_config", sshd_log=d / "sshd.log", pid_file=d / "sshd.pid",
            host_key=key, host_key_pub=f"{pub[0]} {pub[1]}", veth=veth_name(net, i),
        )

    def _make_network(self) -> None:
        net = self.net
        assert net is not None
        batch = [
            f"link add {self.bridge} type bridge",
            f"addr add {self.bridge_addr}/24 dev {self.bridge}",
            f"link set {self.bridge} up",
        ]
        for h in self.hosts:
            batch += [
                f"netns add {h.name}",
                f"link add {h.veth} type veth peer name {h.ifname} netns {h.name}",
                f"link set {h.veth} master {self.bridge} up",
            ]
        _run(["ip", "-batch", "-"], input="\n".join(batch) + "\n")
        inner = [
            _popen(["ip", "-n", h.name, "-batch", "-"], stdin=subprocess.PIPE,
                   stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            for h in self.hosts
        ]
        for h, p in zip(self.hosts, inner, strict=True):
            out, _ = p.communicate(
                f"link set lo up\naddr add {h.addr}/24 dev {h.ifname}\n"
                f"link set {h.ifname} up\n", timeout=30)
            if p.returncode != 0:
                raise TestNetError(f"configuring {h.name}: {out}")

    def _write_sshd_config(self, h: Host) -> None:
        h.sshd_config.write_text(
            f"""# afarm TestNet host {h.name}; every path absolute (sshd re-executes itself)
# Empty unless slave_door() put afarm-slave's drop-in there (as Debian's sshd_config
# includes /etc/ssh/sshd_config.d/*.conf first).
Include {h.dir}/sshd_config.d/*.conf
ListenAddress {h.addr}:{h.port}
HostKey {h.host_key}
PidFile {h.pid_file}
AuthorizedKeysFile {h.authorized_keys}
AllowUsers {h.user}
UsePAM no
PasswordAuthentication no
KbdInteractiveAuthentication no
PubkeyAuthentication yes
PermitRootLogin no
StrictModes yes
UseDNS no
PrintMotd no
PrintLastLog no
X11Forwarding no
LogLevel VERBOSE
LoginGraceTime 30
# Tests open many connections at once; the defaults (10:30:100) would drop some.
MaxStartups 100:30:200
MaxSessions 100
Subsystem sftp internal-sftp
{_sshd_version_options()}"""
        )

    def _write_ssh_config(self) -> None:
        lines = []
        for h in self.hosts:
            lines += [f"Host {h.name}", f"    HostName {h.addr}", f"    User {h.user}",
                      f"    HostKeyAlias {h.addr}", ""]
        lines += [
            "Host *",
            "    BatchMode yes",
            "    StrictHostKeyChecking yes",
            f"    UserKnownHostsFile {self.known_hosts}",
            "    GlobalKnownHostsFile /dev/null",
            f"    IdentityFile {self.client_key}",
            "    IdentitiesOnly yes",
            "    ConnectTimeout 5",
            "    LogLevel ERROR",
            "",
        ]
        self.ssh_config.write_text("\n".join(lines))
        self.ssh_config.chmod(0o644)

    def _start_sshd(self, hosts: Sequence[Host]) -> None:
        net = self.net
        for h in hosts:
            h.pid_file.unlink(missing_ok=True)
            p = _popen(
                [sys.executable, "-c", _REAPER_CODE, f"afarm-testnet-reaper-n{net}",
                 NSENTER, f"--net={h.netns_path}", "--",
                 SSHD, "-D", "-f", str(h.sshd_config), "-E", str(h.sshd_log)],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL, start_new_session=True,
            )
            self._reapers.setdefault(h.index, []).append(p)
        deadline = time.monotonic() + 15
        for h in hosts:
            # sshd writes its pid file only after its listening socket is bound.
            while not self._sshd_pid(h):
                reaper = self._reapers[h.index][-1]
                if reaper.poll() is not None:
                    raise TestNetError(f"sshd on {h.name} exited {reaper.returncode}: "
                                       f"{self.log(h)[-2000:]}")
                if time.monotonic() > deadline:
                    raise TestNetError(f"sshd on {h.name} did not start: {self.log(h)[-2000:]}")
                time.sleep(0.005)

    # --------------------------------------------------------------------- accessors

    def host(self, ref: HostRef) -> Host:
        """A host by Host, 1-based index, namespace name, user name or address."""
        if isinstance(ref, Host):
            return ref
        for h in self.hosts:
            if ref in (h.index, h.name, h.user, h.addr):
                return h
        raise KeyError(f"no host {ref!r} in {self!r}")

    def __iter__(self) -> Iterator[Host]:
        return iter(self.hosts)

    def __len__(self) -> int:
        return len(self.hosts)

    def __getitem__(self, index: int) -> Host:
        """0-based, like a list: net[0] is afarm-h1."""
        return self.hosts[index]

    def log(self, host: HostRef) -> str:
        """The host's sshd log so far (for assertion messages)."""
        try:
            return self.host(host).sshd_log.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def pids(self, host: HostRef) -> list[int]:
        """Every process in the host's namespace."""
        h = self.host(host)
        return _pids_in_netns([h.name])[h.name]

    def _sshd_pid(self, h: Host) -> int | None:
        try:
            pid = int(h.pid_file.read_text().strip() or "0")
        except (FileNotFoundError, ValueError):
            return None
        if pid <= 0:
            return None
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        return pid

    def sshd_running(self, host: HostRef) -> bool:
        return self._sshd_pid(self.host(host)) is not None

    # ---------------------------------------------------------------------- ssh / rsync

    def ssh_options(self, *, connect_timeout: int = 5) -> list[str]:
        """ssh options (no program, no target): batch mode, our key and known_hosts only;
        -F /dev/null keeps root's own ~/.ssh/config out."""
        return [
            "-F", "/dev/null",
            "-o", "BatchMode=yes",
            "-o", "StrictHostKeyChecking=yes",
            "-o", f"UserKnownHostsFile={self.known_hosts}",
            "-o", "GlobalKnownHostsFile=/dev/null",
            "-o", "IdentitiesOnly=yes",
            "-o", f"ConnectTimeout={connect_timeout}",
            "-o", "LogLevel=ERROR",
            "-i", str(self.client_key),
        ]

    def ssh_argv(self, host: HostRef, command: str | Sequence[str] | None = None, *,
                 connect_timeout: int = 5, options: Sequence[str] = ()) -> list[str]:
        """``ssh [options] ... user@addr [command]``; a sequence command is quoted for the
        remote shell with shlex.join. ``options`` (e.g. ["-o", "ServerAliveInterval=1"])
        come first because for ssh the first value of an option wins."""
        h = self.host(host)
        argv = ["ssh", *options, *self.ssh_options(connect_timeout=connect_timeout),
                "-p", str(h.port), h.target]
        if command is not None:
            argv.append(command if isinstance(command, str) else shlex.join(command))
        return argv

    def ssh(self, host: HostRef, command: str | Sequence[str], *, input: str | None = None,
            timeout: float = 30.0, connect_timeout: int = 5,
            check: bool = False) -> subprocess.CompletedProcess[str]:
        """Run a command on the host as its slave user over real ssh."""
        argv = self.ssh_argv(host, command, connect_timeout=connect_timeout)
        cp = subprocess.run(  # noqa: S603 - argv list
            argv, input=input, capture_output=True, text=True, timeout=timeout, check=False)
        if check and cp.returncode != 0:
            raise TestNetError(f"ssh {self.host(host).name} exited {cp.returncode}: "
                               f"{cp.stderr.strip()}")
        return cp

    def rsync_rsh(self, *, connect_timeout: int = 5) -> str:
        """The value for ``rsync -e`` (rsync splits it itself; no shell involved)."""
        return shlex.join(["ssh", *self.ssh_options(connect_timeout=connect_timeout)])

    def authorize(self, host: HostRef, options: str = "",
                  pubkey_line: str | None = None) -> None:
        """Replace the host's authorized_keys with one key (default: the master's) behind
        ``options``, e.g. ``restrict,command="/usr/bin/rrsync -wo /work"``."""
        h = self.host(host)
        key = (pubkey_line if pubkey_line is not None else self.client_pubkey).strip()
        line = f"{options.strip()} {key}" if options.strip() else key
        tmp = h.authorized_keys.with_name(h.authorized_keys.name + ".tmp")
        tmp.write_text(line + "\n")
        tmp.chmod(0o644)
        # Atomic, so a login racing with the change sees the old or the new file.
        os.replace(tmp, h.authorized_keys)

    def slave_door(self, host: HostRef, shell: Path | None) -> None:
        """Put the afarm-slave package's sshd drop-in on the host, for its user and with
        ``shell`` as the forced command, and restart sshd; ``None`` takes it away again."""
        h = self.host(host)
        dropin = h.dir / "sshd_config.d" / "afarm-slave.conf"
        if shell is None:
            dropin.unlink(missing_ok=True)
        else:
            text = SLAVE_DROPIN.read_text()
            for old, new in [("Match User afarm", f"Match User {h.user}"),
                             ("/usr/bin/afarm-slave-shell", str(shell)),
                             ("/var/lib/afarm-slave/.ssh/authorized_keys",
                              str(h.authorized_keys))]:
                if old not in text:
                    raise TestNetError(f"{SLAVE_DROPIN} no longer says {old!r}")
                text = text.replace(old, new)
            dropin.write_text(text)
            dropin.chmod(0o644)
        self.restart(h)

    # -------------------------------------------------------------------------- faults

    def crash(self, host: HostRef, *, link_down: bool = False) -> None:
        """Host crash: SIGKILL every process in the host's namespace (sshd, sessions,
        whatever they started) until restart(). Its kernel still answers, so connecting
        is refused at once; with ``link_down`` its cable is pulled too (host side), so
        connecting times out as with a machine that lost power; restart() plugs it in."""
        h = self.host(host)
        if link_down:
            self.cut(h, "host")
            self._crash_cut.add(h.index)
        deadline = time.monotonic() + 10
        while True:
            pids = self.pids(h)
            if not pids:
                break
            _kill(pids)
            if time.monotonic() > deadline:
                raise TestNetError(f"processes in {h.name} survive SIGKILL: {pids}")
            time.sleep(0.005)
        self._reap(h, timeout=5)

    def kill_sshd(self, host: HostRef) -> None:
        """Kill only the listening sshd: new connections are refused, open sessions go
        on (unlike crash())."""
        h = self.host(host)
        pid = self._sshd_pid(h)
        if pid is not None:
            _kill([pid])
            for _ in range(1000):
                if self._sshd_pid(h) is None:
                    break
                time.sleep(0.005)

    def restart(self, host: HostRef) -> None:
        """Start the host's sshd again (after crash() or kill_sshd(); if it still runs it is
        killed first). Returns once it listens."""
        h = self.host(host)
        self.kill_sshd(h)
        self._reap(h, timeout=0)
        if h.index in self._crash_cut:
            self.restore(h, "host")
            self._crash_cut.discard(h.index)
        self._start_sshd([h])

    def _reap(self, h: Host, timeout: float) -> None:
        alive = []
        for p in self._reapers.get(h.index, []):
            try:
                p.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                alive.append(p)
        self._reapers[h.index] = alive

    def cut(self, host: HostRef, side: Side = "host") -> None:
        """Pull the cable: the host-side (eth0 in its namespace) or bridge-side veth down.
        New connections time out; a live session dies by its keepalives."""
        h = self.host(host)
        if side == "host":
            _run(["ip", "-n", h.name, "link", "set", h.ifname, "down"])
        elif side == "bridge":
            _run(["ip", "link", "set", h.veth, "down"])
        else:
            raise ValueError(f"side must be 'host' or 'bridge', not {side!r}")

    def restore(self, host: HostRef, side: Side | None = None) -> None:
        """Plug the cable back in (both ends unless ``side``)."""
        h = self.host(host)
        if side in (None, "host"):
            # Setting the link down dropped its connected route; up brings it back.
            _run(["ip", "-n", h.name, "link", "set", h.ifname, "up"])
        if side in (None, "bridge"):
            _run(["ip", "link", "set", h.veth, "up"])

    # -------------------------------------------------------------------- running there

    def _ns_argv(self, h: Host, argv: Sequence[str], as_user: bool) -> list[str]:
        if isinstance(argv, str):
            raise TypeError("argv must be a sequence of arguments, not a string")
        # nsenter --net (not `ip netns exec`) keeps the root mount namespace, so a tmpfs
        # mounted later by tmpfs_workdir() is seen by sshd and its sessions at once.
        out = [NSENTER, f"--net={h.netns_path}", "--"]
        if as_user:
            out += [SETPRIV, f"--reuid={h.uid}", f"--regid={h.gid}", "--clear-groups"]
        return out + list(argv)

    def exec(self, host: HostRef, argv: Sequence[str], *, as_user: bool = False,
             input: str | None = None, timeout: float = 60.0, check: bool = False,
             env: Mapping[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        """Run argv inside the host's namespace (as root, or as its slave user)."""
        h = self.host(host)
        return _run(self._ns_argv(h, argv, as_user), input=input, timeout=timeout,
                    check=check, env=env)

    def popen(self, host: HostRef, argv: Sequence[str], *, as_user: bool = False,
              **kwargs: Any) -> subprocess.Popen[Any]:
        """Start argv inside the host's namespace; killed by crash() and close()."""
        h = self.host(host)
        p = _popen(self._ns_argv(h, argv, as_user), **kwargs)
        self._children.append(p)
        return p

    def tmpfs_workdir(self, host: HostRef, size: str | int = "1M") -> Path:
        """Mount a small tmpfs (``size``: bytes or e.g. "512k", "2M") on the host's work dir
        so a test can fill the disk; what was in the dir is hidden until close()."""
        h = self.host(host)
        if h.index in self._tmpfs:
            raise TestNetError(f"{h.name} already has a tmpfs work dir")
        _run(["mount", "-t", "tmpfs", "-o",
              f"size={size},mode=0755,uid={h.uid},gid={h.gid},nodev,nosuid",
              f"afarm-testnet-n{self.net}", str(h.workdir)])
        self._tmpfs[h.index] = h.workdir
        return h.workdir

    # -------------------------------------------------------------------------- teardown

    def close(self) -> None:
        """Tear everything down, even after a partial start; safe to call again."""
        if self._closed:
            return
        self._closed = True
        if not self._started:
            return
        t0 = time.monotonic()
        blocked = threading.current_thread() is threading.main_thread()
        if blocked:
            # A second Ctrl-C in the middle of teardown would leave half a network.
            old_mask = signal.pthread_sigmask(signal.SIG_BLOCK, _SIGNALS)
        errors: list[str] = []
        try:
            self._teardown(errors)
        finally:
            with _REGISTRY_LOCK:
                _LIVE.discard(self)
            if self._lock is not None:
                self._lock.close()
                self._lock = None
            self.timings["teardown"] = time.monotonic() - t0
            if blocked:
                signal.pthread_sigmask(signal.SIG_SETMASK, old_mask)
        if errors:
            raise TestNetError(f"teardown of {self!r}: " + "; ".join(errors))

    def _teardown(self, errors: list[str]) -> None:
        net = self.net
        if net is None:
            return
        for p in self._children:
            if p.poll() is None:
                p.kill()
        # Everything of this number that exists, not only what the records say, so a start
        # interrupted half-way is cleaned as well.
        f = _find()
        f.mounts += [(net, str(d)) for d in self._tmpfs.values()
                     if (net, str(d)) not in f.mounts]
        f.dirs = [(n, d) for n, d in f.dirs if d != self.base_dir]
        _remove(f, {net}, errors)
        self._tmpfs.clear()
        for ps in self._reapers.values():
            for p in ps:
                try:
                    p.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
                    errors.append(f"reaper {p.pid} did not exit")
        for p in self._children:
            try:
                p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                errors.append(f"child {p.pid} did not exit")
        if self.base_dir != Path() and not self.keep_dir:
            if self._made_base:
                shutil.rmtree(self.base_dir, ignore_errors=True)
            elif self.base_dir.exists():
                for entry in self.base_dir.iterdir():
                    if entry.is_dir() and not entry.is_symlink():
                        shutil.rmtree(entry, ignore_errors=True)
                    else:
                        entry.unlink(missing_ok=True)

    # ---------------------------------------------------------------------------- info

    def describe(self) -> str:
        """Human-readable summary: hosts, key, known_hosts, how to ssh and rsync."""
        lines = [f"TestNet net {self.net}: bridge {self.bridge} {self.bridge_addr}/24, "
                 f"base dir {self.base_dir}"]
        for h in self.hosts:
            lines.append(f"  {h.name:<12} {h.addr:<13} user {h.user:<12} work {h.workdir}")
        lines += [
            f"client key   {self.client_key}",
            f"known_hosts  {self.known_hosts}",
            f"ssh config   {self.ssh_config}",
            f"try: ssh -F {self.ssh_config} {self.hosts[0].name} id" if self.hosts else "",
        ]
        return "\n".join(lines)


# ---------------------------------------------------------------------------- command line


def main(argv: Sequence[str] | None = None, prog: str | None = None) -> int:
    ap = argparse.ArgumentParser(prog=prog, description="afarm test network of SSH hosts "
                                 "in network namespaces (needs root)")
    sub = ap.add_subparsers(dest="cmd", required=True)
    up = sub.add_parser("up", help="build N hosts and keep them until Ctrl-C")
    up.add_argument("n", type=int, nargs="?", default=4)
    up.add_argument("--base-dir", type=Path)
    up.add_argument("--net", type=int)
    cl = sub.add_parser("clean", help="remove what dead test networks left behind")
    cl.add_argument("--force", action="store_true",
                    help="also networks of live processes (they break)")
    sub.add_parser("leftovers", help="list what of ours exists; exit 1 if anything")
    args = ap.parse_args(argv)

    if args.cmd == "leftovers":
        found = leftovers(include_live=True)
        print("\n".join(found) if found else "nothing")
        return 1 if found else 0
    if args.cmd == "clean":
        found = clean(force=args.force)
        print("\n".join(f"removed {x}" for x in found) if found else "nothing to clean")
        left = leftovers(include_live=args.force)
        if left:
            print("still there:\n" + "\n".join(left), file=sys.stderr)
            return 1
        return 0

    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, on_signal)
    with TestNet(args.n, base_dir=args.base_dir, net=args.net) as tn:
        print(tn.describe())
        print(f"set-up {tn.timings['setup']:.3f} s; Ctrl-C tears it down", flush=True)
        while not stop.wait(3600):
            pass
    print(f"torn down in {tn.timings['teardown']:.3f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
