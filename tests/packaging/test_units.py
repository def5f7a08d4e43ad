# SPDX-License-Identifier: MIT
"""The systemd units: valid (systemd-analyze verify), hardened (exposure 3.0 or less),
and saying what the packages and the daemons expect. Neither check needs systemd as PID 1.

afarm-sandbox.service starts the master's tasks: the last tests run it, and a task through
it, under what this machine can impose of its unit without systemd (its capability bounding
set, no_new_privs, a private mount namespace with /proc mounted hidepid=invisible), with
the caller as unprivileged as afarm-master.service makes the master (no capabilities,
no_new_privs, a user namespace of its own).
"""

from __future__ import annotations

import os
import pwd
import re
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.platform import need_root

ROOT = Path(__file__).resolve().parents[2]
UNITS = ("afarm-master", "afarm-slave", "afarm-sandbox", "afarm-slave-claim")
MAX_EXPOSURE = 3.0
# What each unit must say: (key, value) pairs.
EXPECTED = {
    "afarm-master": [("User", "afarm-master"), ("Type", "notify"),
                     ("ExecStart", "/usr/bin/afarm-master --config /etc/afarm/master.conf"),
                     ("StateDirectory", "afarm-master"), ("Restart", "on-failure"),
                     ("RestartPreventExitStatus", "78")],
    "afarm-slave": [("User", "afarm"), ("Type", "notify"),
                    ("ExecStart", "/usr/bin/afarm-slave --config /etc/afarm/slave.conf run"),
                    ("Restart", "on-failure"), ("RestartPreventExitStatus", "78")],
    "afarm-slave-claim": [("ExecStart", "/usr/bin/afarm-slave --config /etc/afarm/slave.conf"
                                        " claim"),
                          ("Restart", "on-failure"), ("RestartPreventExitStatus", "78"),
                          ("ReadWritePaths", "/var/lib/afarm-slave/.ssh")],
    "afarm-sandbox": [("ExecStart", "/usr/bin/python3 -I -m afarm.runner.sandbox_helper "
                                    "--allow-user afarm-master --task-user afarm-task"),
                      ("Type", "notify"), ("RuntimeDirectory", "afarm-sandbox"),
                      ("PrivateNetwork", "yes"),
                      ("RestrictNamespaces", "mnt pid net ipc uts user cgroup"),
                      ("SystemCallFilter", "@system-service @mount"),
                      ("RestrictAddressFamilies", "AF_UNIX AF_NETLINK")],
}
HARDENING = [("ProtectSystem", "strict"), ("NoNewPrivileges", "yes"),
             ("PrivateTmp", "yes"), ("ProtectHome", "yes"), ("PrivateDevices", "yes"),
             ("ProtectKernelTunables", "yes"), ("RestrictSUIDSGID", "yes")]
# The daemons hold no capability and keep to @system-service; the sandbox helper is root
# with a few capabilities and needs @mount for bubblewrap (each one commented in its unit).
DAEMON_HARDENING = [("CapabilityBoundingSet", ""), ("SystemCallFilter", "@system-service"),
                    ("RestrictNamespaces", "yes")]
# Settings that open the sandbox up; each must have a comment right above it saying why.
RELAXATIONS = ("ReadWritePaths", "RestrictAddressFamilies", "SupplementaryGroups",
               "DeviceAllow", "PrivateNetwork=no", "MemoryDenyWriteExecute=no",
               "CapabilityBoundingSet=CAP", "SystemCallFilter=@system-service @",
               "RestrictNamespaces=mnt", "ProcSubset=all", "PrivateUsers=no")


@pytest.fixture(autouse=True)
def _systemd_analyze() -> None:
    # make test installs it: a missing tool fails instead of skipping every check.
    assert shutil.which("systemd-analyze"), \
        "needs systemd-analyze: run make deps-test (apt-get install systemd)"


def unit_path(name: str) -> Path:
    return ROOT / "systemd" / f"{name}.service"


def settings(name: str) -> list[tuple[str, str]]:
    out = []
    for line in unit_path(name).read_text().splitlines():
        if "=" in line and not line.startswith(("#", ";", "[")):
            key, _, value = line.partition("=")
            out.append((key.strip(), value.strip()))
    return out


def _stub_root(tmp_path: Path) -> Path:
    """Executable stand-ins for the commands the units start, for verify to find (the
    sandbox helper's /usr/bin/python3 is real)."""
    stubs = tmp_path / "bin"
    stubs.mkdir()
    for prog in ("afarm-master", "afarm-slave"):
        (stubs / prog).write_text("#!/bin/sh\nexit 0\n")
        (stubs / prog).chmod(0o755)
    return stubs


