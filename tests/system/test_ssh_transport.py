# SPDX-License-Identifier: MIT
"""SSHTransport against real sshd hosts behind afarm-slave-shell: the channel, run, rsync
put/get, host keys, crashes and cuts, and what each costs."""

from __future__ import annotations

import hashlib
import os
import statistics
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from afarm import __version__
from afarm.protocol.messages import PROTOCOL_VERSION
from afarm.transport.base import AuthFailure, CommandTimedOut, HostUnreachable, TransportError
from afarm.transport.rsync import PARTIAL_DIR, control_path
from afarm.transport.ssh import SSHChannel, SSHTransport
from tests.system.test_slave_shell_ssh import install_shell, target_for, transport_for
from tests.system.testnet import TestNet

pytestmark = pytest.mark.system


@pytest.fixture(scope="module")
def net(testnet: TestNet) -> Iterator[TestNet]:
    for h in testnet:
        install_shell(testnet, h)
    yield testnet


@pytest.fixture
def transports(net: TestNet) -> Iterator[Callable[..., SSHTransport]]:
    made: list[SSHTransport] = []

    def make(index: int, **kwargs: float) -> SSHTransport:
        t = transport_for(net, net[index], **kwargs)
        made.append(t)
        return t

    yield make
    for t in made:
        t.close()


def _report(capsys: pytest.CaptureFixture[str], line: str) -> None:
    with capsys.disabled():
        print(f"\n  measured: {line}", end="")


