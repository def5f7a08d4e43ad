# SPDX-License-Identifier: MIT
"""Accepting a discovered slave: the master's accept route, the slave's claim port and the
existing enrolment, all real, in one process on loopback."""

from __future__ import annotations

import asyncio
import json
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from afarm.discovery.browse import Found
from afarm.discovery.claim import CLAIM_PATH, ClaimServer, check_claim
from afarm.discovery.publish import host_key_fingerprint
from afarm.discovery.txt import Announcement
from afarm.errors import UsageError
from afarm.master import auth, discovered
from afarm.master import enroll as master_enroll
from afarm.master.farm import Farm
from afarm.master.http.limits import BODY_LIMITS
from afarm.master.http_util import errors
from afarm.protocol import enroll as wire
from afarm.protocol.net import join_hostport
from afarm.slave import enroll as slave_enroll
from afarm.store import discovered as table
from tests.unit.slave.test_enroll import _keypair

TOKEN = "client-secret"


class LoopbackDiscovery(discovered.Discovery):
    def master_address(self, slave: str) -> str:
        return join_hostport(*self.job_port)  # a test master on loopback is reachable


class Master:
    """The job port's enrolment and discovery routes behind its real middlewares."""

    def __init__(self, base: Path) -> None:
        self.state = base / "state"
        self.slaves_dir = base / "slaves.d"
        self.enrolled: list[str] = []
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self.port = 0

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
        client_auth = auth.middleware({auth.digest(TOKEN)}, True)
        app = web.Application(middlewares=[errors, master_enroll.skip_client_auth(client_auth)])
        app[BODY_LIMITS] = (1 << 16, 10.0)
        app.add_routes(master_enroll.routes(self.farm, self.state, slaves_dir=self.slaves_dir,
                                            on_enrolled=lambda n, c: self.enrolled.append(n)))
        self.discovery = LoopbackDiscovery(self.farm, self.state, self.slaves_dir,
                                           ("127.0.0.1", 0), max_pending=3)
        app.add_routes(discovered.routes(self.discovery))
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", 0).start()
        self.port = int(self.runner.addresses[0][1])
        self.discovery.job_port = ("127.0.0.1", self.port)

    def call(self, fn: Any, *args: Any) -> Any:
        async def run() -> Any:
            return fn(*args)
        return asyncio.run_coroutine_threadsafe(run(), self._loop).result(30)

    def post(self, path: str, body: dict[str, Any], token: str | None = TOKEN
             ) -> tuple[int, Any]:
        headers = {"Content-Type": "application/json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        req = urllib.request.Request(f"http://127.0.0.1:{self.port}{path}",
                                     data=json.dumps(body).encode(), method="POST",
                                     headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=60) as resp:  # noqa: S310
                return resp.status, json.loads(resp.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read() or b"{}")

    def __enter__(self) -> Master:
        self._thread.start()
        assert self._ready.wait(30) and self.port
        return self

    def __exit__(self, *exc: object) -> None:
        async def stop() -> None:
            await self.runner.cleanup()
            self.farm.store.close()

        asyncio.run_coroutine_threadsafe(stop(), self._loop).result(30)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(30)
        self._loop.close()


class Slave:
    """A slave's host key, authorized_keys and claim port (enrolling for real)."""

    def __init__(self, base: Path, name: str = "render1") -> None:
        base.mkdir(parents=True)
        _keypair(base / "ssh_host_ed25519_key", "root@slave")
        self.name = name
        self.host_key = base / "ssh_host_ed25519_key.pub"
        self.fingerprint = host_key_fingerprint(self.host_key)
        self.authorized_keys = base / "home" / ".ssh" / "authorized_keys"
        self.claims = ClaimServer(name, self.fingerprint, self.enrol, port=0,
                                  host="127.0.0.1")
        self.claims.start()

    def enrol(self, master: str, token: str) -> str:
        return slave_enroll.enroll(master, token, name=self.name, address="127.0.0.1",
                                   ssh_port=2222, host_key=self.host_key,
                                   authorized_keys=self.authorized_keys, timeout=10).name

    def announcement(self, fingerprint: str | None = None) -> Found:
        a = Announcement(self.name, fingerprint or self.fingerprint, ("52:54:00:12:34:56",),
                         "0.2.0", 2222, self.claims.port)
        return Found(a, "127.0.0.1", self.name)


