# SPDX-License-Identifier: MIT
"""The arithmetic of energy and cost: watts x seconds -> joules -> kWh, kWh x price -> cost,
and a time-of-day tariff. Pure functions; nothing here reads the clock, the store or files.
"""

import math
import re
from dataclasses import dataclass
from datetime import datetime, timedelta, tzinfo

J_PER_KWH = 3.6e6
DAY = 86400
# A measured figure above this many watts per task is not believed (a broken or lying
# counter); the estimate from the slave's definition is used instead.
MAX_MEASURED_WATTS = 20_000.0
# "07:00-23:00 0.30", or "07:00-23:00=0.30" as the ranking's [scheduler] tariff writes it.
_PERIOD = re.compile(
    r"^\s*(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})(?:\s+|\s*=\s*)(\d+(?:\.\d+)?)\s*$")


def joules(watts: float, seconds: float) -> float:
    return watts * seconds


def kwh(joules_: float) -> float:
    return joules_ / J_PER_KWH


def cost(kwh_: float, price_per_kwh: float) -> float:
    return kwh_ * price_per_kwh


def measured_is_plausible(joules_: float | None, seconds: float) -> bool:
    """Whether a slave's measured energy can be believed for an attempt this long."""
    if joules_ is None or not math.isfinite(joules_) or joules_ < 0:
        return False
    return joules_ <= MAX_MEASURED_WATTS * max(seconds, 1.0)


@dataclass(frozen=True)
class Period:
    """[start, end) in seconds after local midnight; end may be <= start (wraps midnight)."""

    start: int
    end: int
    price: float

    def covers(self, second_of_day: float) -> bool:
        if self.start < self.end:
            return self.start <= second_of_day < self.end
        return second_of_day >= self.start or second_of_day < self.end


@dataclass(frozen=True)
class Tariff:
    """Prices per kWh by time of day; hours no period covers cost `default`."""

    periods: tuple[Period, ...] = ()
    default: float = 0.0

    def price_at(self, second_of_day: float) -> float:
        for p in self.periods:
            if p.covers(second_of_day):
                return p.price
        return self.default

    def covers_day(self) -> bool:
        """Whether every moment of the day falls in a period."""
        marks = self.boundaries() or [0]
        return all(any(p.covers(m) for p in self.periods) for m in marks)

    def boundaries(self) -> list[int]:
        """Seconds of the day at which the price may change, sorted."""
        return sorted({b % DAY for p in self.periods for b in (p.start, p.end)})


def _second_of_day(h: str, m: str, text: str) -> int:
    hour, minute = int(h), int(m)
    if minute > 59 or hour > 24 or (hour == 24 and minute):
        raise ValueError(f"{text!r}: {h}:{m} is not a time of day (00:00 to 24:00)")
    return hour * 3600 + minute * 60


def parse_tariff(entries: list[str] | tuple[str, ...], default: float = 0.0) -> Tariff:
    """`["00:00-07:00 0.15", "07:00-23:00=0.30"]` -> a Tariff; ValueError says what is wrong."""
    periods = []
    for text in entries:
        m = _PERIOD.match(text)
        if not m:
            raise ValueError(f"tariff period {text!r} is not HH:MM-HH:MM PRICE,"
                             " e.g. 07:00-23:00 0.30")
        start = _second_of_day(m[1], m[2], text)
        end = _second_of_day(m[3], m[4], text)
        if start % DAY == end % DAY:
            raise ValueError(f"tariff period {text!r} is empty or the whole day; for one"
                             " price all day set price_per_kwh instead")
        periods.append(Period(start % DAY, end % DAY if end != DAY else DAY, float(m[5])))
    tariff = Tariff(tuple(periods), default)
    # Two periods overlap if some boundary-to-boundary stretch lies in both.
    marks = tariff.boundaries() or [0]
    for i, b in enumerate(marks):
        nxt = marks[i + 1] if i + 1 < len(marks) else marks[0] + DAY
        mid = ((b + nxt) / 2) % DAY
        holders = [p for p in periods if p.covers(mid)]
        if len(holders) > 1:
            raise ValueError("tariff periods overlap: "
                             + " and ".join(f"{_hhmm(p.start)}-{_hhmm(p.end)}"
                                            for p in holders[:2]))
    return tariff


