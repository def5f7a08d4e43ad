# SPDX-License-Identifier: MIT
"""Waking a slave found by discovery: which announced MAC, which broadcast address, and the
power manager using them for a slave whose definition has no mac."""

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from afarm.discovery.browse import Found
from afarm.discovery.txt import Announcement
from afarm.master import discovered
from afarm.master.farm import Farm
from afarm.master.slaves.power import PowerSettings
from afarm.master.slaves.wakeaddr import broadcast_towards, choose_mac, neighbours
from afarm.master.slaves.waker import Machine, PowerManager
from afarm.store import discovered as table

ARP = """IP address       HW type     Flags       HW address            Mask     Device
10.231.0.12      0x1         0x2         16:29:08:05:66:5e     *        afbr0
10.231.0.13      0x1         0x0         00:00:00:00:00:00     *        afbr0
192.0.2.1        0x1         0x2         02:FC:00:00:00:05     *        eth0
"""
WIFI, WIRED = "aa:00:00:00:00:01", "16:29:08:05:66:5e"
FP = "SHA256:" + "A" * 43


def test_the_neighbour_table_keeps_complete_entries_only() -> None:
    assert neighbours(ARP) == {"10.231.0.12": WIRED, "192.0.2.1": "02:fc:00:00:00:05"}


def test_of_several_macs_the_one_the_master_sees_at_the_slaves_address_is_chosen() -> None:
    table_ = neighbours(ARP)
    assert choose_mac("10.231.0.12", (WIFI, WIRED), table_) == WIRED
    assert choose_mac("10.231.0.99", (WIFI, WIRED), table_) == WIFI  # no entry: the first
    assert choose_mac("192.0.2.1", (WIFI,), table_) == WIFI  # not announced: not used
    assert choose_mac("10.231.0.12", (), table_) is None


def test_the_packet_goes_to_the_broadcast_of_the_interface_towards_the_slave() -> None:
    assert broadcast_towards("127.0.0.5") == "127.255.255.255"
    assert broadcast_towards("::1") == "255.255.255.255"
    assert broadcast_towards("not an address") == "255.255.255.255"


@pytest.fixture
def discovery(tmp_path: Path) -> Iterator[discovered.Discovery]:
    farm = Farm(tmp_path, {})
    d = discovered.Discovery(farm, tmp_path, None, ("127.0.0.1", 7731))
    d.neighbours = lambda: neighbours(ARP)
    yield d
    farm.store.close()


def put(d: discovered.Discovery, state: str, macs: tuple[str, ...],
        address: str = "10.231.0.12") -> None:
    with d.farm.store.transaction():
        table.put(d.farm.store.db, table.Discovered("r1", state, FP, address, 22, 0, macs,
                                                    "0.3.0", 1.0, 1.0))


def test_an_enrolled_slave_is_woken_at_its_announced_mac_and_the_choice_is_kept(
        discovery: discovered.Discovery) -> None:
    put(discovery, table.KNOWN, (WIFI, WIRED))
    assert discovery.wake_address("r1") == (WIRED, broadcast_towards("10.231.0.12"))
    assert table.get(discovery.farm.store.db, "r1").macs == (WIRED, WIFI)  # type: ignore
    discovery.neighbours = dict  # asleep: no entry any more
    assert discovery.wake_address("r1") == (WIRED, broadcast_towards("10.231.0.12"))
    # its next announcement lists its cards in its own order; the chosen one stays first
    a = Announcement("r1", FP, (WIFI, WIRED), "0.3.0")
    discovery.observe(Found(a, "10.231.0.12", "r1"))
    assert table.get(discovery.farm.store.db, "r1").macs == (WIRED, WIFI)  # type: ignore


def test_a_pending_slave_or_one_without_macs_has_no_wake_address(
        discovery: discovered.Discovery) -> None:
    put(discovery, table.PENDING, (WIRED,))
    assert discovery.wake_address("r1") is None
    put(discovery, table.KNOWN, ())
    assert discovery.wake_address("r1") is None
    assert discovery.wake_address("nobody") is None