def _random_file(path: Path, size: int) -> Path:
    with open(path, "wb") as f:
        left = size
        while left:
            chunk = os.urandom(min(left, 1 << 20))
            f.write(chunk)
            left -= len(chunk)
    return path


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_channel_hello_round_trip(transports: Callable[..., SSHTransport], net: TestNet,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    t = transports(0)
    ch = t.open_channel()
    try:
        ch.send({"op": "hello", "id": 1, "protocol": PROTOCOL_VERSION})
        hello = ch.recv()
        assert hello is not None and hello["op"] == "hello" and hello["id"] == 1
        assert hello["name"] == net[0].name and hello["version"] == __version__
        times = []
        for i in range(200):
            t0 = time.perf_counter()
            ch.send({"op": "ping", "id": i})
            reply = ch.recv()
            times.append(time.perf_counter() - t0)
            assert reply is not None and (reply["op"], reply["id"]) == ("pong", i)
    finally:
        ch.close()
    assert t.connect_seconds is not None
    median = statistics.median(times)
    _report(capsys, f"paramiko connect + auth {t.connect_seconds * 1000:.1f} ms; "
                    f"JSON round trip on the standing channel, median of 200: "
                    f"{median * 1000:.3f} ms (p90 {sorted(times)[179] * 1000:.3f} ms)")
    assert median < 0.02


def test_channels_share_one_connection(transports: Callable[..., SSHTransport]) -> None:
    t = transports(0)
    a, b = t.open_channel(), t.open_channel()
    try:
        for ch in (a, b):
            ch.send({"op": "hello", "id": 5, "protocol": PROTOCOL_VERSION})
        ha, hb = a.recv(), b.recv()
        assert ha is not None and hb is not None and ha["pid"] != hb["pid"]
        assert t.run(["version"]).stdout == f"{__version__}\n"
    finally:
        a.close()
        b.close()
    assert t.connect_seconds is not None
    # Closing a channel ends its agent (EOF on stdin), not the connection.
    assert t.run(["version"]).ok


def test_run_keeps_the_exit_status_apart_from_reaching_the_host(
        transports: Callable[..., SSHTransport]) -> None:
    t = transports(1)
    r = t.run(["version"])
    assert (r.exit_code, r.stdout, r.argv) == (0, f"{__version__}\n", ["version"])
    r = t.run(["ls", "/"])
    assert r.exit_code == 1 and "refused" in r.stderr and "'ls /'" in r.stderr
    # shlex.join on our side, shlex.split on the slave's: the words arrive as they left.
    r = t.run(["version", "a b; id"])
    assert r.exit_code == 1 and "metacharacter" in r.stderr and "uid=" not in r.stdout


def test_run_semantics_without_the_forced_command(transports: Callable[..., SSHTransport],
                                                  net: TestNet) -> None:
    """stdin, exit codes and timeouts, with a plain key (the shell's verbs cannot
    run for long or fail in these ways on purpose)."""
    h = net[1]
    net.authorize(h)
    net.slave_door(h, None)  # its ForceCommand would run the shell for any key
    try:
        t = transports(1)
        r = t.run(["cat"], stdin=b"x" * (3 << 20))
        assert r.exit_code == 0 and len(r.stdout) == 3 << 20
        r = t.run(["sh", "-c", "echo out; echo err >&2; exit 3"])
        assert (r.exit_code, r.stdout, r.stderr) == (3, "out\n", "err\n")
        # The remote exit status 255 is the command's own, not "could not reach the host".
        assert t.run(["sh", "-c", "exit 255"]).exit_code == 255
        assert t.run(["printf", "%s|", "a b", "$HOME", "'q'"]).stdout == "a b|$HOME|'q'|"
        t0 = time.monotonic()
        with pytest.raises(CommandTimedOut):
            t.run(["sleep", "10"], timeout=0.5)
        assert time.monotonic() - t0 < 2
        assert t.run(["true"]).ok  # the connection survives a timed-out command
    finally:
        install_shell(net, h)


def test_put_and_get_count_bytes_and_an_unchanged_file_costs_nothing(
        transports: Callable[..., SSHTransport], net: TestNet, tmp_path: Path) -> None:
    t = transports(1)
    src = _random_file(tmp_path / "input.blend", 1 << 20)
    sha = _sha(src)
    sent = t.put(src, f"cache/{sha}")
    assert sent >= 1 << 20
    remote = net[1].workdir / "cache" / sha
    assert _sha(remote) == sha
    assert remote.stat().st_uid == net[1].uid
    again = t.put(src, f"cache/{sha}")
    assert again < 200
    got = t.get(f"cache/{sha}", tmp_path / "back" / "input.blend")
    assert got >= 1 << 20
    assert _sha(tmp_path / "back" / "input.blend") == sha
    # No half file is left beside the final names (rsync keeps its empty partial dir).
    assert sorted(p.name for p in remote.parent.iterdir() if p.name != PARTIAL_DIR) == [sha]
    assert not any((remote.parent / PARTIAL_DIR).glob("*"))
    assert sorted(p.name for p in (tmp_path / "back").iterdir()) == ["input.blend"]


def test_put_resumes_a_partial_file(transports: Callable[..., SSHTransport], net: TestNet,
                                    tmp_path: Path) -> None:
    h = net[1]
    t = transports(1)
    src = _random_file(tmp_path / "big", 8 << 20)
    # What an interrupted put leaves behind: the first half, in the partial dir.
    partial = h.workdir / "cache" / PARTIAL_DIR
    partial.mkdir(mode=0o700, exist_ok=True)
    os.chown(partial, h.uid, h.gid)
    (partial / "resume-me").write_bytes(src.read_bytes()[:4 << 20])
    os.chown(partial / "resume-me", h.uid, h.gid)
    sent = t.put(src, "cache/resume-me")
    assert sent < 5 << 20  # about half, plus block checksums
    assert _sha(h.workdir / "cache" / "resume-me") == _sha(src)
    assert not (partial / "resume-me").exists()


def test_parallel_transfers_to_one_slave(transports: Callable[..., SSHTransport],
                                         net: TestNet, tmp_path: Path) -> None:
    t = transports(2)
    files = [_random_file(tmp_path / f"f{i}", 2 << 20) for i in range(4)]
    errors: list[BaseException] = []

    def put(p: Path) -> None:
        try:
            t.put(p, f"cache/{p.name}")
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=put, args=(p,)) for p in files]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert errors == []
    for p in files:
        assert _sha(net[2].workdir / "cache" / p.name) == _sha(p)


def test_bad_paths_are_refused_before_connecting(transports: Callable[..., SSHTransport],
                                                 tmp_path: Path) -> None:
    t = transports(2)
    f = _random_file(tmp_path / "f", 10)
    for dst in ["../f", "/etc/f", "cache/../../f", "cache/a b", "cache/x;id", "", "cache/",
                ".ssh/authorized_keys", "cache/-rf"]:
        with pytest.raises(TransportError, match="plain relative path"):
            t.put(f, dst)
    with pytest.raises(TransportError, match="plain relative path"):
        t.get("/etc/shadow", tmp_path / "shadow")
    assert t.connect_seconds is None


