# SPDX-License-Identifier: MIT
"""The test network itself: real sshd hosts in namespaces, faults, and a clean teardown."""

from __future__ import annotations

import hashlib
import os
import pwd
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.platform import need_root
from tests.system.testnet import TestNet, clean, leftovers, net_owner

pytestmark = pytest.mark.system

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "afarm-testnet"


def _run(argv: list[str], timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: S603 - argv list
        argv, capture_output=True, text=True, timeout=timeout, check=False)


def _zombies_of(uids: set[int]) -> list[int]:
    out = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            status = Path(entry.path, "status").read_text()
        except OSError:
            continue
        fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
        if fields.get("State", "").strip().startswith("Z") and \
                int(fields.get("Uid", "-1").split()[0]) in uids:
            out.append(int(entry.name))
    return out


def test_ssh_runs_as_slave_user_on_every_host(testnet: TestNet) -> None:
    assert len(testnet) == 4
    assert [h.addr for h in testnet] == [f"10.231.{testnet.net}.{11 + i}" for i in range(4)]
    for h in testnet:
        cp = testnet.ssh(h, "id -un; pwd; touch \"$0\" 2>/dev/null; "
                            f"touch {h.workdir}/hello && stat -c %U {h.workdir}/hello")
        assert cp.returncode == 0, (cp.stderr, testnet.log(h)[-1500:])
        assert cp.stdout.split() == [h.user, str(h.home), h.user]
        # Each host is its own machine: the session runs in the host's network namespace.
        cp = testnet.ssh(h, ["ip", "-o", "-4", "addr", "show"])
        assert f" {h.addr}/24 " in cp.stdout and testnet.bridge not in cp.stdout


def test_ssh_with_explicit_openssh_options(testnet: TestNet) -> None:
    h = testnet[1]
    argv = ["ssh", "-F", "/dev/null", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes",
            "-o", f"UserKnownHostsFile={testnet.known_hosts}", "-i", str(testnet.client_key),
            f"{h.user}@{h.addr}", "echo ok"]
    cp = _run(argv)
    assert (cp.returncode, cp.stdout) == (0, "ok\n"), cp.stderr
    # ssh_config knows every host by its namespace name.
    cp = _run(["ssh", "-F", str(testnet.ssh_config), h.name, "id -un"])
    assert (cp.returncode, cp.stdout.strip()) == (0, h.user), cp.stderr
    lines = testnet.known_hosts.read_text().splitlines()
    assert lines[1] == f"{h.addr} {h.host_key_pub}"
    assert lines[1].split()[1] == "ssh-ed25519"


def test_wrong_host_key_is_refused(testnet: TestNet) -> None:
    h1, h2 = testnet[0], testnet[1]
    wrong = testnet.base_dir / "known_hosts.wrong"
    wrong.write_text(f"{h1.addr} {h2.host_key_pub}\n")
    try:
        cp = _run(testnet.ssh_argv(h1, "true", options=["-o", f"UserKnownHostsFile={wrong}"]))
    finally:
        wrong.unlink()
    assert cp.returncode == 255
    assert "host key" in cp.stderr.lower() or "HOST IDENTIFICATION" in cp.stderr


def test_only_the_hosts_own_user_may_log_in(testnet: TestNet) -> None:
    h1, h2 = testnet[0], testnet[1]
    cp = _run(["ssh", *testnet.ssh_options(), f"{h2.user}@{h1.addr}", "true"])
    assert cp.returncode == 255


def test_forced_command_sees_original_command(testnet: TestNet) -> None:
    h = testnet[2]
    script = testnet.base_dir / "show-original"
    script.write_text('#!/bin/sh\nprintf "%s\\n" "$SSH_ORIGINAL_COMMAND"\nid -un\n')
    script.chmod(0o755)
    testnet.authorize(h, f'restrict,command="{script}"')
    try:
        original = "afarm-slave-shell --json 'two  spaces' \"q\" $HOME"
        cp = testnet.ssh(h, original)
        assert cp.returncode == 0, cp.stderr
        assert cp.stdout == f"{original}\n{h.user}\n"
        assert h.authorized_keys.read_text().startswith('restrict,command="')
    finally:
        testnet.authorize(h)
    assert testnet.ssh(h, "echo plain").stdout == "plain\n"