@pytest.mark.parametrize("name", UNITS)
def test_the_unit_passes_systemd_analyze_verify(name: str, tmp_path: Path) -> None:
    # The programs are installed only by the packages, so the copy verified here points
    # at stubs; test_debian_packages verifies the installed units against the real ones
    # and their man pages.
    stubs = _stub_root(tmp_path)
    # With the helper that afarm-master refers to.
    names = dict.fromkeys([f"{name}.service", "afarm-sandbox.service"])
    for unit in names:
        text = (ROOT / "systemd" / unit).read_text()
        (tmp_path / unit).write_text(text.replace("/usr/bin/afarm", f"{stubs}/afarm"))
    cp = subprocess.run(["systemd-analyze", "verify", "--man=no",
                         *(str(tmp_path / u) for u in names)],
                        capture_output=True, text=True, check=False, cwd=tmp_path)
    assert cp.returncode == 0 and not cp.stderr.strip(), cp.stdout + cp.stderr


@pytest.mark.parametrize("name", UNITS)
def test_the_unit_is_exposed_at_most_3_0_by_systemd_analyze_security(name: str) -> None:
    cp = subprocess.run(["systemd-analyze", "security", "--offline=yes", "--no-pager",
                         str(unit_path(name))], capture_output=True, text=True, check=False)
    m = re.search(r"Overall exposure level for \S+: (\d+\.\d)", cp.stdout)
    assert m, cp.stdout + cp.stderr
    assert float(m.group(1)) <= MAX_EXPOSURE, cp.stdout


@pytest.mark.parametrize("name", UNITS)
def test_the_unit_runs_the_daemon_as_the_packages_expect(name: str) -> None:
    have = settings(name)
    daemon = DAEMON_HARDENING if name != "afarm-sandbox" else []
    for pair in EXPECTED[name] + HARDENING + daemon:
        assert pair in have, f"{name}.service lacks {pair[0]}={pair[1]}"


@pytest.mark.parametrize("name", UNITS)
def test_every_relaxation_of_the_sandbox_is_commented(name: str) -> None:
    lines = unit_path(name).read_text().splitlines()
    for i, line in enumerate(lines):
        if line.startswith(RELAXATIONS):
            above = lines[i - 1] if i else ""
            assert above.startswith("#"), f"{name}.service: say why above {line!r}"


@pytest.mark.parametrize("name", UNITS)
def test_the_units_documentation_names_pages_the_packages_ship(name: str) -> None:
    docs = dict(settings(name))["Documentation"].split()
    for doc in docs:
        m = re.fullmatch(r"man:([\w.-]+)\((\d)\)", doc)
        assert m, doc
        assert (ROOT / "man" / f"{m.group(1)}.{m.group(2)}").is_file(), doc


# --------------------------------------------- the sandbox helper under its unit's limits

def _unit_values(name: str, key: str) -> list[str]:
    return [v for k, v in settings(name) if k == key]


def _caps(name: str) -> str:
    caps = " ".join(_unit_values(name, "CapabilityBoundingSet")).split()
    return ",".join(["-all", *(f"+{c.removeprefix('CAP_').lower()}" for c in caps)])


@pytest.fixture(scope="module")
def helper(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Path]]:
    """afarm-sandbox's helper as root with its unit's bounding set, no_new_privs and /proc
    as ProtectProc=/ProcSubset= make it, serving "nobody" (standing in for afarm-master)."""
    need_root("it starts the sandbox helper as root")  # as root (CI) every lack below fails
    assert shutil.which("bwrap") and shutil.which("setpriv") and shutil.which("unshare"), \
        "needs bubblewrap and util-linux: run make deps-test"
    from afarm.runner.sandbox import task_user

    task_user("afarm-task", create=True)
    base = tmp_path_factory.mktemp("helper")
    base.chmod(0o755)
    for parent in base.parents:  # nobody must reach the socket and the client
        if parent == Path("/tmp") or parent == Path("/"):
            break
        parent.chmod(parent.stat().st_mode | 0o011)
    client = base / "sandbox_client.py"
    shutil.copy(ROOT / "src/afarm/runner/sandbox_client.py", client)
    client.chmod(0o644)
    proc_opts = {"invisible": "hidepid=invisible"}[_unit_values("afarm-sandbox",
                                                               "ProtectProc")[0]]
    if _unit_values("afarm-sandbox", "ProcSubset") == ["pid"]:
        proc_opts += ",subset=pid"
    mount_proc = ("import os, subprocess, sys; subprocess.run(['mount', '-t', 'proc', '-o', "
                  "sys.argv[1], 'proc', '/proc'], check=True); os.execv(sys.argv[2], "
                  "sys.argv[2:])")
    nnp = ["--no-new-privs"] if _unit_values("afarm-sandbox", "NoNewPrivileges") == ["yes"] \
        else []
    ready = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)  # Type=notify's READY=1
    ready.bind(str(base / "notify"))
    ready.settimeout(30)
    log = open(base / "helper.log", "wb")
    proc = subprocess.Popen(  # noqa: S603 - argv list
        ["unshare", "--mount", "--propagation", "private", "--", sys.executable, "-c",
         mount_proc, proc_opts, "/usr/bin/setpriv", *nnp,
         f"--bounding-set={_caps('afarm-sandbox')}", "--inh-caps=-all", "--",
         sys.executable, "-m", "afarm.runner.sandbox_helper",
         "--allow-user", "nobody", "--task-user", "afarm-task", "--listen",
         str(base / "socket")], stdout=log, stderr=subprocess.STDOUT,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT / "src"), "LANG": "C.UTF-8",
             "NOTIFY_SOCKET": str(base / "notify")},
        start_new_session=True)
    log.close()
    with ready:
        try:
            assert ready.recv(64) == b"READY=1"
        except TimeoutError:
            raise AssertionError((base / "helper.log").read_text()) from None
    assert (base / "socket").stat().st_mode & 0o777 == 0o660
    try:
        yield {"base": base, "client": client, "socket": base / "socket"}
    finally:
        os.killpg(proc.pid, 9)
        proc.wait()


