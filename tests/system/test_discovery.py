# SPDX-License-Identifier: MIT
"""Discovery with real daemons: a private dbus-daemon and avahi-daemon per namespace host
(and one for the master on the bridge). A fresh slave announces itself, shows up as
pending, is accepted with ``afarmctl slave accept NAME --yes`` and renders; a machine that
announces the same name with another host key is refused loudly."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from afarm.discovery.publish import host_key_fingerprint, mac_addresses
from afarm.master import auth
from afarm.master.slaves.wol import magic_packet
from afarm.protocol.net import join_hostport
from tests import farm as farm_module
from tests.farm import MasterProcess
from tests.system.mdns import MdnsHost
from tests.system.test_power import Nic
from tests.system.test_slave_shell_ssh import shell_wrapper
from tests.system.testnet import Host, TestNet, bridge_name

pytestmark = [pytest.mark.system, pytest.mark.slow]

SRC = str(Path(__file__).resolve().parents[2] / "src")
SLEEP = "kind = command\nexecutable = /bin/sleep\nargv = {item},\ncapture_stdout = false\n"
CLAIM_PORT = 7733


class BridgeMaster(MasterProcess):
    """A master whose job port listens on the test net's bridge, where slaves reach it."""

    def __init__(self, base: Path, bridge_addr: str) -> None:
        super().__init__(base, slaves=0, apps={"sleep": SLEEP})
        text = self.conf.read_text()
        self.conf.write_text(text.replace(f"listen = 127.0.0.1:{self.job_port}",
                                          f"listen = {bridge_addr}:{self.job_port}"))
        # Not loopback: clients need a token (the master's own one is added on start).
        self.client.token = auth.new_token(base / "tokens", "test", auth.ADMIN)  # accepts slaves
        self.bridge_addr = bridge_addr
        self.client.job_url = f"http://{join_hostport(bridge_addr, self.job_port)}"

    @property
    def master_arg(self) -> list[str]:
        return ["--master", join_hostport(self.bridge_addr, self.job_port),
                "--results", f"127.0.0.1:{self.results_port}"]


def slave_state(m: MasterProcess, name: str) -> dict[str, Any] | None:
    for s in m.client.get("/api/v1/slaves"):
        if s["name"] == name:
            return dict(s)
    return None


def wait_for(what: str, check: Any, m: MasterProcess, timeout: float = 30) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = check()
        if got:
            return got
        time.sleep(0.05)
    raise AssertionError(f"{what} did not happen in {timeout} s:\n{m.logtext()[-3000:]}")


def start_slave(net: TestNet, h: Host, mdns: MdnsHost, name: str) -> None:
    """On ``h``, as the packages run them: afarm-slave run (announces ``name``) and
    afarm-slave claim (root, takes one master's claim on [slave] claim_port)."""
    apps = h.dir / "applications.d"
    apps.mkdir(exist_ok=True)
    (apps / "sleep.conf").write_text(SLEEP)
    conf = h.dir / "slave.conf"
    conf.write_text(f"[slave]\nname = {name}\nwork_dir = {h.workdir}\n"
                    f"applications_dir = {apps}\nclaim_port = {CLAIM_PORT}\n")
    conf.chmod(0o644)
    wrapper = shell_wrapper(h, conf)
    net.slave_door(h, wrapper)
    h.authorized_keys.write_text("")  # a fresh slave: no master's key yet
    common = ["--host-key", f"{h.host_key}.pub", "--ssh-port", str(h.port), "--user", h.user,
              "--authorized-keys", str(h.authorized_keys), "--shell-command", str(wrapper)]
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "PYTHONPATH": SRC,
           "DBUS_SYSTEM_BUS_ADDRESS": mdns.address}
    for verb in ("claim", "run"):
        log = open(h.dir / f"afarm-slave-{verb}.log", "ab")  # noqa: SIM115 - closed with it
        net.popen(h, [sys.executable, "-m", "afarm.slave.daemon", "--config", str(conf),
                      verb, *common], stdout=log, stderr=log, env=env)


