# SPDX-License-Identifier: MIT
"""Prices every attempt as its outcome is applied: busy seconds x the place's watts (or the
energy the slave measured) x the price, written to the store's usage table in the same
transaction as the outcome, so a failed or requeued attempt is paid for too."""

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from afarm.config.types import SlaveDef
from afarm.master import accounting
from afarm.master.slaves.link import Outcome
from afarm.model.job import Task
from afarm.store import usage
from afarm.store.db import Store

log = logging.getLogger(__name__)
MASTER = "master"


@dataclass(frozen=True)
class Power:
    """One machine's draw and price; 0 means unknown (the site's default is used)."""

    watts_busy: float = 0.0
    watts_idle: float = 0.0
    price: float = 0.0
    slots: int = 1
    # Its RAPL figure also counts others' work: the master's local slaves share one machine
    # (with each other and the master's follow-ups), so only the estimate is fair.
    shared: bool = False
    sleep_watts: float = 2.0  # suspended (afarmctl report: asleep kWh)

    @classmethod
    def of(cls, slave: SlaveDef) -> "Power":
        """A slave definition's figures (unset ones: 0, unknown)."""
        return cls(slave.watts_busy or 0.0, slave.watts_idle or 0.0, slave.price or 0.0,
                   slave.slots, sleep_watts=slave.sleep_watts)


@dataclass
class Site:
    """[energy] of master.conf: the master's own draw, defaults, the price and tariff."""

    watts_busy: float = 0.0
    watts_idle: float = 0.0
    price_per_kwh: float = 0.0
    currency: str = "EUR"
    tariff: accounting.Tariff = field(default_factory=accounting.Tariff)


class Meter:
    def __init__(self, store: Store, clock: Callable[[], float]) -> None:
        self.store = store
        self.clock = clock
        self.site = Site()
        self.places: dict[str, Power] = {}

    def power_of(self, place: str) -> Power:
        if place == MASTER:
            # One follow-up at a time or several: each is counted at the master's whole draw.
            return Power(self.site.watts_busy, self.site.watts_idle)
        return self.places.get(place, Power())

    def watts_per_task(self, place: str) -> float | None:
        p = self.power_of(place)
        busy = p.watts_busy or self.site.watts_busy
        return busy / p.slots if busy else None

    def record(self, place: str, task: Task, attempt: int, outcome: Outcome) -> None:
        """The Scheduler's hook, called inside the transaction that applies `outcome`."""
        try:
            self.store_usage(self.usage_of(place, task, attempt, outcome))
        except Exception:  # accounting must never lose an outcome
            log.exception("could not record the usage of task %d attempt %d", task.id,
                          attempt)

    def usage_of(self, place: str, task: Task, attempt: int,
                 outcome: Outcome) -> usage.Usage:
        ended = self.clock()
        reply = outcome.reply
        if reply is not None and reply.seconds > 0:
            seconds = reply.seconds
        else:  # no word from the slave: the time the master saw it busy
            seconds = max(0.0, ended - task.started) if task.started else 0.0
        power = self.power_of(place)
        measured = (reply is not None and power.slots == 1 and not power.shared
                    and place != MASTER
                    and accounting.measured_is_plausible(reply.energy_j, seconds))
        watts: float | None
        if measured and reply is not None and reply.energy_j is not None:
            joules: float | None = reply.energy_j
            watts = reply.energy_j / seconds if seconds > 0 else None
        else:
            watts = self.watts_per_task(place)
            joules = accounting.joules(watts, seconds) if watts is not None else None
        price, cost = self.price(power, joules, ended - seconds, ended)
        return usage.Usage(task.id, attempt, task.job_id, place, task.started, ended,
                           seconds, watts, joules, price, cost, measured)

    def price(self, power: Power, joules: float | None, start: float,
              end: float) -> tuple[float | None, float | None]:
        """(mean price per kWh, cost) of `joules` spent from start to end."""
        if power.price:
            flat: float | None = power.price
        elif self.site.tariff.periods:
            flat = None
        else:
            flat = self.site.price_per_kwh or None
        if joules is None:
            return flat, None
        if flat is not None:
            return flat, accounting.cost(accounting.kwh(joules), flat)
        if not self.site.tariff.periods:
            return None, None
        total = accounting.priced(joules, start, end, self.site.tariff)
        kwh = accounting.kwh(joules)
        mean = total / kwh if kwh else accounting.price_at(self.site.tariff, start)
        return mean, total

    def store_usage(self, u: usage.Usage) -> None:
        usage.record(self.store.db, u)


def energy_by_day(meter: Meter, since: float, until: float) -> list[dict[str, Any]]:
    """afarmctl report's days: awake (idle + tasks) and asleep kWh and hours."""
    spans = usage.state_spans(meter.store.db, since, until)
    names = {s for s, *_ in spans}
    idle = {n: meter.power_of(n).watts_idle or meter.site.watts_idle for n in names}
    asleep = {n: meter.power_of(n).sleep_watts for n in names}
    days = accounting.energy_by_day(spans, idle, asleep)
    for day, (_, joules) in usage.busy_seconds_by_day(meter.store.db, since, until,
                                                      accounting.day_label).items():
        days.setdefault(day, accounting.DayEnergy()).busy_kwh += accounting.kwh(joules)
    return [days[d].as_json(d) for d in sorted(days)]