def test_get_of_a_missing_file_is_an_error_not_unreachable(
        transports: Callable[..., SSHTransport], tmp_path: Path) -> None:
    t = transports(2)
    with pytest.raises(TransportError, match="does not exist") as exc:
        t.get("jobs/1/1-1/out/missing.png", tmp_path / "m.png")
    assert not isinstance(exc.value, HostUnreachable)


def test_changed_host_key_is_refused_with_how_to_accept_it(net: TestNet,
                                                          tmp_path: Path) -> None:
    h1, h2 = net[0], net[1]
    wrong = tmp_path / "known_hosts"
    wrong.write_text(f"{h1.addr} {h2.host_key_pub}\n")
    t = SSHTransport(name="h1", host=h1.addr, port=h1.port, user=h1.user,
                     key=net.client_key, known_hosts=wrong, work_dir=str(h1.workdir),
                     control_dir=net.base_dir / "ctl-wrong")
    try:
        with pytest.raises(AuthFailure) as exc:
            t.open_channel()
        msg = str(exc.value)
        assert "CHANGED" in msg
        assert f"ssh-keyscan -p 22 -t ed25519 {h1.addr} >> {wrong}" in msg
        assert f"ssh-keygen -R '{h1.addr}' -f {wrong}" in msg
        with pytest.raises(AuthFailure, match="ssh-keyscan"):
            t.run(["version"])
        # rsync's OpenSSH refuses it as well, with the same advice.
        src = _random_file(tmp_path / "f", 100)
        with pytest.raises(AuthFailure, match=f"ssh-keyscan -p 22 -t ed25519 {h1.addr}"):
            t.put(src, "cache/f")
        assert not (h1.workdir / "cache" / "f").exists()
        # Following the advice works.
        fixed = subprocess.run(["ssh-keyscan", "-p", "22", "-t", "ed25519", h1.addr],
                               capture_output=True, text=True, check=True, timeout=10)
        wrong.write_text(fixed.stdout)
        assert t.run(["version"]).ok
    finally:
        t.close()


def test_unknown_host_is_refused(net: TestNet, tmp_path: Path) -> None:
    h = net[0]
    t = SSHTransport(name="h1", host=h.addr, port=h.port, user=h.user, key=net.client_key,
                     known_hosts=tmp_path / "missing", work_dir=str(h.workdir),
                     control_dir=net.base_dir / "ctl-unknown")
    with pytest.raises(AuthFailure) as exc:
        t.run(["version"])
    assert "unknown host" in str(exc.value) and "SHA256:" in str(exc.value)
    assert "ssh-keyscan" in str(exc.value)
    t.close()


def test_a_key_the_slave_does_not_know_is_auth_failure(net: TestNet, tmp_path: Path) -> None:
    h = net[0]
    key = tmp_path / "other_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)],
                   check=True, capture_output=True, timeout=30)
    t = SSHTransport(name="h1", host=h.addr, port=h.port, user=h.user, key=key,
                     known_hosts=net.known_hosts, work_dir=str(h.workdir),
                     control_dir=net.base_dir / "ctl-key")
    try:
        with pytest.raises(AuthFailure, match="refused the key"):
            t.open_channel()
        with pytest.raises(AuthFailure, match="authorized_keys"):
            t.put(_random_file(tmp_path / "f", 10), "cache/f")
    finally:
        t.close()


def _blocked_reader(t: SSHTransport) -> tuple[SSHChannel, list[object], threading.Thread]:
    """A live channel with a thread blocked in recv(); what recv() returns lands in the list."""
    ch = t.open_channel()
    ch.send({"op": "hello", "id": 1, "protocol": PROTOCOL_VERSION})
    assert ch.recv() is not None
    got: list[object] = []
    reader = threading.Thread(target=lambda: got.append(ch.recv()), daemon=True)
    reader.start()
    return ch, got, reader