def master_post(m: BridgeMaster, path: str, body: dict[str, Any]) -> tuple[int, Any]:
    import urllib.error
    import urllib.request

    req = urllib.request.Request(m.client.job_url + path, data=json.dumps(body).encode(),
                                 method="POST", headers={
                                     "Content-Type": "application/json",
                                     "Authorization": f"Bearer {m.client.token}"})
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:  # noqa: S310
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


def announce_as(net: TestNet, h: Host, mdns: MdnsHost, name: str, fp: str) -> Any:
    """Publish ``name`` with host key ``fp`` from ``h`` as a hand-made announcement."""
    code = ("import time; from afarm.discovery.publish import Publisher;"
            " from afarm.discovery.txt import Announcement;"
            # Keep the publisher: its bus connection holds the announcement.
            f" p = Publisher(); p.publish(Announcement({name!r}, {fp!r}, (), '0.2.0', 22, 7733),"
            f" 7733, {name + '-impostor'!r}); time.sleep(600)")
    log = open(h.dir / "impostor.log", "ab")  # noqa: SIM115 - closed with the process
    return net.popen(h, [sys.executable, "-c", code], stdout=log, stderr=log,
                     env={"PYTHONPATH": SRC, "DBUS_SYSTEM_BUS_ADDRESS": mdns.address})


@pytest.fixture
def net(testnet_factory: Any) -> TestNet:
    made: TestNet = testnet_factory(2)
    return made


@pytest.fixture
def mdns(net: TestNet, tmp_path: Path) -> Iterator[dict[str, MdnsHost]]:
    """One avahi-daemon per host and one for the master, stopped even when a test fails."""
    started: dict[str, MdnsHost] = {}
    try:
        assert net.net is not None
        started["master"] = MdnsHost(tmp_path / "mdns-master", None, bridge_name(net.net),
                                     f"afarm-m-n{net.net}").start()
        for h in net:
            started[h.name] = MdnsHost(tmp_path / f"mdns-{h.name}", h.netns_path, h.ifname,
                                       f"{h.name}-n{net.net}").start()
        yield started
    finally:
        for m in started.values():
            m.stop()


@pytest.fixture
def master(net: TestNet, mdns: dict[str, MdnsHost], tmp_path: Path,
           monkeypatch: pytest.MonkeyPatch) -> Iterator[BridgeMaster]:
    monkeypatch.setitem(farm_module.ENV, "DBUS_SYSTEM_BUS_ADDRESS", mdns["master"].address)
    m = BridgeMaster(tmp_path / "master", net.bridge_addr)
    try:
        m.start()
        yield m
    finally:
        m.stop()


