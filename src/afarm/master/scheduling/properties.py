# SPDX-License-Identifier: MIT
"""What the master knows of each slave as numbers, for the ranking matrix.

Static values come from the slave definitions (watts, price, a benchmark speed, and any
key under [[[properties]]]); the rest is measured here as attempts end (speed as an
exponential moving average of seconds per frame, reliability over the last attempts) or
read from the slave's link when the matrix is built (cores and memory from its hello, load,
the inputs it caches). `version` moves when a value changes enough to reorder slaves, so
the scheduler ranks again only then.
"""

import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from afarm.master.accounting import Tariff, price_at
from afarm.master.scheduling.gpu_slots import gpu_count
from afarm.master.scheduling.ranking import Matrix

EMA_WEIGHT = 0.3  # weight of the newest attempt in the speed average
RELIABILITY_WINDOW = 20  # attempts the success ratio looks back over
SIGNIFICANT = 0.05  # a relative change below this does not re-rank
DYNAMIC = frozenset({"load", "locality"})  # change with every task: read at each ranking


@dataclass
class _Measured:
    seconds_per_frame: float | None = None
    outcomes: deque[bool] = field(default_factory=lambda: deque(maxlen=RELIABILITY_WINDOW))


class Properties:
    """Per-slave facts in memory; `rows()` turns them into the ranking matrix's rows."""

    def __init__(self, static: dict[str, dict[str, float]] | None = None, *,
                 price: float = 0.0, tariff: Tariff | None = None,
                 watts_busy: float = 0.0, watts_idle: float = 0.0,
                 clock: Callable[[], float] = time.time) -> None:
        """`static`: each slave's own values; the rest are the site's ([energy]), used
        where a slave has none (0: unknown)."""
        self.static = {n: dict(v) for n, v in (static or {}).items()}
        self.price = price
        self.tariff = tariff or Tariff((), price)
        self.site_watts = {k: v for k, v in (("watts_busy", watts_busy),
                                             ("watts_idle", watts_idle)) if v}
        self.clock = clock
        self.measured: dict[str, _Measured] = {}
        self.benchmarks: dict[str, float] = {}  # slave -> frames/s of afarm's scene
        self.version = 0
        self._tariff_price = self.site_price()

    def site_price(self) -> float:
        """The site's price per kWh now (its tariff's period, else price; 0: unknown)."""
        if self.tariff.periods:
            return price_at(self.tariff, self.clock())
        return self.price

    def record(self, slave: str, seconds: float | None, frames: int, ok: bool) -> None:
        """An attempt ended on `slave`: ok with its seconds, or failed."""
        m = self.measured.setdefault(slave, _Measured())
        before = (m.seconds_per_frame, _ratio(m.outcomes))
        m.outcomes.append(ok)
        if ok and seconds is not None and seconds > 0:
            per = seconds / max(frames, 1)
            m.seconds_per_frame = per if m.seconds_per_frame is None else \
                EMA_WEIGHT * per + (1 - EMA_WEIGHT) * m.seconds_per_frame
        if _moved(before[0], m.seconds_per_frame) or _moved(before[1], _ratio(m.outcomes)):
            self.version += 1

    def benchmarked(self, slave: str, seconds_per_frame: float) -> None:
        """afarm's benchmark scene took this long per frame on `slave` (acceptance): its
        `benchmark` property, and its speed until its own tasks have measured one."""
        if seconds_per_frame > 0 and math.isfinite(seconds_per_frame):
            self.benchmarks[slave] = 1.0 / seconds_per_frame
            self.version += 1

    def check_tariff(self) -> None:
        """A new tariff period changes every slave's price: re-rank."""
        if self.tariff.periods:
            now = self.site_price()
            if now != self._tariff_price:
                self._tariff_price = now
                self.version += 1

    def row(self, name: str, place: Any = None,
            job_files: frozenset[str] | None = None) -> dict[str, float]:
        """Every property of one slave; `place` is its link (or any object with slots,
        running, info and cached), `job_files` the sha256s of a job's inputs."""
        row = {**self.site_watts, **self.static.get(name, {})}
        bench = self.benchmarks.get(name)
        if bench is not None:
            row["benchmark"] = bench
            row.setdefault("speed", bench)
        m = self.measured.get(name)
        if m is not None and m.seconds_per_frame:
            row["speed"] = 1.0 / m.seconds_per_frame
        if m is not None and m.outcomes:
            row["reliability"] = _ratio(m.outcomes) or 0.0
        else:
            row.setdefault("reliability", 1.0)  # nothing failed yet
        if self._tariff_price:
            row.setdefault("price", self._tariff_price)
        if place is not None:
            slots = int(getattr(place, "slots", 1) or 1)
            row["slots"] = float(slots)
            row["load"] = len(getattr(place, "running", ())) / slots
            info = getattr(place, "info", None) or {}
            for key, prop in (("cpus", "cores"), ("memory", "memory"), ("gpus", "gpus")):
                v = info.get(key)
                if isinstance(v, list):
                    v = len(v)
                # what a slave says of itself: a number, finite (JSON allows Infinity)
                if isinstance(v, int | float) and not isinstance(v, bool) \
                        and math.isfinite(v) and v >= 0:
                    row.setdefault(prop, float(v))
            gpus = gpu_count(place)  # what its acceptance report found
            if gpus:
                row.setdefault("gpus", float(gpus))
            if job_files is not None:
                cached: set[str] = getattr(place, "cached", set())
                row["locality"] = 1.0 if job_files and job_files <= cached else 0.0
        speed, watts = row.get("speed"), row.get("watts_busy")
        if speed and watts is not None:
            row["energy_per_frame"] = watts / speed / 3600.0  # Wh
            if "price" in row:
                row["cost_per_frame"] = row["energy_per_frame"] / 1000.0 * row["price"]
        return row

    def matrix(self, places: dict[str, Any],
               job_files: frozenset[str] | None = None) -> Matrix:
        return Matrix.of({n: self.row(n, p, job_files) for n, p in places.items()})


def _ratio(outcomes: deque[bool]) -> float | None:
    return sum(outcomes) / len(outcomes) if outcomes else None


def _moved(before: float | None, after: float | None) -> bool:
    if before is None or after is None:
        return before is not after
    return abs(after - before) > SIGNIFICANT * max(abs(before), 1e-12)
