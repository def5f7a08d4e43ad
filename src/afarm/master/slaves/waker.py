# SPDX-License-Identifier: MIT
"""Carries out the power policy: every few seconds it asks master/slaves/power.py what to
do and wakes (Wake-on-LAN), suspends (the slave's `suspend` verb) or marks slaves down.

A woken slave's link reconnects every few seconds; when SSH answers, the acceptance test
runs and the slave becomes idle, which wakes the scheduler. One that does not answer within
resume_timeout is marked down: its capacity no longer counts, so the queued work it was
woken for wakes the next slave in the ranking, and the policy tries it again later. Tasks
are never bound to a slave before it is online, so nothing has to be taken back from it.
"""

import asyncio
import logging
import re
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import tzinfo
from typing import Any, Protocol

from afarm.errors import OperationFailed, UsageError
from afarm.master.slaves.power import (
    Action,
    Demand,
    PowerSettings,
    PowerSlave,
    Window,
    decide,
)
from afarm.master.slaves.wol import BROADCAST, PORT, WakeOnLan, Waker
from afarm.model.slave import shown

log = logging.getLogger(__name__)
TICK = 2.0  # seconds between policy passes
ARCH = re.compile(r"[a-z0-9][a-z0-9-]{0,15}")  # a Debian architecture (amd64, arm64)
# States from which `afarmctl slave wake` sends a packet: the machine may well be off.
WAKEABLE_STATES = frozenset({"asleep", "down", "unreachable", "offline", "connecting",
                             "waking"})


class PowerPlace(Protocol):
    """What the manager needs of a slave's link (master/slaves/link.py)."""

    name: str
    slots: int
    state: str
    running: dict[int, Any]

    @property
    def tags(self) -> list[str]: ...

    def sleep(self, state: str, reason: str) -> None: ...

    def wake(self) -> None: ...

    def set_state(self, state: str, error: str | None = None) -> None: ...

    async def suspend_machine(self) -> str: ...


@dataclass(frozen=True)
class Machine:
    """A slave's power facts from its definition."""

    mac: str
    broadcast: str = BROADCAST
    port: int = PORT
    windows: tuple[Window, ...] | None = None
    sleep_watts: float = 2.0


