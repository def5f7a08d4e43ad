#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""A simulated week on a 50-slave farm: kWh and mean job latency, always-on against power
saving with a floor of 0 and of 2 awake slaves. The real policy (master/slaves/power.py
decide()) runs every 30 simulated seconds on a simulated clock; the rest is a simple
discrete-time farm (10 s steps).

The trace (seeded, --seed): jobs arrive as a Poisson process whose rate follows the week:
weekdays 09:00-18:00 3 jobs/h, 18:00-23:00 1/h, nights 0.3/h, weekends 0.5/h. A job has
20 to 200 tasks (uniform); a task takes 60 s x lognormal(0, 0.5) on a slave of speed 1.
Slaves: speed 0.5 to 2 (uniform), idle 50 to 90 W, busy 180 to 320 W, asleep 2 W, waking
takes 20 to 50 s of idle power (Wake-on-LAN, boot, SSH, acceptance test), and 2% of
wakes fail (the NIC misses the packet): resume_timeout marks those down. Power saving:
idle_suspend 15 min, resume_timeout 60 s, wake_rate 20/min, min_sleep 10 min.
"""

import argparse
import math
import random
import sys
import time
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src")]

from afarm.master.slaves.power import (  # noqa: E402
    Demand,
    PowerSettings,
    PowerSlave,
    decide,
)

WEEK = 7 * 86400
STEP = 10.0
POLICY_EVERY = 30.0
START = datetime(2026, 11, 30, tzinfo=UTC).timestamp()  # a Monday, 00:00 UTC


def rate_per_hour(t: float) -> float:
    d = datetime.fromtimestamp(t, UTC)
    if d.weekday() >= 5:
        return 0.5
    if 9 <= d.hour < 18:
        return 3.0
    if 18 <= d.hour < 23:
        return 1.0
    return 0.3


@dataclass
class Job:
    arrived: float
    tasks: list[float]  # work of each task, in seconds at speed 1
    left: int = 0
    done_at: float = 0.0


def trace(seed: int) -> list[Job]:
    rng = random.Random(seed)
    jobs = []
    t = START
    while t < START + WEEK:
        # Thinning: candidate arrivals at the highest rate, kept in proportion.
        t += rng.expovariate(3.0 / 3600)
        if t < START + WEEK and rng.random() < rate_per_hour(t) / 3.0:
            n = rng.randint(20, 200)
            work = [60.0 * rng.lognormvariate(0, 0.5) for _ in range(n)]
            jobs.append(Job(t, work, n))
    return jobs


@dataclass
class Slave:
    name: str
    speed: float
    idle_w: float
    busy_w: float
    boot: float
    rank: int = 0
    state: str = "idle"
    since: float = START
    task_end: float = 0.0
    job: Job | None = None
    ready_at: float = 0.0
    fails: bool = False
    woken_at: float | None = None


@dataclass
class Result:
    kwh: float = 0.0
    kwh_asleep: float = 0.0
    latencies: list[float] = field(default_factory=list)
    wakes: int = 0
    suspends: int = 0
    downs: int = 0


def slaves(seed: int, n: int) -> list[Slave]:
    rng = random.Random(seed + 1)
    out = [Slave(f"s{i:02d}", rng.uniform(0.5, 2.0), rng.uniform(50, 90),
                 rng.uniform(180, 320), rng.uniform(20, 50)) for i in range(n)]
    for rank, s in enumerate(sorted(out, key=lambda s: -s.speed)):  # waking order: speed
        s.rank = rank
    return out


def simulate(jobs: list[Job], farm: list[Slave], settings: PowerSettings | None,
             seed: int) -> Result:
    rng = random.Random(seed + 2)
    res = Result()
    queue: deque[tuple[Job, float]] = deque()
    pending = deque(sorted(jobs, key=lambda j: j.arrived))
    wakes: deque[float] = deque()
    by_name = {s.name: s for s in farm}
    ranked = sorted(farm, key=lambda s: s.rank)
    t = START
    next_policy = START
    while t < START + WEEK or queue or any(s.state == "busy" for s in farm):
        while pending and pending[0].arrived <= t:
            j = pending.popleft()
            queue.extend((j, w) for w in j.tasks)
        for s in farm:  # finished tasks and booted machines
            if s.state == "busy" and s.task_end <= t:
                assert s.job is not None
                s.job.left -= 1
                if not s.job.left:
                    s.job.done_at = s.task_end
                    res.latencies.append(s.task_end - s.job.arrived)
                s.state, s.since, s.job = "idle", s.task_end, None
            elif s.state == "waking" and not s.fails and s.ready_at <= t:
                s.state, s.since = "idle", t
        for s in ranked:  # the best ranked free slave takes the next task
            if not queue:
                break
            if s.state == "idle":
                job, work = queue.popleft()
                s.state, s.since, s.job, s.task_end = "busy", t, job, t + work / s.speed
        if settings is not None and t >= next_policy:
            next_policy = t + POLICY_EVERY
            view = [PowerSlave(s.name, s.state, s.since, slots=1,
                               running=int(s.state == "busy"), wakeable=True, rank=s.rank,
                               woken_at=s.woken_at) for s in farm]
            demand = [Demand(frozenset(), len(queue))] if queue else []
            for a in decide(view, demand, settings, t, list(wakes), UTC):
                s = by_name[a.slave]
                if a.kind == "wake":
                    wakes.append(t)
                    res.wakes += 1
                    s.state, s.since, s.woken_at = "waking", t, t
                    s.ready_at = t + s.boot
                    s.fails = rng.random() < 0.02
                elif a.kind == "resend":
                    s.woken_at = t
                elif a.kind == "suspend":
                    assert s.state != "busy", "the policy suspended a busy slave"
                    res.suspends += 1
                    s.state, s.since = "asleep", t
                elif a.kind == "down":
                    res.downs += 1
                    s.state, s.since, s.fails = "down", t, False
            while wakes and t - wakes[0] > 60:
                wakes.popleft()
        if t < START + WEEK:  # energy over the week itself
            for s in farm:
                watts = {"busy": s.busy_w, "asleep": 2.0, "down": 2.0}.get(s.state, s.idle_w)
                kwh = watts * STEP / 3.6e6
                res.kwh += kwh
                if s.state in ("asleep", "down"):
                    res.kwh_asleep += kwh
        t += STEP
    return res


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seed", type=int, default=11)
    p.add_argument("--slaves", type=int, default=50)
    a = p.parse_args(argv)
    jobs = trace(a.seed)
    tasks = sum(len(j.tasks) for j in jobs)
    print(f"trace: seed {a.seed}, {len(jobs)} jobs, {tasks} tasks in a week;"
          f" {a.slaves} slaves")
    base = dict(enabled=True, idle_suspend=15.0, resume_timeout=60.0, wake_rate=20,
                min_sleep=10.0, retry_down=10.0, resend=15.0)
    scenarios: list[tuple[str, PowerSettings | None]] = [
        ("always on", None),
        ("suspend, floor 0", PowerSettings(**base)),  # type: ignore[arg-type]
        ("suspend, floor 2", PowerSettings(**base,  # type: ignore[arg-type]
                                           keep_awake=(("*", 2),))),
    ]
    rows = []
    for name, settings in scenarios:
        started = time.monotonic()
        r = simulate([Job(j.arrived, j.tasks, len(j.tasks)) for j in jobs],
                     slaves(a.seed, a.slaves), settings, a.seed)
        assert len(r.latencies) == len(jobs), "a job never finished"
        mean = sum(r.latencies) / len(r.latencies)
        rows.append((name, r.kwh, r.kwh_asleep, mean, r.wakes, r.suspends, r.downs,
                     time.monotonic() - started))
    always = rows[0]
    print(f"{'scenario':<18} {'kWh':>8} {'asleep':>7} {'vs on':>6} {'latency s':>10}"
          f" {'vs on':>6} {'wakes':>6} {'suspends':>8} {'down':>5} {'sim s':>6}")
    for name, kwh, asleep, mean, w, su, d, took in rows:
        print(f"{name:<18} {kwh:8.1f} {asleep:7.1f} {kwh / always[1]:6.2f}"
              f" {mean:10.0f} {mean / always[3]:6.2f} {w:6d} {su:8d} {d:5d} {took:6.1f}")
    return 0 if all(math.isfinite(r[1]) for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