@pytest.fixture
def master(tmp_path: Path) -> Iterator[Master]:
    with Master(tmp_path / "master") as m:
        yield m


@pytest.fixture
def slave(tmp_path: Path) -> Iterator[Slave]:
    s = Slave(tmp_path / "slave")
    yield s
    s.claims.stop()


def rows(master: Master) -> dict[str, table.Discovered]:
    return {r.name: r for r in master.call(master.discovery.rows)}


def test_an_accepted_slave_enrols_with_no_token_typed_and_only_its_key_is_trusted(
        master: Master, slave: Slave) -> None:
    master.call(master.discovery.observe, slave.announcement())
    assert rows(master)["render1"].state == "pending"
    assert "render1" not in master.farm.dispatchers  # pending: never scheduled
    status, answer = master.post("/api/v1/slaves/render1/accept",
                                 {"fingerprint": slave.fingerprint})
    assert status == 200, answer
    assert answer["fingerprint"] == slave.fingerprint and master.enrolled == ["render1"]
    known = (master.state / "known_hosts").read_text().split()
    assert known[0] == "[127.0.0.1]:2222"
    assert wire.fingerprint(known[2]) == slave.fingerprint
    master_pub = (master.state / ".ssh" / "id_ed25519.pub").read_text().split()[1]
    assert master_pub in slave.authorized_keys.read_text()
    assert slave.claims.claimed
    assert rows(master)["render1"].state == "accepted"


def test_accept_needs_the_client_token(master: Master, slave: Slave) -> None:
    master.call(master.discovery.observe, slave.announcement())
    status, _ = master.post("/api/v1/slaves/render1/accept",
                            {"fingerprint": slave.fingerprint}, token=None)
    assert status == 401
    assert not slave.authorized_keys.exists() and not slave.claims.claimed


def test_accept_with_another_fingerprint_than_announced_changes_nothing(
        master: Master, slave: Slave) -> None:
    master.call(master.discovery.observe, slave.announcement())
    status, answer = master.post("/api/v1/slaves/render1/accept",
                                 {"fingerprint": "SHA256:" + "B" * 43})
    assert status == 409 and "changed since you looked" in answer["error"]
    assert not slave.authorized_keys.exists()
    assert not (master.state / "known_hosts").exists()


def test_a_changed_fingerprint_under_a_pending_name_is_refused(master: Master,
                                                               slave: Slave) -> None:
    master.call(master.discovery.observe, slave.announcement())
    master.call(master.discovery.observe, slave.announcement("SHA256:" + "E" * 43))
    status, answer = master.post("/api/v1/slaves/render1/accept",
                                 {"fingerprint": slave.fingerprint})
    assert status == 409 and "SHA256:" + "E" * 43 in answer["error"]
    assert not slave.authorized_keys.exists()
    status, _ = master.post("/api/v1/slaves/render1/reject", {})
    assert status == 200 and "render1" not in rows(master)


def test_a_machine_announcing_someone_elses_name_cannot_be_accepted_into_its_place(
        master: Master, slave: Slave) -> None:
    # An impostor announced "render1" with its own key first; the real render1's claim
    # port is what the master reaches, and it refuses a claim for another key.
    impostor_fp = "SHA256:" + "I" * 43
    master.call(master.discovery.observe, slave.announcement(impostor_fp))
    status, answer = master.post("/api/v1/slaves/render1/accept", {"fingerprint": impostor_fp})
    assert status == 422 and "did not enrol" in answer["error"]
    assert not slave.authorized_keys.exists() and master.enrolled == []