def _job(base: Path, name: str, owner: str = "nobody") -> list[Path]:
    """in/, out/ and scratch of a task, below a 0700 directory of the caller."""
    nobody = pwd.getpwnam(owner)
    top = base / name
    dirs = [top / "in", top / "out", top / "scratch"]
    for d in dirs:
        d.mkdir(parents=True)
    (dirs[0] / "scene.txt").write_text("input\n")
    for p in (top, *dirs, dirs[0] / "scene.txt"):
        os.chown(p, nobody.pw_uid, nobody.pw_gid)
    top.chmod(0o700)
    return dirs


def _as_caller(helper: dict[str, Path], dirs: list[Path], argv: list[str],
               user: str = "nobody", **kw: object) -> subprocess.Popen[str]:
    # What afarm-master.service makes the master: no capabilities, no_new_privs, in a user
    # namespace that maps only itself (PrivateUsers=yes).
    pw = pwd.getpwnam(user)
    return subprocess.Popen(  # noqa: S603 - argv list
        ["setpriv", f"--reuid={user}", f"--regid={pw.pw_gid}", "--clear-groups",
         "--no-new-privs", "--bounding-set=-all", "--", "unshare", "--user",
         f"--map-user={pw.pw_uid}", f"--map-group={pw.pw_gid}", "--",
         "/usr/bin/python3", "-I", "-S", str(helper["client"]), str(helper["socket"]),
         '{"tmp_mib": 16}', *map(str, dirs), "--", *argv],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd="/", **kw)


def test_the_helper_runs_a_task_as_afarm_task_under_its_units_limits(
        helper: dict[str, Path]) -> None:
    dirs = _job(helper["base"], "job1")
    script = ("id -u; cat /job/in/scene.txt; echo done > /job/out/frame.txt; "
              "cat /proc/net/dev | tail -n +3 | cut -d: -f1; "
              "test -e /etc/passwd && echo passwd; echo oops >&2; exit 3")
    p = _as_caller(helper, dirs, ["/bin/sh", "-c", script])
    out, err = p.communicate(timeout=60)
    assert p.returncode == 3, (out, err, (helper["base"] / "helper.log").read_text())
    uid, text, *nets = out.split()
    assert int(uid) == pwd.getpwnam("afarm-task").pw_uid != pwd.getpwnam("nobody").pw_uid
    assert text == "input" and [n.strip() for n in nets] == ["lo"], out
    assert err == "oops\n"
    frame = dirs[1] / "frame.txt"
    assert frame.read_text() == "done\n"
    # Given back: the master can collect and remove what the task made.
    assert {frame.stat().st_uid, dirs[1].stat().st_uid, dirs[2].stat().st_uid} == \
        {pwd.getpwnam("nobody").pw_uid}