def test_crash_makes_host_unreachable_and_restart_brings_it_back(testnet: TestNet) -> None:
    h = testnet[3]
    session = subprocess.Popen(  # noqa: S603 - argv list
        testnet.ssh_argv(h, "echo started; exec sleep 60"),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert session.stdout is not None
        assert session.stdout.readline() == "started\n"
        assert len(testnet.pids(h)) >= 2  # listener, session sshd(s), sleep
        testnet.crash(h)
        assert testnet.pids(h) == []
        assert not testnet.sshd_running(h)
        # The open session dies with its host.
        assert session.wait(timeout=5) == 255
    finally:
        if session.poll() is None:
            session.kill()
        session.communicate()
    t0 = time.monotonic()
    cp = testnet.ssh(h, "true", connect_timeout=1)
    assert cp.returncode == 255
    assert time.monotonic() - t0 < 3
    # The subreaper took the orphans of the killed sshd: no zombies of the host's user.
    assert _zombies_of({h.uid}) == []

    testnet.restart(h)
    assert testnet.sshd_running(h)
    cp = testnet.ssh(h, "id -un")
    assert (cp.returncode, cp.stdout.strip()) == (0, h.user), cp.stderr


def test_crash_with_link_down_times_out(testnet: TestNet) -> None:
    h = testnet[3]
    testnet.crash(h, link_down=True)
    try:
        t0 = time.monotonic()
        cp = testnet.ssh(h, "true", connect_timeout=1)
        elapsed = time.monotonic() - t0
        assert cp.returncode == 255
        assert "timed out" in cp.stderr.lower()
        assert 0.9 < elapsed < 3
    finally:
        testnet.restart(h)
    assert testnet.ssh(h, "true").returncode == 0


def test_kill_sshd_leaves_open_sessions_running(testnet: TestNet) -> None:
    h = testnet[0]
    session = subprocess.Popen(  # noqa: S603 - argv list
        testnet.ssh_argv(h, "echo started; read line; echo got $line"),
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert session.stdout is not None
        assert session.stdout.readline() == "started\n"
        testnet.kill_sshd(h)
        assert testnet.ssh(h, "true", connect_timeout=1).returncode == 255
        out, _ = session.communicate("x\n", timeout=10)
        assert (session.returncode, out) == (0, "got x\n")
    finally:
        if session.poll() is None:
            session.kill()
            session.communicate()
        testnet.restart(h)
    assert testnet.ssh(h, "true").returncode == 0


@pytest.mark.parametrize("side", ["host", "bridge"])
def test_cut_and_restore(testnet: TestNet, side: str) -> None:
    h = testnet[1]
    live = subprocess.Popen(  # noqa: S603 - argv list
        testnet.ssh_argv(h, "echo started; exec sleep 60",
                         options=["-o", "ServerAliveInterval=1", "-o", "ServerAliveCountMax=2"]),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert live.stdout is not None
        assert live.stdout.readline() == "started\n"
        testnet.cut(h, side)  # type: ignore[arg-type]
        t0 = time.monotonic()
        cp = testnet.ssh(h, "true", connect_timeout=1)
        assert cp.returncode == 255
        assert time.monotonic() - t0 < 3
        # The live session notices by its keepalives (~3 s).
        assert live.wait(timeout=8) == 255
    finally:
        if live.poll() is None:
            live.kill()
        live.communicate()
        testnet.restore(h)
    assert testnet.sshd_running(h)  # a cut is not a crash
    cp = testnet.ssh(h, "echo back")
    assert (cp.returncode, cp.stdout) == (0, "back\n"), cp.stderr


def test_rsync_to_work_dir(testnet: TestNet, tmp_path: Path) -> None:
    h = testnet[2]
    data = os.urandom(1 << 20)
    src = tmp_path / "scene.blend"
    src.write_bytes(data)
    cp = _run(["rsync", "-a", "-e", testnet.rsync_rsh(), str(src),
               f"{h.target}:{h.workdir}/"])
    assert cp.returncode == 0, cp.stderr
    cp = testnet.ssh(h, ["sha256sum", f"{h.workdir}/scene.blend"])
    assert cp.stdout.split()[0] == hashlib.sha256(data).hexdigest()
    assert (h.workdir / "scene.blend").stat().st_uid == h.uid


def test_exec_in_namespace(testnet: TestNet) -> None:
    h = testnet[0]
    cp = testnet.exec(h, ["ip", "-o", "-4", "addr", "show", "dev", h.ifname])
    assert f"{h.addr}/24" in cp.stdout
    assert testnet.exec(h, ["id", "-un"], as_user=True).stdout.strip() == h.user
    with pytest.raises(TypeError):
        testnet.exec(h, "id")
    # A background process started there is killed by a crash like everything else.
    p = testnet.popen(h, ["sleep", "60"])
    # nsenter enters the namespace a moment after fork: until then the pid is not there.
    deadline = time.monotonic() + 5
    while p.pid not in testnet.pids(h) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert p.pid in testnet.pids(h)


def test_tmpfs_workdir_fills_up(testnet_factory: Callable[..., TestNet]) -> None:
    net = testnet_factory(1)
    h = net[0]
    (h.workdir / "before").write_text("x")
    net.tmpfs_workdir(h, "256k")
    # Mounted after sshd started, and yet its sessions see it (nsenter keeps one mount ns).
    cp = net.ssh(h, f"ls -A {h.workdir}; dd if=/dev/zero of={h.workdir}/big bs=64k count=16")
    assert cp.returncode != 0
    assert "No space left on device" in cp.stderr
    assert "before" not in cp.stdout
    assert (h.workdir / "big").stat().st_size <= 256 * 1024


def test_nets_coexist_and_are_recreated(testnet: TestNet,
                                        testnet_factory: Callable[..., TestNet]) -> None:
    a = testnet_factory(1)
    b = testnet_factory(2)
    nums = {testnet.net, a.net, b.net}
    assert len(nums) == 3
    for net in (testnet, a, b):
        assert net_owner(net.net or 0) == os.getpid()
        for h in net:
            assert net.ssh(h, "id -un").stdout.strip() == h.user
    num = b.net
    names = [h.name for h in b]
    b.close()
    b.close()  # idempotent
    assert net_owner(num or 0) is None
    with TestNet(2, net=num) as c:
        assert [h.name for h in c] == names
        assert all(c.ssh(h, "true").returncode == 0 for h in c)


def test_close_leaves_nothing(tmp_path: Path) -> None:
    need_root("a test network needs namespaces and users")
    with TestNet(3, base_dir=tmp_path / "net") as net:
        h = net[0]
        net.tmpfs_workdir(h, "1M")
        net.popen(h, ["sleep", "60"])
        session = subprocess.Popen(  # noqa: S603 - argv list
            net.ssh_argv(h, "sleep 60 & sleep 60"), stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL)
        time.sleep(0.3)
        users = [h.user for h in net]
        names = [h.name for h in net] + users + [net.bridge]
        uids = {h.uid for h in net}
    assert session.wait(timeout=5) == 255
    assert leftovers() == []
    everything = "\n".join(leftovers(include_live=True))
    for name in names:
        assert name not in everything
    assert not (tmp_path / "net").exists()
    ns = _run(["ip", "netns", "list"]).stdout
    assert not any(n in ns for n in names)
    for user in users:
        with pytest.raises(KeyError):
            pwd.getpwnam(user)
    assert _zombies_of(uids) == []
    assert not any(m.split()[1] == str(h.workdir) for m in
                   Path("/proc/self/mounts").read_text().splitlines())


def test_exception_inside_tears_down() -> None:
    need_root("a test network needs namespaces and users")
    with pytest.raises(ZeroDivisionError):
        with TestNet(1) as net:
            num = net.net
            raise ZeroDivisionError
    assert net_owner(num or 0) is None
    assert leftovers() == []


def _start_script(n: int, net: int) -> subprocess.Popen[str]:
    p = subprocess.Popen(  # noqa: S603 - argv list
        [sys.executable, str(SCRIPT), "up", str(n), "--net", str(net)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert p.stdout is not None
    lines = []
    for line in p.stdout:
        lines.append(line)
        if "Ctrl-C" in line:
            return p
    _, err = p.communicate(timeout=10)
    raise AssertionError(f"script did not come up: {''.join(lines)} {err}")


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_script_tears_down_on_signal(sig: int) -> None:
    need_root("a test network needs namespaces and users")
    p = _start_script(2, 7)
    assert net_owner(7) == p.pid
    assert any("afarm-h1-n7" in x for x in leftovers(include_live=True))
    p.send_signal(sig)
    out, err = p.communicate(timeout=20)
    assert p.returncode == 0, err
    assert "torn down" in out
    assert not any("-n7" in x or "afbr7" in x for x in leftovers(include_live=True))


@pytest.mark.slow
def test_dead_run_is_cleaned() -> None:
    need_root("a test network needs namespaces and users")
    p = _start_script(2, 6)
    p.kill()  # no chance to clean up
    p.communicate(timeout=10)
    assert net_owner(6) is None
    left = leftovers()
    assert "netns afarm-h1-n6" in left and "user afarm-t2-n6" in left
    assert any("sshd_config" in x for x in left)  # its sshd outlived it
    removed = clean()
    assert "link afbr6" in removed
    assert leftovers() == []
    # And the script's clean finds nothing more.
    cp = _run([sys.executable, str(SCRIPT), "clean"])
    assert cp.returncode == 0, cp.stderr
