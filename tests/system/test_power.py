# SPDX-License-Identifier: MIT
"""Sleep and wake on a namespace host: the magic packet on the wire, and the master's whole
path from an idle slave to suspend (logind) to a job that wakes it (Wake-on-LAN), waits for
SSH, tests it and dispatches to it.

The machine's sleep is played by its sshd: killed after logind's Suspend, started again by
a stand-in for the sleeping NIC, a listener in the host's namespace that watches UDP port 9
for a valid magic packet with the host's MAC. logind is a stand-in D-Bus service on a
private dbus-daemon (tests/logind.py) that records Suspend and Inhibit; the slave's shell
reaches it through DBUS_SYSTEM_BUS_ADDRESS, set by its forced-command wrapper.
"""

import shlex
import sqlite3
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from afarm.master.slaves.wol import PORT, WakeOnLan, magic_packet
from tests.farm import MasterProcess
from tests.logind import LogindOnPrivateBus
from tests.readable_src import readable_src
from tests.system.test_slave_shell_ssh import install_shell
from tests.system.testnet import Host, TestNet

pytestmark = [pytest.mark.system]

SLEEP_APP = "kind = command\nexecutable = /bin/sleep\nargv = {item},\ncapture_stdout = false\n"

# The sleeping NIC: prints every datagram on port 9 as hex, and WAKE for a magic packet
# with this host's MAC.
LISTENER = r"""
import socket, sys
mac = bytes.fromhex(sys.argv[1].replace(":", ""))
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", int(sys.argv[2])))
print("LISTENING", flush=True)
while True:
    data = s.recv(2048)
    print("PACKET", data.hex(), flush=True)
    if data == b"\xff" * 6 + mac * 16:
        print("WAKE", flush=True)
"""


def mac_of(net: TestNet, h: Host) -> str:
    out = net.exec(h, ["cat", f"/sys/class/net/{h.ifname}/address"], check=True).stdout
    return out.strip()


def broadcast_of(h: Host) -> str:
    return h.addr.rsplit(".", 1)[0] + ".255"  # the test net is a /24