def test_the_helper_costs_a_task_little(helper: dict[str, Path]) -> None:
    dirs = _job(helper["base"], "job-time")
    times = []
    for _ in range(7):
        t0 = time.monotonic()
        p = _as_caller(helper, dirs, ["/usr/bin/true"])
        p.communicate(timeout=60)
        times.append(time.monotonic() - t0)
        assert p.returncode == 0
    median = sorted(times)[len(times) // 2]
    print(f"\n  measured: /usr/bin/true through afarm-sandbox: {median * 1000:.0f} ms median")
    assert median < 1.0


def test_the_helper_refuses_another_user_and_directories_not_the_callers(
        helper: dict[str, Path]) -> None:
    dirs = _job(helper["base"], "job2")
    p = _as_caller(helper, [Path("/etc"), *dirs[1:]], ["/usr/bin/true"])
    _, err = p.communicate(timeout=60)
    assert p.returncode == 125 and "/etc is not a directory of the caller" in err
    # Another user may not even connect (the socket is root:nobody's group 0660) ...
    (helper["base"] / "socket").chmod(0o666)
    try:
        p = _as_caller(helper, _job(helper["base"], "job2d", "daemon"), ["/usr/bin/true"],
                       user="daemon")
        _, err = p.communicate(timeout=60)
    finally:
        (helper["base"] / "socket").chmod(0o660)
    # ... and the helper asks the kernel who is calling.
    assert p.returncode == 125 and "may not start tasks here" in err, err


def test_killing_the_caller_kills_its_task(helper: dict[str, Path]) -> None:
    dirs = _job(helper["base"], "job3")
    p = _as_caller(helper, dirs, ["/bin/sleep", "37.25"], start_new_session=True)
    mark = b"/bin/sleep\x0037.25"

    def sleeping() -> bool:
        for pid in filter(str.isdigit, os.listdir("/proc")):
            try:
                if Path(f"/proc/{pid}/cmdline").read_bytes().startswith(mark):
                    return True
            except OSError:
                pass
        return False

    deadline = time.monotonic() + 20
    while not sleeping():
        assert time.monotonic() < deadline and p.poll() is None
        time.sleep(0.05)
    os.killpg(p.pid, 9)  # what a cancel or a timeout does to the master's child
    p.wait()
    deadline = time.monotonic() + 10
    while sleeping():
        assert time.monotonic() < deadline, "the task outlived its caller"
        time.sleep(0.05)


def test_the_helper_changes_nothing_the_caller_does_not_own(helper: dict[str, Path]) -> None:
    dirs = _job(helper["base"], "job4")
    victim = helper["base"] / "root-file"  # stands for /etc/shadow
    victim.write_text("root's\n")
    victim.chmod(0o600)
    (dirs[0] / "link").symlink_to(victim)
    os.link(victim, dirs[0] / "hardlink")  # root may; the caller could not
    nested = dirs[0] / "sub"
    nested.mkdir()
    (nested / "tex.png").write_text("x")
    for p in (nested, nested / "tex.png"):
        os.chown(p, pwd.getpwnam("nobody").pw_uid, pwd.getpwnam("nobody").pw_gid)
    (dirs[1] / "link-out").symlink_to(victim)
    p = _as_caller(helper, dirs, ["/bin/cat", "/job/in/sub/tex.png"])
    out, err = p.communicate(timeout=60)
    assert p.returncode == 0 and out == "x", err
    st = victim.stat()
    assert (st.st_uid, st.st_gid, st.st_mode & 0o777) == (0, 0, 0o600)


def test_a_task_of_several_commands_keeps_its_own_files_between_them(
        helper: dict[str, Path]) -> None:
    dirs = _job(helper["base"], "job5")
    first = _as_caller(helper, dirs, ["/bin/sh", "-c", "umask 077; echo 1 > /job/scratch/s"])
    assert first.wait(timeout=60) == 0
    assert (dirs[2] / "s").stat().st_uid == pwd.getpwnam("nobody").pw_uid  # the master's
    second = _as_caller(helper, dirs, ["/bin/sh", "-c", "echo 2 >> /job/scratch/s"])
    _, err = second.communicate(timeout=60)
    assert second.returncode == 0, err
    assert (dirs[2] / "s").read_text() == "1\n2\n"


def test_an_encode_follow_up_runs_through_the_helper(helper: dict[str, Path]) -> None:
    """What the master's stitch and encode tasks are: ffmpeg reading in/, writing out/."""
    ffmpeg = shutil.which("ffmpeg")
    assert ffmpeg, "needs ffmpeg: run make deps-test"
    dirs = _job(helper["base"], "job6")
    p = _as_caller(helper, dirs, [ffmpeg, "-nostdin", "-loglevel", "error", "-f", "lavfi",
                                  "-i", "testsrc=size=64x36:rate=24", "-frames:v", "12",
                                  "-pix_fmt", "yuv420p", str(dirs[1] / "video.mp4")])
    _, err = p.communicate(timeout=120)
    assert p.returncode == 0, err
    from afarm.runner.verify import verify_output

    verify_output(dirs[1] / "video.mp4")