def _hhmm(second: int) -> str:
    return f"{second // 3600:02d}:{second % 3600 // 60:02d}"


def priced(energy_j: float, start: float, end: float, tariff: Tariff,
           tz: tzinfo | None = None) -> float:
    """The cost of `energy_j` spent evenly from `start` to `end` (epoch seconds), each part
    at the price of the tariff period it fell in (local time of `tz`, default the
    machine's zone)."""
    if end <= start:
        return cost(kwh(energy_j), tariff.price_at(_local(start, tz)[1]))
    rate = energy_j / (end - start)  # watts
    total = 0.0
    t = start
    marks = tariff.boundaries()
    while t < end:
        local, sod = _local(t, tz)
        nxt_sod = next((b for b in marks if b > sod), DAY)
        midnight = local.replace(hour=0, minute=0, second=0, microsecond=0)
        # Through timestamps, so a daylight-saving change inside the step is honoured.
        step_end = min(end, (midnight + timedelta(seconds=nxt_sod)).timestamp())
        if step_end <= t:  # a boundary that the clock skipped (DST): move on a second
            step_end = min(end, t + 1)
        total += cost(kwh(rate * (step_end - t)), tariff.price_at(sod))
        t = step_end
    return total


def price_at(tariff: Tariff, t: float, tz: tzinfo | None = None) -> float:
    """The tariff's price per kWh at the moment `t` (epoch seconds)."""
    return tariff.price_at(_local(t, tz)[1])


def _local(t: float, tz: tzinfo | None) -> tuple[datetime, float]:
    """The local time at `t` and its second of the day."""
    local = datetime.fromtimestamp(t, tz) if tz else datetime.fromtimestamp(t).astimezone()
    return local, local.hour * 3600 + local.minute * 60 + local.second + local.microsecond / 1e6


# Power states of a slave's machine: asleep ones draw sleep_watts, awake ones watts_idle
# (their tasks' energy above that is in the usage table); in the others (offline,
# unreachable, pending, ...) nobody knows whether the machine is on, so they count as
# neither.
ASLEEP = frozenset({"asleep", "down"})
AWAKE = frozenset({"waking", "testing", "online", "idle", "busy", "draining",
                   "quarantined"})


@dataclass
class DayEnergy:
    awake_hours: float = 0.0
    asleep_hours: float = 0.0
    idle_kwh: float = 0.0  # awake without a task (or between tasks), at watts_idle
    asleep_kwh: float = 0.0
    busy_kwh: float = 0.0  # the day's attempts (usage)

    def as_json(self, day: str) -> dict[str, float | str]:
        return {"day": day, "awake_hours": self.awake_hours,
                "asleep_hours": self.asleep_hours, "kwh_awake": self.idle_kwh + self.busy_kwh,
                "kwh_idle": self.idle_kwh, "kwh_busy": self.busy_kwh,
                "kwh_asleep": self.asleep_kwh}


def day_label(t: float, tz: tzinfo | None = None) -> str:
    return _local(t, tz)[0].date().isoformat()


def energy_by_day(spans: list[tuple[str, str, float, float]],
                  watts_idle: dict[str, float], sleep_watts: dict[str, float],
                  tz: tzinfo | None = None) -> dict[str, DayEnergy]:
    """Awake and asleep hours and kWh per local day, from each slave's state spans."""
    days: dict[str, DayEnergy] = {}
    for slave, state, start, end in spans:
        asleep = state in ASLEEP
        if not asleep and state not in AWAKE:
            continue
        t = start
        while t < end:
            local = _local(t, tz)[0]
            midnight = local.replace(hour=0, minute=0, second=0, microsecond=0)
            step_end = min(end, (midnight + timedelta(days=1)).timestamp())
            if step_end <= t:
                step_end = min(end, t + 3600)
            d = days.setdefault(local.date().isoformat(), DayEnergy())
            seconds = step_end - t
            if asleep:
                d.asleep_hours += seconds / 3600
                d.asleep_kwh += kwh(joules(sleep_watts.get(slave, 0.0), seconds))
            else:
                d.awake_hours += seconds / 3600
                if state != "busy":
                    d.idle_kwh += kwh(joules(watts_idle.get(slave, 0.0), seconds))
            t = step_end
    return days