def test_a_token_handed_to_a_slave_is_useless_with_another_key_or_name(
        master: Master, tmp_path: Path) -> None:
    """Whoever reads the claim on the wire tries the token with their own key."""
    thief = Slave(tmp_path / "thief", name="render1")
    real_fp = "SHA256:" + "R" * 43
    seen: list[str] = []

    def steal(m: str, token: str) -> str:
        seen.append(token)
        return thief_enrol(m, token)

    thief_enrol = thief.enrol
    thief.claims.stop()
    thief.claims = ClaimServer("render1", real_fp, steal, port=0, host="127.0.0.1")
    thief.claims.start()
    try:
        master.call(master.discovery.observe, Found(Announcement(
            "render1", real_fp, (), "0.2.0", 2222, thief.claims.port), "127.0.0.1", "r"))
        status, answer = master.post("/api/v1/slaves/render1/accept",
                                     {"fingerprint": real_fp})
        assert status == 422, answer
        assert "accepted for slave 'render1' with host key " + real_fp in answer["error"]
        assert seen and master.enrolled == [] and not thief.authorized_keys.exists()
    finally:
        thief.claims.stop()


def test_a_claim_port_takes_one_claim_only_from_the_master_it_names(slave: Slave) -> None:
    good = {"name": "render1", "fingerprint": slave.fingerprint,
            "master": "127.0.0.1:7731", "token": "t"}
    assert check_claim(good, "render1", slave.fingerprint, "127.0.0.1") == ("127.0.0.1:7731",
                                                                            "t")
    with pytest.raises(ValueError, match="came from 10.9.9.9"):
        check_claim(good, "render1", slave.fingerprint, "10.9.9.9")
    with pytest.raises(ValueError, match="accepted for render2"):
        check_claim({**good, "name": "render2"}, "render1", slave.fingerprint, "127.0.0.1")
    with pytest.raises(ValueError, match="short texts"):
        check_claim({**good, "token": "x" * 301}, "render1", slave.fingerprint, "127.0.0.1")
    slave.claims.claimed = True
    req = urllib.request.Request(f"http://127.0.0.1:{slave.claims.port}{CLAIM_PATH}",
                                 data=json.dumps(good).encode(), method="POST")
    with pytest.raises(urllib.error.HTTPError) as exc:
        urllib.request.urlopen(req, timeout=10)  # noqa: S310
    assert exc.value.code == 409 and b"enrolled already" in exc.value.read()


def test_the_pending_list_is_bounded(master: Master, tmp_path: Path) -> None:
    for i in range(5):
        a = Announcement(f"r{i}", "SHA256:" + "A" * 43, (), "0.2.0", 22, 7733)
        master.call(master.discovery.observe, Found(a, f"10.0.0.{i + 1}", f"r{i}"))
    assert sorted(rows(master)) == ["r0", "r1", "r2"]


def test_accept_is_refused_while_the_job_port_listens_on_loopback_only(
        master: Master) -> None:
    d = discovered.Discovery(master.farm, master.state, None, ("127.0.0.1", 7731))
    with pytest.raises(UsageError, match="cannot reach"):
        d.master_address("10.0.0.5")


def test_without_a_system_bus_the_master_says_so_once_and_carries_on(
        master: Master, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setenv("DBUS_SYSTEM_BUS_ADDRESS", f"unix:path={tmp_path / 'no-bus'}")
    d = discovered.Discovery(master.farm, master.state, None, ("0.0.0.0", 7731))
    loop = asyncio.new_event_loop()
    with caplog.at_level("INFO"):
        d.start(loop)
    loop.close()
    assert d.browser is None and "no D-Bus system bus" in d.unavailable
    assert [r.message for r in caplog.records].count(
        f"slave discovery is off: {d.unavailable}; slaves enrol with tokens") == 1
    d.stop()


def test_an_old_token_file_without_bindings_still_works(tmp_path: Path) -> None:
    token = master_enroll.new_enrollment_token(tmp_path)
    path = tmp_path / master_enroll.TOKENS_FILE
    path.write_text(" ".join(path.read_text().split()[:3]) + " label\n")  # 0.1 format
    found = master_enroll._find_key(tmp_path, wire.token_id(token))
    assert found is not None and found[1:] == ("", "")