def test_a_slave_found_on_the_network_is_accepted_with_one_command_and_renders(
        net: TestNet, mdns: dict[str, MdnsHost], master: BridgeMaster) -> None:
    h, other = net[0], net[1]
    name = "render1"
    fp = host_key_fingerprint(Path(f"{h.host_key}.pub"))
    t0 = time.monotonic()
    start_slave(net, h, mdns[h.name], name)
    pending = wait_for("the slave showing as pending",
                       lambda: (s := slave_state(master, name)) and s["state"] == "pending"
                       and s, master)
    print(f"\npublish -> pending: {time.monotonic() - t0:.2f} s (incl. the slave's start)")
    assert pending["discovered"]["fingerprint"] == fp
    assert pending["discovered"]["address"] == h.addr and pending["running"] == []
    listing = master.ctl("slaves")
    assert listing.returncode == 0 and f"{fp} at {h.addr}" in listing.stdout, listing

    # A pending slave gets no work: a job waits.
    job = master.submit("--app", "sleep", "--items", "0.1,0.1")
    time.sleep(1.0)
    assert master.client.get(f"/api/v1/jobs/{job}")["status"] == "queued"

    t1 = time.monotonic()
    accepted = master.ctl("slave", "accept", name, "--yes")
    assert accepted.returncode == 0, (accepted.stdout, accepted.stderr, master.logtext())
    assert fp in accepted.stdout
    print(f"accept (claim + enrolment): {time.monotonic() - t1:.2f} s")
    assert (master.state / "known_hosts").read_text().split()[0] == h.addr
    assert master.wait(job, timeout=120)["status"] == "completed", master.logtext()[-3000:]
    print(f"accept -> job done: {time.monotonic() - t1:.2f} s")
    assert slave_state(master, name)["state"] in ("online", "busy")  # type: ignore[index]

    # Another machine announces the same name with its own host key (under another DNS-SD
    # instance name, as an attacker would to dodge mDNS's own conflict check): refused.
    impostor_fp = host_key_fingerprint(Path(f"{other.host_key}.pub"))
    announce_as(net, other, mdns[other.name], name, impostor_fp)
    warned = wait_for("the warning about the other host key",
                      lambda: (s := slave_state(master, name)) and s.get("discovery_warning"),
                      master)
    assert impostor_fp in warned and fp in warned and "refused" in warned
    assert f"announced from {other.addr} with host key {impostor_fp}" in master.logtext()
    listing = master.ctl("slaves")
    assert "WARNING:" in listing.stdout and impostor_fp in listing.stdout
    again = master.ctl("slave", "accept", name, "--yes")
    assert again.returncode != 0 and "no pending slave" in again.stderr
    # The enrolled slave keeps working with the key it was accepted with.
    job2 = master.submit("--app", "sleep", "--items", "0.1")
    assert master.wait(job2, timeout=60)["status"] == "completed"
    assert json.loads(master.ctl("--json", "slaves").stdout)

    # Its definition has no mac: it is woken at a MAC it announced. A person switches it
    # off (every process there killed, the master's session with them); the packet that
    # afarmctl slave wake sends reaches its network (the bridge's broadcast, not
    # 255.255.255.255, which leaves by the master's default route) with that MAC.
    net.crash(h)
    wait_for("the slave unreachable",
             lambda: slave_state(master, name)["state"] == "unreachable",  # type: ignore
             master)
    announced = mac_addresses()  # what the slave announced (the namespaces share /sys)
    nic = Nic(net, h, announced[0])
    try:
        woke = master.ctl("--json", "slave", "wake", name)
        assert woke.returncode == 0, (woke.stderr, master.logtext()[-2000:])
        mac = json.loads(woke.stdout)["mac"]
        assert mac in announced
        wait_for("the magic packet in the slave's namespace", lambda: nic.packets, master)
        assert nic.packets[0] == magic_packet(mac)
    finally:
        nic.close()


def test_a_pending_name_announced_with_two_host_keys_is_not_accepted_until_sorted_out(
        net: TestNet, mdns: dict[str, MdnsHost], master: BridgeMaster) -> None:
    h, other = net[0], net[1]
    name = "render2"
    fp = host_key_fingerprint(Path(f"{h.host_key}.pub"))
    impostor_fp = host_key_fingerprint(Path(f"{other.host_key}.pub"))
    impostor = announce_as(net, other, mdns[other.name], name, impostor_fp)
    wait_for("the first announcement pending",
             lambda: (s := slave_state(master, name)) and s["state"] == "pending", master)
    start_slave(net, h, mdns[h.name], name)
    warning = wait_for("the warning about the second host key",
                       lambda: (s := slave_state(master, name)) and s["last_error"], master)
    assert f"with host key {fp}" in warning and impostor_fp in warning
    assert "WARNING" in master.logtext() and fp in master.logtext()
    refused = master.ctl("slave", "accept", name, "--yes")
    assert refused.returncode == 1 and "not accepted" in refused.stderr, refused
    status, answer = master_post(master, f"/api/v1/slaves/{name}/accept",
                                 {"fingerprint": fp})  # the API refuses it too, either key
    assert status == 409 and impostor_fp in answer["error"]
    assert not (master.state / "known_hosts").exists()
    # The admin finds and stops the impostor, forgets the name, and it starts over.
    impostor.kill()
    impostor.wait()
    time.sleep(1.0)  # its avahi-daemon says goodbye; the master's forgets the record
    assert master.ctl("slave", "reject", name).returncode == 0
    pending = wait_for("the real slave pending again",
                       lambda: (s := slave_state(master, name)) and s["state"] == "pending"
                       and s, master)
    assert pending["discovered"]["fingerprint"] == fp and not pending["last_error"]
    accepted = master.ctl("slave", "accept", name, "--yes")
    assert accepted.returncode == 0, (accepted.stderr, master.logtext()[-2000:])
    job = master.submit("--app", "sleep", "--items", "0.1")
    assert master.wait(job, timeout=60)["status"] == "completed"