def test_crash_ends_the_channel_and_the_transport_reconnects(
        transports: Callable[..., SSHTransport], net: TestNet, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    h = net[3]
    t = transports(3, connect_timeout=2)
    ch, got, reader = _blocked_reader(t)
    try:
        net.crash(h)
        t0 = time.monotonic()
        reader.join(timeout=10)
        noticed = time.monotonic() - t0
        assert got == [None]
        assert noticed < 5
        t0 = time.monotonic()
        with pytest.raises(HostUnreachable):
            t.run(["version"])
        with pytest.raises(HostUnreachable):
            t.open_channel()
        assert time.monotonic() - t0 < 5
        with pytest.raises(HostUnreachable):
            t.put(_random_file(tmp_path / "x", 10), "cache/x")
    finally:
        ch.close()
        net.restart(h)
    _report(capsys, f"crash noticed by a blocked recv() after {noticed:.2f} s")
    assert t.run(["version"]).ok
    ch = t.open_channel()
    ch.send({"op": "ping", "id": 2})
    reply = ch.recv()
    assert reply is not None and reply["op"] == "pong"
    ch.close()


def test_a_cut_link_is_noticed_within_seconds(transports: Callable[..., SSHTransport],
                                              net: TestNet, tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    h = net[2]
    t = transports(2, connect_timeout=2)
    ch, got, reader = _blocked_reader(t)
    try:
        net.cut(h)
        t0 = time.monotonic()
        reader.join(timeout=15)
        noticed = time.monotonic() - t0
        assert got == [None]
        assert noticed < 8
        t0 = time.monotonic()
        with pytest.raises(HostUnreachable):
            t.run(["version"])
        with pytest.raises(HostUnreachable):
            t.put(_random_file(tmp_path / "f", 1000), "cache/f")
        failed_in = time.monotonic() - t0
    finally:
        ch.close()
        net.restore(h)
    _report(capsys, f"cut link noticed by a blocked recv() after {noticed:.2f} s; "
                    f"run + put failed in {failed_in:.2f} s")
    assert t.run(["version"]).ok
    assert t.put(tmp_path / "f", "cache/f") > 0


def test_a_full_slave_disk_says_so(testnet_factory: Callable[..., TestNet],
                                   tmp_path: Path) -> None:
    own = testnet_factory(1)
    h = own[0]
    install_shell(own, h)
    own.tmpfs_workdir(h, "256k")
    t = transport_for(own, h)
    try:
        with pytest.raises(TransportError) as exc:
            t.put(_random_file(tmp_path / "big", 1 << 20), "cache/big")
        assert not isinstance(exc.value, HostUnreachable)
        assert "disk is full" in str(exc.value)
        assert not (h.workdir / "cache" / "big").exists()
        assert t.put(_random_file(tmp_path / "small", 1000), "cache/small") > 0
    finally:
        t.close()


def test_close_stops_the_control_master(transports: Callable[..., SSHTransport],
                                        net: TestNet, tmp_path: Path) -> None:
    t = transports(0)
    t.put(_random_file(tmp_path / "f", 1000), "cache/f")
    socket_path = control_path(target_for(net, net[0]))
    assert socket_path.exists()
    t.close()
    assert not socket_path.exists()


def test_measure_rsync_of_50_mb(transports: Callable[..., SSHTransport], net: TestNet,
                                tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    t = transports(0)
    src = _random_file(tmp_path / "fifty", 50 << 20)
    t0 = time.monotonic()
    sent = t.put(src, "cache/fifty")
    first = time.monotonic() - t0
    t0 = time.monotonic()
    again = t.put(src, "cache/fifty")
    second = time.monotonic() - t0
    t0 = time.monotonic()
    got = t.get("cache/fifty", tmp_path / "back")
    back = time.monotonic() - t0
    _report(capsys, f"rsync put 50 MiB {first:.2f} s ({sent} bytes sent, "
                    f"{(50 << 20) / first / 1e6:.0f} MB/s); same file again {second:.3f} s "
                    f"({again} bytes sent); get {back:.2f} s ({got} bytes received)")
    assert sent >= 50 << 20 and again < 200 and got >= 50 << 20
    assert _sha(tmp_path / "back") == _sha(src)
