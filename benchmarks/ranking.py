# SPDX-License-Identifier: MIT
"""Ranking: its cost, and what each policy does to a heterogeneous farm against FIFO.

1. Cost: ranking 1,000 slaves x 8 properties with each policy kind, in ms (median of 7).

2. A simulated farm of 200 slaves from three hardware generations (seeded, normal
   distributions, mean +- standard deviation; price per kWh by site):

   | generation | slaves | speed (frames/s) | watts busy | watts idle |
   |------------|--------|------------------|------------|------------|
   | 2016       | 80     | 0.10 +- 0.01     | 250 +- 20  | 80 +- 8    |
   | 2019       | 70     | 0.20 +- 0.02     | 200 +- 15  | 55 +- 5    |
   | 2023       | 50     | 0.40 +- 0.04     | 180 +- 15  | 35 +- 4    |

   Prices: each slave sits at one of three sites, 0.22, 0.30 or 0.38 per kWh. One job of
   10,000 frames in chunks of 10 (1,000 tasks); a task's time is its frames / the slave's
   speed x a lognormal noise (sigma 0.1). The ranking knows each slave's mean speed (what
   the benchmark and the moving average give it).

   Dispatch mirrors Scheduler._decide with the real ranking code (ranking.rank,
   tail_defers, cheapest-within-deadline's held-back slaves): whenever slaves are free,
   they are visited best first and each takes the next task. FIFO is the scheduler before
   ranking: free slaves by name (names are shuffled across generations), no tail avoidance.
   Energy: busy watts x busy seconds, plus idle watts for the rest of the makespan on every
   slave that took a task; a slave that never took one stays asleep (0 W, as the power
   policy of issue 11 leaves it). Cost: each slave's energy at its site's price.

    PYTHONPATH=src:. /usr/bin/python3 benchmarks/ranking.py [--seed N]
"""

import argparse
import heapq
import math
import random
import statistics
import time
from dataclasses import dataclass

import numpy as np

from afarm.master.scheduling.ranking import (
    PRESETS,
    Matrix,
    Policy,
    make_policy,
    rank,
    tail_defers,
)

GENERATIONS = (  # name, slaves, (speed mean, sd), (busy W), (idle W)
    ("2016", 80, (0.10, 0.01), (250, 20), (80, 8)),
    ("2019", 70, (0.20, 0.02), (200, 15), (55, 5)),
    ("2023", 50, (0.40, 0.04), (180, 15), (35, 4)),
)
PRICES = (0.22, 0.30, 0.38)
FRAMES, CHUNK = 10_000, 10


@dataclass
class Slave:
    name: str
    generation: str
    speed: float
    watts_busy: float
    watts_idle: float
    price: float


def make_farm(rng: random.Random) -> list[Slave]:
    slaves = []
    for gen, n, speed, busy, idle in GENERATIONS:
        for _ in range(n):
            slaves.append(Slave("", gen, max(0.01, rng.gauss(*speed)),
                                max(10.0, rng.gauss(*busy)), max(5.0, rng.gauss(*idle)),
                                rng.choice(PRICES)))
    ids = list(range(len(slaves)))
    rng.shuffle(ids)
    for s, i in zip(slaves, ids, strict=True):
        s.name = f"node{i:03d}"
    return slaves


def matrix(slaves: list[Slave]) -> Matrix:
    rows = {}
    for s in slaves:
        energy = s.watts_busy / s.speed / 3600.0
        rows[s.name] = {"speed": s.speed, "watts_busy": s.watts_busy,
                        "watts_idle": s.watts_idle, "price": s.price, "slots": 1.0,
                        "reliability": 1.0, "energy_per_frame": energy,
                        "cost_per_frame": energy / 1000.0 * s.price}
    return Matrix.of(rows)


@dataclass
class Result:
    makespan: float
    kwh: float
    cost: float
    used: int


