# SPDX-License-Identifier: MIT
"""Enrolment: the slave side (afarm.slave.enroll) against the real aiohttp routes of the
master side (afarm.master.enroll), served on loopback from a thread; and the slave daemon."""

from __future__ import annotations

import asyncio
import http.server
import json
import os
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from afarm.config.loader import load
from afarm.errors import OperationFailed, UsageError
from afarm.master import auth
from afarm.master import enroll as master_enroll
from afarm.master.farm import Farm
from afarm.master.http_util import errors
from afarm.notify import notify
from afarm.protocol import enroll as wire
from afarm.protocol.net import join_hostport
from afarm.slave import daemon
from afarm.slave import enroll as slave_enroll


def _keypair(path: Path, comment: str = "test") -> str:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f",
                    str(path)], check=True, capture_output=True)
    return path.with_name(path.name + ".pub").read_text().strip()


class Master:
    """The enrolment routes behind the job port's real middlewares, on a free port."""

    def __init__(self, base: Path, client_token: str = "client-secret",
                 host: str = "127.0.0.1") -> None:
        self.host = host
        self.state = base / "state"
        self.slaves_dir = base / "slaves.d"
        self.client_token = client_token
        self.enrolled: list[tuple[str, dict[str, Any]]] = []
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self.farm: Farm | None = None

    def _on_enrolled(self, name: str, conf: dict[str, Any]) -> None:
        self.enrolled.append((name, conf))

    def _serve(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_until_complete(self._start())
        finally:
            self._ready.set()
        self._loop.run_forever()

    async def _start(self) -> None:
        self.state.mkdir(parents=True)
        self.farm = Farm(self.state, {})
        client_auth = auth.middleware({auth.digest(self.client_token)}, True)
        app = web.Application(middlewares=[errors, master_enroll.skip_client_auth(client_auth)])
        app.add_routes(master_enroll.routes(self.farm, self.state, slaves_dir=self.slaves_dir,
                                            on_enrolled=self._on_enrolled))
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        site = web.TCPSite(self.runner, self.host, 0)
        await site.start()
        self.port = int(self.runner.addresses[0][1])

    def __enter__(self) -> Master:
        self._thread.start()
        assert self._ready.wait(30) and self.port, "the test master did not start"
        return self

    def __exit__(self, *exc: object) -> None:
        async def stop() -> None:
            await self.runner.cleanup()
            if self.farm is not None:
                self.farm.store.close()

        asyncio.run_coroutine_threadsafe(stop(), self._loop).result(30)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(30)
        self._loop.close()

    @property
    def address(self) -> str:
        return join_hostport(self.host, self.port)

    def post(self, path: str, body: bytes, headers: dict[str, str]) -> tuple[int, Any]:
        import urllib.error
        import urllib.request

        req = urllib.request.Request(f"http://{self.address}{path}", data=body,
                                     method="POST", headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:  # noqa: S310
                return resp.status, json.loads(resp.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read() or b"{}")


@pytest.fixture
def master(tmp_path: Path) -> Iterator[Master]:
    with Master(tmp_path / "master") as m:
        yield m


@pytest.fixture
def slave_files(tmp_path: Path) -> dict[str, Path]:
    d = tmp_path / "slave"
    d.mkdir()
    _keypair(d / "ssh_host_ed25519_key", "root@slave")
    return {"host_key": d / "ssh_host_ed25519_key.pub",
            "authorized_keys": d / "home" / ".ssh" / "authorized_keys"}


def _enroll(master: Master, files: dict[str, Path], token: str,
            **kwargs: Any) -> slave_enroll.Enrolled:
    args: dict[str, Any] = {"name": "render1", "address": "192.0.2.21", "ssh_port": 2222,
                            "host_key": files["host_key"],
                            "authorized_keys": files["authorized_keys"], "timeout": 10.0}
    args.update(kwargs)
    return slave_enroll.enroll(master.address, token, **args)


# ------------------------------------------------------------------------- happy path


def test_enrolment_installs_the_masters_key_behind_the_forced_command(
        master: Master, slave_files: dict[str, Path]) -> None:
    token = master_enroll.new_enrollment_token(master.state)
    done = _enroll(master, slave_files, token)
    master_pub = (master.state / ".ssh" / "id_ed25519.pub").read_text().split()
    lines = slave_files["authorized_keys"].read_text().splitlines()
    assert lines == [f'restrict,command="/usr/bin/afarm-slave-shell" {master_pub[0]} '
                     f"{master_pub[1]} {master_pub[2]}"]
    assert slave_files["authorized_keys"].stat().st_mode & 0o777 == 0o644
    assert done.name == "render1"
    assert done.definition == str(master.slaves_dir / "render1.conf")


def test_enrolment_registers_the_host_key_and_writes_a_loadable_definition(
        master: Master, slave_files: dict[str, Path]) -> None:
    token = master_enroll.new_enrollment_token(master.state)
    _enroll(master, slave_files, token, work_dir="/srv/afarm")
    host_key = " ".join(slave_files["host_key"].read_text().split()[:2])
    assert (master.state / "known_hosts").read_text() == f"[192.0.2.21]:2222 {host_key}\n"
    conf = load(master.slaves_dir / "render1.conf", "slavedef")
    assert conf["host"] == "192.0.2.21" and conf["port"] == 2222
    assert conf["user"] == "afarm" and conf["work_dir"] == "/srv/afarm"
    assert conf["key"] == str(master.state / ".ssh" / "id_ed25519")
    assert master.enrolled == [("render1", conf)]


def test_a_slave_on_port_22_gets_a_plain_known_hosts_line(
        master: Master, slave_files: dict[str, Path]) -> None:
    _enroll(master, slave_files, master_enroll.new_enrollment_token(master.state),
            ssh_port=22)
    assert (master.state / "known_hosts").read_text().startswith("192.0.2.21 ssh-ed25519 ")


def test_enrolling_again_replaces_the_old_key_lines_and_keeps_other_ones(
        master: Master, slave_files: dict[str, Path]) -> None:
    ak = slave_files["authorized_keys"]
    ak.parent.mkdir(parents=True)
    ak.write_text("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOther other@admin\n")
    _enroll(master, slave_files, master_enroll.new_enrollment_token(master.state))
    _enroll(master, slave_files, master_enroll.new_enrollment_token(master.state))
    lines = ak.read_text().splitlines()
    assert len(lines) == 2 and lines[0].endswith("other@admin")
    assert lines[1].startswith('restrict,command="/usr/bin/afarm-slave-shell" ssh-ed25519 ')
    assert len((master.state / "known_hosts").read_text().splitlines()) == 1


def test_a_slave_enrols_with_a_master_on_ipv6_loopback(tmp_path: Path,
                                                       slave_files: dict[str, Path]) -> None:
    with Master(tmp_path / "master6", host="::1") as master6:
        token = master_enroll.new_enrollment_token(master6.state)
        assert master6.address == f"[::1]:{master6.port}"
        done = _enroll(master6, slave_files, token, address=None)
        assert done.name == "render1"
        known = (master6.state / "known_hosts").read_text()
        assert known.startswith("[::1]:2222 ssh-ed25519 ")
        conf = load(master6.slaves_dir / "render1.conf", "slavedef")
        assert conf["host"] == "::1" and conf["port"] == 2222


# -------------------------------------------------------------------------- refusals


def test_a_token_works_only_once(master: Master, slave_files: dict[str, Path]) -> None:
    token = master_enroll.new_enrollment_token(master.state)
    _enroll(master, slave_files, token)
    with pytest.raises(OperationFailed, match="403.*unknown, used or expired"):
        _enroll(master, slave_files, token, name="render2")


def test_an_expired_token_is_refused(master: Master, slave_files: dict[str, Path],
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    token = master_enroll.new_enrollment_token(master.state, ttl=60)
    real = time.time
    monkeypatch.setattr(master_enroll.time, "time", lambda: real() + 61)
    with pytest.raises(OperationFailed, match="403"):
        _enroll(master, slave_files, token)
    assert not slave_files["authorized_keys"].exists()


def test_a_wrong_token_changes_nothing_on_either_side(master: Master,
                                                     slave_files: dict[str, Path]) -> None:
    master_enroll.new_enrollment_token(master.state)
    with pytest.raises(OperationFailed, match="403"):
        _enroll(master, slave_files, "not-the-token")
    assert not slave_files["authorized_keys"].exists()
    assert not (master.state / "known_hosts").exists()
    assert not master.slaves_dir.exists() and master.enrolled == []


def test_the_token_itself_never_crosses_the_wire(master: Master, slave_files: dict[str, Path],
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    sent: list[bytes] = []
    real_post = slave_enroll._post

    def spy(url: str, body: bytes, mac: str, timeout: float) -> tuple[bytes, str]:
        sent.append(body + mac.encode())
        return real_post(url, body, mac, timeout)

    monkeypatch.setattr(slave_enroll, "_post", spy)
    token = master_enroll.new_enrollment_token(master.state)
    _enroll(master, slave_files, token)
    assert sent and token.encode() not in sent[0]
    assert token not in (master.state / master_enroll.TOKENS_FILE).read_text() + \
        (master.state / "known_hosts").read_text()


def test_a_tampered_request_is_refused(master: Master) -> None:
    token = master_enroll.new_enrollment_token(master.state)
    body = json.dumps({"token_id": wire.token_id(token), "name": "evil",
                       "address": "192.0.2.66", "port": 22,
                       "host_key": "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIEvil"}).encode()
    mac = wire.request_mac(wire.token_key(token), body.replace(b"66", b"21"))
    status, answer = master.post(wire.ENROLL_PATH, body, {
        "Content-Type": "application/json", wire.MAC_HEADER: mac})
    assert status == 403 and "enrolment token" in answer["error"]


def _signed(token: str, files: dict[str, Path], when: float) -> tuple[bytes, str]:
    return wire.signed_request(token, {
        "name": "render1", "address": "192.0.2.21", "port": 22, "user": "afarm",
        "host_key": slave_enroll.read_host_key(files["host_key"]),
        "work_dir": "/var/lib/afarm-slave"}, when)


def _send(master: Master, body: bytes, mac: str) -> tuple[int, Any]:
    return master.post(wire.ENROLL_PATH, body, {"Content-Type": "application/json",
                                                wire.MAC_HEADER: mac})


def test_a_replayed_enrolment_request_is_refused(master: Master, slave_files: dict[str, Path],
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    sent: list[tuple[bytes, str]] = []
    real_post = slave_enroll._post

    def spy(url: str, body: bytes, mac: str, timeout: float) -> tuple[bytes, str]:
        sent.append((body, mac))
        return real_post(url, body, mac, timeout)

    monkeypatch.setattr(slave_enroll, "_post", spy)
    _enroll(master, slave_files, master_enroll.new_enrollment_token(master.state))
    status, answer = _send(master, *sent[0])
    assert status == 403 and "unknown, used or expired" in answer["error"]
    assert len(master.enrolled) == 1


def test_a_request_older_than_the_window_is_refused_and_leaves_the_token(
        master: Master, slave_files: dict[str, Path]) -> None:
    token = master_enroll.new_enrollment_token(master.state)
    status, answer = _send(master, *_signed(token, slave_files,
                                            time.time() - wire.MAX_AGE - 60))
    assert status == 403 and "refused as a possible replay" in answer["error"]
    assert "clock" in answer["error"] and master.enrolled == []
    assert not (master.state / "known_hosts").exists()
    status, answer = _send(master, *_signed(token, slave_files, time.time()))
    assert status == 200, answer
    assert [name for name, _ in master.enrolled] == ["render1"]


def test_a_request_dated_ahead_of_the_masters_clock_is_refused(
        master: Master, slave_files: dict[str, Path]) -> None:
    token = master_enroll.new_enrollment_token(master.state)
    status, answer = _send(master, *_signed(token, slave_files,
                                            time.time() + wire.MAX_AGE + 60))
    assert status == 403 and "ahead of the master's clock" in answer["error"]


def test_a_signed_request_without_a_time_is_refused(master: Master,
                                                    slave_files: dict[str, Path]) -> None:
    token = master_enroll.new_enrollment_token(master.state)
    body, _ = _signed(token, slave_files, time.time())
    fields = json.loads(body)
    del fields["time"]
    body = json.dumps(fields).encode()
    status, answer = _send(master, body, wire.request_mac(wire.token_key(token), body))
    assert status == 403 and "carries no time" in answer["error"]


def test_a_changed_answer_is_refused_and_nothing_is_installed(
        tmp_path: Path, slave_files: dict[str, Path]) -> None:
    attacker_key = _keypair(tmp_path / "attacker")

    class Liar(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - the stdlib's name
            self.rfile.read(int(self.headers["Content-Length"]))
            body = json.dumps({"name": "render1", "public_key": attacker_key}).encode()
            self.send_response(200)
            self.send_header(wire.MAC_HEADER, "0" * 64)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Liar)
    t = threading.Thread(target=server.serve_forever, daemon=True)
    t.start()
    try:
        with pytest.raises(OperationFailed, match="not signed with this token"):
            slave_enroll.enroll(f"127.0.0.1:{server.server_address[1]}", "tok",
                                name="render1", address="192.0.2.21",
                                host_key=slave_files["host_key"],
                                authorized_keys=slave_files["authorized_keys"])
    finally:
        server.shutdown()
        server.server_close()
    assert not slave_files["authorized_keys"].exists()


def test_a_slave_defined_by_hand_cannot_be_taken_over(master: Master,
                                                      slave_files: dict[str, Path]) -> None:
    master.slaves_dir.mkdir(parents=True)
    (master.slaves_dir / "render1.conf").write_text("host = 192.0.2.1\n")
    token = master_enroll.new_enrollment_token(master.state)
    with pytest.raises(OperationFailed, match="409.*defined by hand"):
        _enroll(master, slave_files, token)
    assert (master.slaves_dir / "render1.conf").read_text() == "host = 192.0.2.1\n"
    # The refusal did not use the token up.
    _enroll(master, slave_files, token, name="render2")


def test_a_fresh_token_cannot_move_a_known_slave_to_another_host_key(
        master: Master, slave_files: dict[str, Path], tmp_path: Path) -> None:
    """Issue 9, hole 10: an offline slave's name enrolled again from another machine (a new
    host key and address) with an ordinary token took the slave over silently."""
    _enroll(master, slave_files, master_enroll.new_enrollment_token(master.state))
    definition = (master.slaves_dir / "render1.conf").read_text()
    known = (master.state / "known_hosts").read_text()
    intruder = tmp_path / "intruder"
    intruder.mkdir()
    _keypair(intruder / "ssh_host_ed25519_key", "root@intruder")
    other = {"host_key": intruder / "ssh_host_ed25519_key.pub",
             "authorized_keys": intruder / "home" / ".ssh" / "authorized_keys"}
    token = master_enroll.new_enrollment_token(master.state)
    with pytest.raises(OperationFailed, match=r"409.*already enrolled with another SSH host "
                                              r"key.*afarmctl slave token --replace render1"):
        _enroll(master, other, token, address="192.0.2.99")
    assert (master.slaves_dir / "render1.conf").read_text() == definition
    assert (master.state / "known_hosts").read_text() == known
    assert len(master.enrolled) == 1 and not other["authorized_keys"].exists()
    # The same machine (same host key) may come back, also from a new address.
    _enroll(master, slave_files, token, address="192.0.2.22")
    assert "host = 192.0.2.22\n" in (master.slaves_dir / "render1.conf").read_text()


def test_a_replace_token_lets_the_admin_move_a_reinstalled_slave(
        master: Master, slave_files: dict[str, Path], tmp_path: Path) -> None:
    _enroll(master, slave_files, master_enroll.new_enrollment_token(master.state))
    new = tmp_path / "reinstalled"
    new.mkdir()
    _keypair(new / "ssh_host_ed25519_key", "root@reinstalled")
    files = {"host_key": new / "ssh_host_ed25519_key.pub",
             "authorized_keys": new / "home" / ".ssh" / "authorized_keys"}
    # A replace token is for the one slave it names.
    token = master_enroll.new_enrollment_token(master.state, replace="render9")
    with pytest.raises(OperationFailed, match="409.*only enrol the slave 'render9'"):
        _enroll(master, files, token)
    token = master_enroll.new_enrollment_token(master.state, replace="render1")
    _enroll(master, files, token, address="192.0.2.30")
    key = " ".join(files["host_key"].read_text().split()[:2])
    assert f"[192.0.2.30]:2222 {key}" in (master.state / "known_hosts").read_text()
    assert [name for name, _ in master.enrolled] == ["render1", "render1"]


def test_the_token_endpoint_takes_the_slave_to_replace(master: Master) -> None:
    headers = {"Content-Type": "application/json",
               "Authorization": f"Bearer {master.client_token}"}
    status, answer = master.post(wire.TOKENS_PATH,
                                 json.dumps({"replace": "render1"}).encode(), headers)
    assert status == 201 and answer["replace"] == "render1"
    status, answer = master.post(wire.TOKENS_PATH,
                                 json.dumps({"replace": "../x"}).encode(), headers)
    assert status == 400 and "--replace" in answer["error"]


def test_enrolment_needs_no_client_token_but_making_a_token_does(master: Master) -> None:
    status, answer = master.post(wire.TOKENS_PATH, b"{}",
                                 {"Content-Type": "application/json"})
    assert status == 401
    status, answer = master.post(wire.ENROLL_PATH, b"{}",
                                 {"Content-Type": "application/json"})
    assert status == 403  # the enrolment check answered, not the client middleware


def test_the_token_endpoint_returns_a_token_and_the_command_to_run(
        master: Master, slave_files: dict[str, Path]) -> None:
    status, answer = master.post(wire.TOKENS_PATH, json.dumps({"ttl": 600}).encode(),
                                 {"Content-Type": "application/json",
                                  "Authorization": f"Bearer {master.client_token}"})
    assert status == 201 and answer["ttl"] == 600
    assert answer["command"] == (f"afarm-slave enroll --master {master.address} "
                                 f"--token {answer['token']}")
    _enroll(master, slave_files, answer["token"])


@pytest.mark.parametrize("ttl", [0, 59, 8 * 24 * 3600])
def test_token_lifetimes_outside_a_minute_to_a_week_are_refused(tmp_path: Path,
                                                                ttl: int) -> None:
    with pytest.raises(UsageError):
        master_enroll.new_enrollment_token(tmp_path, ttl=ttl)


def test_token_records_are_private_to_the_master(tmp_path: Path) -> None:
    master_enroll.new_enrollment_token(tmp_path)
    assert (tmp_path / master_enroll.TOKENS_FILE).stat().st_mode & 0o777 == 0o600


# ------------------------------------------------------------------- input checking


@pytest.mark.parametrize("line", [
    'restrict,command="/bin/sh" ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI',
    "ssh-ed25519 not!base64",
    "ssh-ed25519 AAAAB3NzaC1yc2EAAAADAQAB",  # an RSA blob under the ed25519 name
    "ssh-ed25519\nAAAAC3NzaC1lZDI1NTE5AAAAI",
    "ssh-dss AAAAB3NzaC1kc3M=",
])
def test_bad_public_key_lines_are_refused(line: str) -> None:
    with pytest.raises(UsageError):
        wire.parse_public_key(line)


def test_a_key_comment_cannot_smuggle_options(tmp_path: Path) -> None:
    pub = _keypair(tmp_path / "k")
    kind, blob, _ = pub.split()
    line = slave_enroll.authorized_line(f'{kind} {blob} x",command="/bin/sh')
    assert line.count('command="') == 1 and "/bin/sh" not in line.replace(
        "afarm-slave-shell", "")


@pytest.mark.parametrize(("master_arg", "address"), [
    ("farm:x", "192.0.2.1"), ("[fd00::1", "192.0.2.1"), ("farm:99999", "192.0.2.1"),
    ("127.0.0.1:9", "-oProxyCommand=x"), ("127.0.0.1:9", "fe80::1%eth0"),
    ("127.0.0.1:9", "192.0.2.1\nhost = evil")])
def test_bad_addresses_are_refused_before_anything_is_sent(
        master_arg: str, address: str, slave_files: dict[str, Path]) -> None:
    with pytest.raises(UsageError):
        slave_enroll.enroll(master_arg, "tok", name="r1", address=address,
                            host_key=slave_files["host_key"],
                            authorized_keys=slave_files["authorized_keys"])


@pytest.mark.parametrize("name", ["master", "local-1", "-x", "a/b", "x" * 64, "r1\n"])
def test_reserved_or_malformed_slave_names_are_refused_before_anything_is_sent(
        name: str, slave_files: dict[str, Path]) -> None:
    with pytest.raises(UsageError):
        slave_enroll.enroll("127.0.0.1:9", "tok", name=name, address="192.0.2.1",
                            host_key=slave_files["host_key"],
                            authorized_keys=slave_files["authorized_keys"])


def test_an_unreachable_master_is_an_operation_failure(slave_files: dict[str, Path]) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound, never listening: connection refused
        with pytest.raises(OperationFailed, match="cannot reach the master"):
            slave_enroll.enroll(f"127.0.0.1:{port}", "tok", name="r1", address="192.0.2.1",
                                host_key=slave_files["host_key"],
                                authorized_keys=slave_files["authorized_keys"], timeout=5)


def test_the_default_address_is_the_one_that_routes_to_the_master() -> None:
    assert slave_enroll.local_address_towards("127.0.0.1", 7731) == "127.0.0.1"


# -------------------------------------------------------------------- slave daemon


def _notify_socket(tmp_path: Path) -> tuple[socket.socket, dict[str, str]]:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    path = tmp_path / "notify"
    sock.bind(str(path))
    sock.settimeout(10)
    return sock, {"NOTIFY_SOCKET": str(path)}


def test_sd_notify_reaches_the_socket_systemd_names(tmp_path: Path) -> None:
    sock, env = _notify_socket(tmp_path)
    with sock:
        assert notify("READY=1", env)
        assert sock.recv(4096) == b"READY=1"
    assert notify("READY=1", {}) is False
    assert notify("READY=1", {"NOTIFY_SOCKET": str(tmp_path / "gone")}) is False


def test_the_watchdog_is_pinged_at_half_its_timeout() -> None:
    env = {"WATCHDOG_USEC": "20000000", "WATCHDOG_PID": str(os.getpid())}
    assert daemon.watchdog_interval(env) == 10.0
    assert daemon.watchdog_interval({"WATCHDOG_USEC": "20000000", "WATCHDOG_PID": "1"}) is None
    assert daemon.watchdog_interval({}) is None


def _aged(path: Path, seconds: float) -> None:
    for p in [path, *path.rglob("*")]:
        t = time.time() - seconds
        os.utime(p, (t, t), follow_symlinks=False)


def test_stale_scratch_dirs_are_removed_and_fresh_ones_kept(tmp_path: Path) -> None:
    old = tmp_path / "jobs" / "1" / "5-1"
    (old / "scratch").mkdir(parents=True)
    (old / "out").mkdir()
    (old / "out" / "f.png").write_bytes(b"x")
    busy = tmp_path / "jobs" / "2" / "7-1"
    (busy / "out").mkdir(parents=True)
    _aged(tmp_path / "jobs", 3 * 3600)
    (busy / "out" / "new.png").write_bytes(b"x")  # a render still writing
    removed = daemon.clean_stale(tmp_path, 2 * 3600)
    assert not (tmp_path / "jobs" / "1").exists()
    assert busy.is_dir()
    assert set(removed) == {old, tmp_path / "jobs" / "1"}


def test_cleaning_never_follows_a_symlink_out_of_the_work_dir(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep").write_text("x")
    job = tmp_path / "work" / "jobs" / "1"
    job.mkdir(parents=True)
    (job / "3-1").symlink_to(outside)
    _aged(tmp_path, 3 * 3600)
    daemon.clean_stale(tmp_path / "work", 3600)
    assert (outside / "keep").exists()


def _run_in_thread(target: Callable[[], int]) -> tuple[threading.Thread, list[int]]:
    result: list[int] = []
    t = threading.Thread(target=lambda: result.append(target()), daemon=True)
    t.start()
    return t, result


def test_the_daemon_says_ready_cleans_and_stops(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    sock, env = _notify_socket(tmp_path)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    monkeypatch.delenv("WATCHDOG_USEC", raising=False)
    old = tmp_path / "work" / "jobs" / "1" / "1-1"
    old.mkdir(parents=True)
    _aged(tmp_path / "work", 7200)
    stop = threading.Event()
    conf = {"name": "s1", "work_dir": str(tmp_path / "work")}
    t, result = _run_in_thread(
        lambda: daemon.run(conf, max_age_hours=1, interval=3600, stop=stop))
    with sock:
        assert sock.recv(4096).startswith(b"READY=1\n")
        deadline = time.monotonic() + 10
        while old.exists() and time.monotonic() < deadline:
            time.sleep(0.01)
        assert not old.exists()
        stop.set()
        t.join(10)
        assert sock.recv(4096) == b"STOPPING=1"
    assert result == [0]


def test_a_bad_configuration_exits_78(tmp_path: Path) -> None:
    conf = tmp_path / "slave.conf"
    conf.write_text("[slave]\nlog_level = loud\n")
    assert daemon.main(["--config", str(conf), "run"]) == 78


def test_enroll_without_root_and_without_a_key_file_is_a_usage_error(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(daemon.os, "geteuid", lambda: 1000)
    conf = tmp_path / "slave.conf"
    conf.write_text("")
    assert daemon.main(["--config", str(conf), "enroll", "--master", "127.0.0.1:9",
                        "--token", "t"]) == 2


@pytest.mark.parametrize("which,owner,mode", [("home", 65534, 0o755), ("home", 0, 0o775),
                                              ("ssh", 65534, 0o755), ("ssh", 0, 0o777)])
def test_enrolment_refuses_a_home_the_slave_user_could_change(
        tmp_path: Path, which: str, owner: int, mode: int) -> None:
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True)
    target = home if which == "home" else home / ".ssh"
    if os.geteuid() == 0:
        os.chown(target, owner, 0)
    target.chmod(mode)  # not root: the dirs are the test user's, which is refused too
    with pytest.raises(UsageError, match="owned by root and writable only by root"):
        slave_enroll.check_door(home, "afarm")


def test_enrolment_accepts_the_packaged_layout(tmp_path: Path) -> None:
    slave_enroll.check_door(Path("/usr/share"), "afarm")  # root's, 0755, no .ssh
    if os.geteuid() != 0:
        return  # only root can make a root-owned layout in a tmp dir
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True)
    (home / "work").mkdir()
    os.chown(home / "work", 65534, 65534)
    for d in (home, home / ".ssh"):
        d.chmod(0o755)
    slave_enroll.check_door(home, "afarm")
    slave_enroll.check_door(tmp_path / "fresh", "afarm")  # enroll makes .ssh itself
