# SPDX-License-Identifier: MIT
"""afarm-slave run's announcement: what it publishes, and that it carries on without Avahi."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

from afarm.discovery import avahi
from afarm.discovery.publish import host_key_fingerprint, mac_addresses
from afarm.discovery.txt import Announcement
from afarm.slave.announce import Announcer, Options, serve_claims
from tests.unit.slave.test_enroll import _keypair


class FakePublisher:
    def __init__(self, fail: bool = False) -> None:
        self.fail = fail
        self.published: list[tuple[Announcement, int]] = []
        self.state = "unpublished"

    def publish(self, a: Announcement, port: int) -> None:
        if self.fail:
            raise avahi.Unavailable("no D-Bus system bus (test)")
        self.published.append((a, port))
        self.state = "published"

    def ensure(self) -> str:
        return self.state

    def withdraw(self) -> None:
        self.state = "unpublished"


@pytest.fixture
def host_key(tmp_path: Path) -> Path:
    _keypair(tmp_path / "ssh_host_ed25519_key")
    return tmp_path / "ssh_host_ed25519_key.pub"


def conf(tmp_path: Path, claim_port: int = 0) -> dict[str, Any]:
    return {"name": "render1", "work_dir": str(tmp_path / "work"), "claim_port": claim_port}


def test_the_fingerprint_is_the_one_ssh_keygen_prints(host_key: Path) -> None:
    import subprocess

    out = subprocess.run(["ssh-keygen", "-lf", str(host_key)], capture_output=True,
                         text=True, check=True).stdout
    assert out.split()[1] == host_key_fingerprint(host_key)


def test_mac_addresses_leave_out_loopback_and_zero(tmp_path: Path) -> None:
    for dev, kind, mac in (("lo", "772", "00:00:00:00:00:00"), ("eth0", "1", "52:54:00:AB:CD:EF"),
                           ("dummy0", "1", "00:00:00:00:00:00"), ("wg0", "65534", "")):
        (tmp_path / dev).mkdir()
        (tmp_path / dev / "type").write_text(kind + "\n")
        (tmp_path / dev / "address").write_text(mac + "\n")
    assert mac_addresses(tmp_path) == ("52:54:00:ab:cd:ef",)


def test_a_slave_announces_name_fingerprint_ssh_port_and_its_claim_port(
        tmp_path: Path, host_key: Path) -> None:
    pub = FakePublisher()
    keys = tmp_path / "authorized_keys"
    a = Announcer(conf(tmp_path, 7733), Options(host_key=host_key, ssh_port=2222,
                                                authorized_keys=keys), pub)
    a.start()
    (ann, port), = pub.published
    assert (ann.name, ann.fingerprint, ann.ssh_port, ann.claim_port, port) == (
        "render1", host_key_fingerprint(host_key), 2222, 7733, 7733)
    # Once a master's key is installed, the claim port goes from the announcement.
    keys.write_text('restrict,command="/usr/bin/afarm-slave-shell" ssh-ed25519 AAAA m\n')
    a.tick()
    assert pub.published[-1][0].claim_port == 0 and pub.published[-1][1] == 2222
    a.stop()


def test_an_enrolled_slave_announces_no_claim_port_and_takes_no_claims(
        tmp_path: Path, host_key: Path) -> None:
    keys = tmp_path / "authorized_keys"
    keys.write_text('restrict,command="/usr/bin/afarm-slave-shell" ssh-ed25519 AAAA m\n')
    pub = FakePublisher()
    opts = Options(host_key=host_key, authorized_keys=keys)
    a = Announcer(conf(tmp_path, 7733), opts, pub)
    a.start()
    assert pub.published[0][0].claim_port == 0
    assert serve_claims(conf(tmp_path, 7733), opts, threading.Event()) == 0  # returns at once


def test_claim_port_0_announces_none(tmp_path: Path, host_key: Path) -> None:
    pub = FakePublisher()
    a = Announcer(conf(tmp_path, 0), Options(host_key=host_key,
                                             authorized_keys=tmp_path / "k"), pub)
    a.start()
    assert pub.published[0][0].claim_port == 0


def test_without_avahi_the_slave_says_so_once_and_tries_again_later(
        tmp_path: Path, host_key: Path, caplog: pytest.LogCaptureFixture) -> None:
    pub = FakePublisher(fail=True)
    a = Announcer(conf(tmp_path), Options(host_key=host_key), pub)
    with caplog.at_level("INFO"):
        a.start()
        a.tick()
        a.tick()
    assert sum("not announced over Avahi" in r.message for r in caplog.records) == 1
    pub.fail = False
    a.tick()
    assert len(pub.published) == 1