class PowerManager:
    def __init__(self, places: Mapping[str, Any], settings: PowerSettings,
                 machines: dict[str, Machine], *, waker: Waker | None = None,
                 clock: Callable[[], float] = time.time,
                 ranked: Callable[[], list[str]] = lambda: [],
                 demand: Callable[[], dict[frozenset[str], int] | list[Demand]] = dict,
                 tick: float = TICK, tz: tzinfo | None = None,
                 properties: Callable[[str, Any], Mapping[str, float]] | None = None,
                 ) -> None:
        self.places = places
        self.settings = settings
        self.machines = machines
        self.waker: Waker = waker or WakeOnLan()
        self.clock = clock
        self.ranked = ranked
        self.demand = demand
        # A slave's memory and GPUs as the ranking sees them (Properties.row).
        self.properties = properties or (lambda name, place: {})
        self.tick = tick
        self.tz = tz
        self.since: dict[str, float] = {}
        self.states: dict[str, str] = {}
        self.woken_at: dict[str, float] = {}
        self.wakes: deque[float] = deque(maxlen=100_000)
        self.counts = {"wake": 0, "resend": 0, "suspend": 0, "down": 0, "refused": 0}
        self._busy: set[str] = set()  # a suspend in flight
        # Slaves without a mac in their definition are woken at the MAC they announced
        # (master/discovered.py); asked once, and again each time the slave comes online.
        self.announced: Callable[[str], Machine | None] = lambda name: None
        self._found: dict[str, Machine | None] = {}

    def machine(self, name: str) -> Machine | None:
        """How to wake `name`: its definition's mac, else what it announced; None: never."""
        m = self.machines.get(name)
        if m is not None:
            return m
        if name not in self._found:
            self._found[name] = self.announced(name)
        return self._found[name]

    # -- facts ----------------------------------------------------------------------------
    def observe(self, name: str, state: str, at: float | None = None) -> None:
        """Every state change of a slave (Farm.slave_state calls this)."""
        if self.states.get(name) != state:
            self.states[name] = state
            self.since[name] = self.clock() if at is None else at
            if state in ("testing", "online"):
                self._found.pop(name, None)  # connected: its neighbour entry is fresh

    def restore(self, stored: dict[str, tuple[str, float | None]],
                infos: Mapping[str, dict[str, Any]] | None = None) -> None:
        """At start: slaves the store says are asleep or down stay so (no reconnect
        storm against sleeping machines); the others connect as usual. What a sleeping
        slave said of itself last (`infos`: memory, GPUs) stands until it says it again,
        so work that needs it can wake it."""
        for name, (state, since) in stored.items():
            place = self.places.get(name)
            if place is None or state not in ("asleep", "down"):
                continue
            info = (infos or {}).get(name)
            if info and not getattr(place, "info", True):
                place.info = dict(info)
                arch = info.get("arch")
                if isinstance(arch, str) and ARCH.fullmatch(arch):
                    # Else the link's pre-hello default (amd64) would decide which pool
                    # version's work may wake it.
                    place.arch = arch
            if self.machine(name) is not None:
                place.sleep(state, "asleep when the master started" if state == "asleep"
                            else "down when the master started")
                self.observe(name, state, since)

    def view(self) -> list[PowerSlave]:
        order = {n: i for i, n in enumerate(self.ranked())}
        now = self.clock()
        out = []
        for name, p in self.places.items():
            m = self.machine(name)
            state = shown(p.state)
            self.observe(name, p.state, now)  # a state nobody reported starts counting now
            props = self.properties(name, p)
            memory = props.get("memory")
            out.append(PowerSlave(
                name, state, self.since[name], frozenset(p.tags), p.slots,
                len(p.running), m is not None, order.get(name, len(order)),
                self.woken_at.get(name), m.windows if m else None,
                applications=getattr(p, "applications", None),
                memory=memory if memory is not None and memory == memory else None,
                gpus=int(props.get("gpus") or 0),
                quarantined=frozenset(getattr(p, "quarantined", ())),
                drained=bool(getattr(p, "drained", False)),
                arch=getattr(p, "arch", None)))
        return out

    def queued(self) -> list[Demand]:
        """The demand callable's answer as Demand rows: a list as it comes (most urgent
        first), or the older {tags: tasks} form, the most specific tags first."""
        got = self.demand()
        if isinstance(got, dict):
            return [Demand(tags, n) for tags, n in sorted(
                got.items(), key=lambda kv: (-len(kv[0]), sorted(kv[0])))]
        return list(got)

    # -- the loop -------------------------------------------------------------------------
    async def run(self) -> None:
        while True:
            try:
                await self.step()
            except Exception:
                log.exception("power pass failed")
            await asyncio.sleep(self.tick)

    async def step(self) -> list[Action]:
        now = self.clock()
        actions = decide(self.view(), self.queued(), self.settings, now, list(self.wakes), self.tz)
        if actions:
            log.debug("power: %s", ", ".join(f"{a.kind} {a.slave}" for a in actions))
        suspends = []
        for a in actions:
            if a.kind == "suspend":
                suspends.append(self._suspend(a.slave, a.reason))
            elif a.kind == "down":
                self._down(a)
            else:
                self._send(a.slave, a.reason, resend=a.kind == "resend")
        if suspends:
            await asyncio.gather(*suspends)
        return actions

    # -- actions --------------------------------------------------------------------------
    def _send(self, name: str, reason: str, resend: bool = False) -> bool:
        m = self.machine(name)
        place = self.places[name]
        if m is None:
            return False
        now = self.clock()
        try:
            self.waker.wake(m.mac, m.broadcast, m.port)
        except OSError as exc:  # no route, no broadcast: try again on the next pass
            log.warning("%s: cannot send the wake-on-LAN packet: %s", name, exc)
            return False
        self.woken_at[name] = now
        if resend:
            self.counts["resend"] += 1
            return True
        if not self.settings.enabled:
            # Without the policy nothing would time a waking slave out: only the packet
            # goes, and the link finds the machine when its usual reconnect comes round.
            log.info("%s: wake-on-LAN packet sent (%s)", name, reason)
            return True
        self.counts["wake"] += 1
        self.wakes.append(now)
        log.info("%s: waking (%s)", name, reason)
        place.wake()
        return True

    def _down(self, a: Action) -> None:
        self.counts["down"] += 1
        log.warning("%s: down: %s; woken again in %g min if work needs it", a.slave,
                    a.reason, self.settings.retry_down)
        self.places[a.slave].sleep("down", a.reason)

    async def _suspend(self, name: str, reason: str) -> None:
        place = self.places[name]
        if name in self._busy or place.running:
            return
        self._busy.add(name)
        try:
            # draining first: the scheduler gives it nothing while the slave is asked.
            before = place.state
            place.set_state("draining", None)
            if place.running:  # a task got there first: never suspend under it
                place.set_state(before)
                return
            why_not = await place.suspend_machine()
            if why_not:
                self.counts["refused"] += 1
                log.warning("%s refused to suspend: %s", name, why_not)
                place.set_state("online" if before in ("online", "idle") else before,
                                f"suspend refused: {why_not}")
                return
            self.counts["suspend"] += 1
            log.info("%s: suspended (%s)", name, reason)
            place.sleep("asleep", f"suspended: {reason}")
        finally:
            self._busy.discard(name)

    def wake_by_hand(self, name: str) -> dict[str, Any]:
        """`afarmctl slave wake NAME`: send the packet now, whatever the policy says."""
        place = self.places.get(name)
        if place is None:
            raise UsageError(f"no slave {name!r}; afarmctl slaves lists them")
        m = self.machine(name)
        if m is None:
            raise UsageError(f"slave {name} has no mac in its definition and announced"
                             " none, so it cannot be woken; add mac = AA:BB:CC:DD:EE:FF"
                             " to its definition")
        if place.state not in WAKEABLE_STATES:
            raise UsageError(f"slave {name} is {shown(place.state)}, not asleep")
        if not self._send(name, "woken by hand"):
            raise OperationFailed(f"cannot send the wake-on-LAN packet to {name}; the"
                                  " master's log says why")
        return {"name": name, "state": place.state, "mac": m.mac}