class Place:
    def __init__(self, name: str, state: str) -> None:
        self.name, self.state, self.slots = name, state, 1
        self.running: dict[int, Any] = {}
        self.tags: list[str] = []
        self.woken = 0

    def sleep(self, state: str, reason: str) -> None:
        self.state = state

    def wake(self) -> None:
        self.woken += 1
        self.state = "waking"

    def set_state(self, state: str, error: str | None = None) -> None:
        self.state = state

    async def suspend_machine(self) -> str:
        return ""


class Recorder:
    def __init__(self) -> None:
        self.sent: list[tuple[str, str, int]] = []

    def wake(self, mac: str, broadcast: str, port: int) -> None:
        self.sent.append((mac, broadcast, port))


def test_a_slave_without_a_mac_in_its_definition_is_woken_at_what_it_announced() -> None:
    places = {"found": Place("found", "asleep"), "defined": Place("defined", "asleep")}
    waker = Recorder()
    pm = PowerManager(places, PowerSettings(enabled=True), {
        "defined": Machine("52:54:00:00:00:01", "10.0.0.255")}, waker=waker)
    asked: list[str] = []

    def announced(name: str) -> Machine | None:
        asked.append(name)
        return Machine(WIRED, "10.231.0.255") if name in ("found", "defined") else None

    pm.announced = announced
    pm.wake_by_hand("found")
    pm.wake_by_hand("defined")  # the definition's mac wins
    assert waker.sent == [(WIRED, "10.231.0.255", 9), ("52:54:00:00:00:01", "10.0.0.255", 9)]
    assert asked == ["found"]
    pm.view()
    pm.observe("found", "online")  # back online: asked again (a fresh neighbour entry)
    pm.machine("found")
    assert asked == ["found", "found"]


def test_after_a_restart_a_sleeping_slaves_last_architecture_decides_which_work_wakes_it(
        ) -> None:
    import asyncio

    from afarm.master.slaves.power import Demand

    places = {n: Place(n, "offline") for n in ("arm", "x86")}
    for p in places.values():
        p.info = {}  # type: ignore[attr-defined]
        p.arch = "amd64"  # type: ignore[attr-defined]  # the link's default before hello
    pm = PowerManager(places, PowerSettings(enabled=True, min_sleep=0),
                      {n: Machine(WIRED) for n in places}, waker=Recorder(),
                      clock=lambda: 10_000.0,
                      demand=lambda: [Demand(frozenset(), 1, "blender", "4.2",
                                             arches=frozenset({"arm64"}))])
    pm.restore({"arm": ("asleep", 0.0), "x86": ("asleep", 0.0)},
               {"arm": {"arch": "arm64"}, "x86": {"arch": "amd64; rm"}})
    assert places["arm"].arch == "arm64"  # type: ignore[attr-defined]
    assert places["x86"].arch == "amd64"  # type: ignore[attr-defined]  # not a name: kept
    acts = asyncio.run(pm.step())
    assert [(a.kind, a.slave) for a in acts] == [("wake", "arm")]


def test_after_a_restart_a_sleeping_slaves_last_memory_still_lets_work_wake_it() -> None:
    from afarm.master.scheduling.properties import Properties
    from afarm.master.slaves.power import Demand

    place = Place("big", "offline")
    place.info = {}  # type: ignore[attr-defined]
    props = Properties()
    pm = PowerManager({"big": place}, PowerSettings(enabled=True, min_sleep=0),
                      {"big": Machine(WIRED)}, waker=Recorder(), clock=lambda: 10_000.0,
                      properties=props.row,
                      demand=lambda: [Demand(frozenset(), 1, min_memory=16.0 * (1 << 30))])
    pm.restore({"big": ("asleep", 0.0)}, {"big": {"memory": 64 * (1 << 30)}})
    assert place.state == "asleep"
    assert [(s.name, s.memory) for s in pm.view()] == [("big", 64.0 * (1 << 30))]
    import asyncio

    acts = asyncio.run(pm.step())
    assert [(a.kind, a.slave) for a in acts] == [("wake", "big")]