def simulate(slaves: list[Slave], policy: Policy | None, seed: int,
             deadline: float | None = None) -> Result:
    """Run the job to the end; `policy` None is FIFO."""
    rng = random.Random(seed)
    noise = [math.exp(rng.gauss(0, 0.1)) for _ in range(FRAMES // CHUNK)]
    by_name = {s.name: s for s in slaves}
    m = matrix(slaves)
    if policy is None:
        order = sorted(by_name)
    else:
        order = rank(m, policy).names
    speed = {s.name: s.speed for s in slaves}
    tasks = FRAMES // CHUNK
    next_task = 0
    now = 0.0
    free = set(by_name)
    busy_s: dict[str, float] = {n: 0.0 for n in by_name}
    used: set[str] = set()
    events: list[tuple[float, str]] = []
    held: set[str] = set()
    held_at = -1.0
    while next_task < tasks or events:
        if policy is not None and deadline is not None and now - held_at >= 1.0:
            r = rank(m, policy, deadline=deadline - now,
                     remaining=(tasks - next_task) * CHUNK, per_task=CHUNK)
            held = {m.slaves[i] for i in r.held}
            held_at = now
        busy_speeds = np.sort(np.array([speed[n] for n in by_name if n not in free]))
        for name in order:
            if next_task >= tasks:
                break
            if name not in free or name in held:
                continue
            if policy is not None and tail_defers(speed[name], tasks - next_task,
                                                  busy_speeds):
                continue
            seconds = CHUNK / speed[name] * noise[next_task]
            next_task += 1
            free.discard(name)
            used.add(name)
            busy_s[name] += seconds
            heapq.heappush(events, (now + seconds, name))
        if not events:
            break  # everything left is held back (cannot happen past a deadline)
        now, name = heapq.heappop(events)
        free.add(name)
        while events and events[0][0] == now:
            free.add(heapq.heappop(events)[1])
    makespan = now
    joules = cost = 0.0
    for name in used:
        s = by_name[name]
        j = s.watts_busy * busy_s[name] + s.watts_idle * (makespan - busy_s[name])
        joules += j
        cost += j / 3.6e6 * s.price
    return Result(makespan, joules / 3.6e6, cost, len(used))


def cost_of_ranking(rng: np.random.Generator) -> None:
    cols = ["speed", "watts_busy", "watts_idle", "price", "cost_per_frame", "memory",
            "reliability", "load"]
    values = rng.lognormal(0, 1, size=(1000, len(cols)))
    m = Matrix([f"s{i:04d}" for i in range(1000)], cols, values)
    weights = {c: 1.0 for c in cols}
    policies = {
        "lexicographic (8 keys, tolerance 0.05)": make_policy(
            "l", "lexicographic", [f"{c}~0.05" for c in cols]),
        "weighted (8 keys)": make_policy("w", "weighted", cols, weights),
        "pareto (8 keys)": make_policy("p", "pareto", cols, weights),
        "pareto (3 keys)": make_policy("p3", "pareto", cols[:3], weights),
        "cheapest-within-deadline": PRESETS["cheapest-within-deadline"],
    }
    print("ranking 1,000 slaves x 8 properties (median of 7):")
    for label, p in policies.items():
        runs = []
        for _ in range(7):
            t0 = time.perf_counter()
            rank(m, p, deadline=600.0, remaining=5000)
            runs.append(time.perf_counter() - t0)
        print(f"  {label:<40} {statistics.median(runs) * 1e3:7.1f} ms")
    t0 = time.perf_counter()
    Matrix.of({f"s{i:04d}": dict(zip(cols, map(float, values[i]), strict=True))
               for i in range(1000)})
    label = "building the matrix from 1,000 property dicts"
    print(f"  {label:<40} {(time.perf_counter() - t0) * 1e3:7.1f} ms")


def compare(seed: int, show: bool) -> tuple[float, float, float]:
    """One farm: every policy against FIFO; returns fastest's makespan change and the
    energy policy's kWh and makespan changes (fractions)."""
    slaves = make_farm(random.Random(seed))
    fifo = simulate(slaves, None, seed)
    deadline = fifo.makespan  # "by when FIFO would have finished it"
    runs: list[tuple[str, Result]] = [("FIFO (by name, before ranking)", fifo)]
    for name in ("fastest", "greenest", "cheapest", "lexicographic", "weighted", "pareto"):
        runs.append((name, simulate(slaves, PRESETS[name], seed)))
    energy = simulate(slaves, PRESETS["cheapest-within-deadline"], seed, deadline)
    runs.append((f"cheapest-within-deadline ({deadline:.0f} s)", energy))
    runs.append((f"cheapest-within-deadline ({deadline * 0.8:.0f} s)",
                 simulate(slaves, PRESETS["cheapest-within-deadline"], seed, deadline * 0.8)))
    if show:
        total = sum(s.speed for s in slaves)
        print(f"\nfarm (seed {seed}): {len(slaves)} slaves, {total:.1f} frames/s together;"
              f" {FRAMES:,} frames in chunks of {CHUNK}; the ideal makespan (every slave"
              f" busy to the end) is {FRAMES / total:.0f} s")
        print(f"{'policy':<38} {'makespan':>9} {'vs FIFO':>8} {'kWh':>7} {'vs FIFO':>8}"
              f" {'cost':>7} {'vs FIFO':>8} {'slaves used':>11}")
        for label, r in runs:
            print(f"{label:<38} {r.makespan:>8.0f}s {_pct(r.makespan, fifo.makespan):>8}"
                  f" {r.kwh:>7.2f} {_pct(r.kwh, fifo.kwh):>8} {r.cost:>7.3f}"
                  f" {_pct(r.cost, fifo.cost):>8} {r.used:>11}")
    fastest = dict(runs)["fastest"]
    return (fastest.makespan / fifo.makespan - 1, energy.kwh / fifo.kwh - 1,
            energy.makespan / fifo.makespan - 1)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--seed", type=int, default=1, help="first farm's seed")
    p.add_argument("--farms", type=int, default=5, help="farms (seeds) the goals average")
    a = p.parse_args()
    cost_of_ranking(np.random.default_rng(a.seed))
    results = [compare(seed, seed == a.seed) for seed in range(a.seed, a.seed + a.farms)]
    print(f"\nover {a.farms} farms (seeds {a.seed}..{a.seed + a.farms - 1}), against FIFO:")
    print(f"{'seed':>6} {'fastest makespan':>17} {'energy policy kWh':>18}"
          f" {'energy policy makespan':>23}")
    for seed, (fm, ek, em) in zip(range(a.seed, a.seed + a.farms), results, strict=True):
        print(f"{seed:>6} {fm * 100:>+16.1f}% {ek * 100:>+17.1f}% {em * 100:>+22.1f}%")
    fm, ek, em = (statistics.mean(col) for col in zip(*results, strict=True))
    print(f"{'mean':>6} {fm * 100:>+16.1f}% {ek * 100:>+17.1f}% {em * 100:>+22.1f}%")
    print(f"goal: the speed policy (fastest) cuts makespan >= 15 %: mean {fm * 100:+.1f}%"
          f" -> {'met' if fm <= -0.15 else 'NOT met'}")
    print("goal: an energy policy (cheapest-within-deadline, deadline = FIFO's makespan)"
          f" saves >= 20 % kWh at <= +10 % makespan: mean {ek * 100:+.1f}% kWh,"
          f" {em * 100:+.1f}% makespan"
          f" -> {'met' if ek <= -0.20 and em <= 0.10 else 'NOT met'}")


def _pct(x: float, base: float) -> str:
    return f"{(x / base - 1) * 100:+.1f}%"


if __name__ == "__main__":
    main()