class Nic:
    """The listener in the host's namespace; `on_wake` runs for each valid packet."""

    def __init__(self, net: TestNet, h: Host, mac: str,
                 on_wake: Callable[[], None] = lambda: None) -> None:
        self.packets: list[bytes] = []
        self.wakes = 0
        self.on_wake = on_wake
        self.proc = net.popen(h, ["/usr/bin/python3", "-c", LISTENER, mac, str(PORT)],
                              stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        assert self.proc.stdout.readline().strip() == "LISTENING"
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            word, _, rest = line.strip().partition(" ")
            if word == "PACKET":
                self.packets.append(bytes.fromhex(rest))
            elif word == "WAKE":
                self.wakes += 1
                self.on_wake()

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait()


def until(cond: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = cond()
        if got:
            return got
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
def host(testnet_factory: Callable[..., TestNet]) -> Iterator[tuple[TestNet, Host]]:
    net = testnet_factory(1)
    yield net, net[0]


def test_the_magic_packet_reaches_the_slaves_namespace_with_its_mac(
        host: tuple[TestNet, Host]) -> None:
    net, h = host
    mac = mac_of(net, h)
    nic = Nic(net, h, mac)
    try:
        WakeOnLan(prefer_module=False).wake(mac, broadcast_of(h), PORT)
        until(lambda: nic.wakes, 10, "the packet")
        assert nic.packets == [magic_packet(mac)]
        assert nic.packets[0] == b"\xff" * 6 + bytes.fromhex(mac.replace(":", "")) * 16
    finally:
        nic.close()


def slave_with_logind(net: TestNet, h: Host, bus_address: str) -> None:
    """afarm-slave-shell as the host's forced command, talking to the stand-in logind."""
    wrapper = install_shell(net, h)
    code = (f"import sys; sys.path.insert(0, {str(readable_src())!r}); "
            "from afarm.slave.shell import main; sys.exit(main())")
    wrapper.write_text(
        "#!/bin/sh\n"
        f"DBUS_SYSTEM_BUS_ADDRESS={shlex.quote(bus_address)}; export DBUS_SYSTEM_BUS_ADDRESS\n"
        f"exec /usr/bin/python3 -I -B -c {shlex.quote(code)} --config"
        f" {shlex.quote(str(h.dir / 'slave.conf'))} \"$@\"\n")
    (h.dir / "applications.d" / "sleep.conf").write_text(SLEEP_APP)


def power_master(base: Path, net: TestNet, h: Host, mac: str) -> MasterProcess:
    m = MasterProcess(base, slaves=0, apps={"sleep": SLEEP_APP},
                      extra_conf="[power]\nenabled = yes\nidle_suspend = 0.05\n"
                                 "resume_timeout = 40\nmin_sleep = 0\n")
    slaves_d = base / "slaves.d"
    slaves_d.mkdir(exist_ok=True)
    (slaves_d / f"{h.name}.conf").write_text(
        f"host = {h.addr}\nport = {h.port}\nuser = {h.user}\nkey = {net.client_key}\n"
        f"work_dir = {h.workdir}\nmac = {mac}\nbroadcast = {broadcast_of(h)}\n")
    m.state.mkdir(parents=True, exist_ok=True)
    (m.state / "known_hosts").write_bytes(net.known_hosts.read_bytes())
    return m


def states_of(m: MasterProcess, slave: str) -> list[str]:
    db = sqlite3.connect(f"file:{m.state / 'afarm.db'}?mode=ro", uri=True)
    try:
        return [r[0] for r in db.execute(
            "SELECT json_extract(data, '$.state') FROM events WHERE kind='slave-state'"
            " AND slave=? ORDER BY id", (slave,))]
    finally:
        db.close()


def state(m: MasterProcess, slave: str) -> str:
    return str(next(s["state"] for s in m.client.get("/api/v1/slaves") if s["name"] == slave))


def test_an_idle_slave_is_suspended_and_woken_tested_and_given_work_by_a_new_job(
        host: tuple[TestNet, Host], tmp_path: Path) -> None:
    net, h = host
    mac = mac_of(net, h)
    with LogindOnPrivateBus(h.dir / "bus") as (bus, logind):
        slave_with_logind(net, h, bus.address)
        nic = Nic(net, h, mac, on_wake=lambda: net.restart(h))
        m = power_master(tmp_path, net, h, mac)
        started = time.time()
        try:
            m.start(wait_slaves=False)
            # Idle past idle_suspend (3 s): the master asks it to suspend; logind hears it.
            until(lambda: logind.calls("Suspend"), 90, f"a suspend\n{m.logtext()[-3000:]}")
            until(lambda: state(m, h.name) == "asleep", 30, "asleep")
            net.kill_sshd(h)  # the machine sleeps: nothing answers SSH now
            asleep_at = time.time()
            job = m.submit("--app", "sleep", "--items", "1,1,1")
            result = m.wait(job, timeout=120)
            assert result["status"] == "completed", m.logtext()[-3000:]
            assert nic.wakes >= 1 and nic.packets[0] == magic_packet(mac)
            seq = states_of(m, h.name)
            woke = seq.index("waking", seq.index("asleep"))
            assert seq[woke:woke + 3] == ["waking", "testing", "online"], seq
            # While its tasks ran the slave held an inhibitor, and nobody suspended it.
            calls = logind.calls()
            inhibits = [c for c in calls if c["call"] == "Inhibit" and c["at"] > asleep_at]
            assert inhibits and all((c["what"], c["who"], c["mode"]) == ("sleep", "afarm",
                                                                         "block")
                                    for c in inhibits)
            released = until(lambda: [c for c in logind.calls("Released")
                                      if c["at"] > inhibits[0]["at"]], 30, "the release")
            suspends = [c["at"] for c in logind.calls("Suspend")]
            assert not [t for t in suspends if inhibits[0]["at"] <= t < released[0]["at"]]
            # Idle again afterwards: suspended a second time.
            until(lambda: len(logind.calls("Suspend")) >= 2, 60, "the second suspend")
            # afarmctl report: the hours it slept count at sleep_watts (2 W by default).
            since = time.strftime("%Y-%m-%dT%H:%M", time.localtime(started - 60))
            days = m.client.get(f"/api/v1/report?since={since}")["days"]
            assert sum(d["asleep_hours"] for d in days) > 0
            assert sum(d["kwh_asleep"] for d in days) > 0
            assert sum(d["awake_hours"] for d in days) > 0
            assert "per day:" in m.ctl("report", "--since", since).stdout
        finally:
            m.stop()
            nic.close()
            if not net.sshd_running(h):
                net.restart(h)


def test_the_floor_keeps_one_awake_and_a_slave_that_does_not_wake_is_down_while_its_work_goes_on(
        testnet_factory: Callable[..., TestNet], tmp_path: Path) -> None:
    net = testnet_factory(2)
    h1, h2 = net[0], net[1]
    with LogindOnPrivateBus(h1.dir / "bus") as (bus, logind):
        for h in (h1, h2):
            slave_with_logind(net, h, bus.address)
        m = power_master(tmp_path, net, h1, mac_of(net, h1))
        (tmp_path / "slaves.d" / f"{h2.name}.conf").write_text(
            f"host = {h2.addr}\nport = {h2.port}\nuser = {h2.user}\nkey = {net.client_key}\n"
            f"work_dir = {h2.workdir}\nmac = {mac_of(net, h2)}\n"
            f"broadcast = {broadcast_of(h2)}\n")
        text = m.conf.read_text().replace("resume_timeout = 40", "resume_timeout = 6")
        m.conf.write_text(text.replace("[power]\n", "[power]\nkeep_awake = *:1\n"))
        try:
            m.start(wait_slaves=False)
            until(lambda: logind.calls("Suspend"), 90, f"a suspend\n{m.logtext()[-3000:]}")
            sleeper = until(lambda: next((h for h in (h1, h2) if state(m, h.name) == "asleep"),
                                         None), 30, "a slave asleep")
            awake = h2 if sleeper is h1 else h1
            time.sleep(5)  # well past idle_suspend: the floor keeps the other one up
            assert state(m, awake.name) == "online"
            assert len(logind.calls("Suspend")) == 1
            net.kill_sshd(sleeper)  # asleep, and its NIC ignores the packet (no listener)
            job = m.submit("--app", "sleep", "--items", "2,2,2,2")
            until(lambda: state(m, sleeper.name) == "waking", 30, "the wake")
            until(lambda: state(m, sleeper.name) == "down", 30,
                  f"down after resume_timeout: {states_of(m, sleeper.name)}\n"
                  f"{m.logtext()[-4000:]}")
            assert m.wait(job, timeout=120)["status"] == "completed"
            tasks = m.client.get(f"/api/v1/jobs/{job}")["tasks"]
            assert {t["slave"] for t in tasks} == {awake.name}
            assert "waking" in states_of(m, sleeper.name)
        finally:
            m.stop()
            for h in (h1, h2):
                if not net.sshd_running(h):
                    net.restart(h)
