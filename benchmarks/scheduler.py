# SPDX-License-Identifier: MIT
"""Scheduler throughput: 1,000 simulated slaves, 100,000 tasks over 100 jobs of mixed
priorities. Slaves complete their tasks at once, through the real scheduler and store code
(SQLite on disk, synchronous=FULL), without processes. Prints decisions/s, commits/s, peak
RSS, the cost at 1k, 10k and 100k queued tasks, and the old query-per-decision path (the
SQL the scheduler ran before its in-memory index) on the same store, as a ratio.

    PYTHONPATH=src:. /usr/bin/python3 benchmarks/scheduler.py [--slaves N] [--tasks N]
"""

import argparse
import asyncio
import random
import resource
import sqlite3
import tempfile
import time
from pathlib import Path

from tests.fakes import InstantPlace, NoResults

from afarm.master.scheduling.index import SlaveView
from afarm.master.scheduling.scheduler import Scheduler
from afarm.model.job import InputFile, JobSpec, TaskSpec
from afarm.model.policy import FailurePolicy
from afarm.store.db import Store

# What Store.next_task asked SQLite for every decision before the index (landed 0.1.0).
OLD_NEXT_TASK = (
    "SELECT t.id FROM tasks t JOIN jobs j ON j.id = t.job_id"
    " WHERE t.status IN ('queued','soft-failed') AND t.runs_on = ?"
    " AND j.status IN ('queued', 'active')"
    " AND NOT EXISTS (SELECT 1 FROM task_deps d JOIN tasks u ON u.id = d.dep_id"
    "   WHERE d.task_id = t.id AND u.status != 'completed')"
    " AND NOT EXISTS (SELECT 1 FROM blocklist b WHERE b.job_id = t.job_id AND b.slave = ?)"
    " AND NOT EXISTS (SELECT 1 FROM task_failures f WHERE f.task_id = t.id AND f.slave = ?)"
    " ORDER BY j.priority DESC, j.id, t.idx LIMIT 1")


def fill(store: Store, jobs: int, tasks: int, seed: int = 1) -> None:
    rng = random.Random(seed)
    per_job = tasks // jobs
    for j in range(jobs):
        spec = JobSpec(name=f"job{j}", application="app", params={},
                       files=[InputFile("a.blend", "ab" * 32, 10)],
                       priority=rng.choice([10, 50, 50, 50, 90]))
        store.add_job(spec, [TaskSpec(kind="render", label=f"frame {i}", application="app",
                                      params={"frames": [i]}, outputs=[], frames=1)
                             for i in range(1, per_job + 1)])


def scheduler_for(store: Store, slaves: int) -> Scheduler:
    sched = Scheduler(store, NoResults(), FailurePolicy(), lambda t, j: 3600)
    for i in range(slaves):
        s = InstantPlace(f"s{i:04d}")
        sched.places[s.name] = s  # type: ignore[assignment]
    sched.load()
    return sched


async def drain(sched: Scheduler, total: int) -> float:
    started = time.perf_counter()
    sched.start()
    while sched.decisions < total:
        await asyncio.sleep(0.01)
    # Let the last outcomes be applied, so every task is completed in the store.
    while sched._outcomes or any(p.running for p in sched.places.values()):
        await asyncio.sleep(0.01)
    sched.wake()
    await asyncio.sleep(0.05)
    elapsed = time.perf_counter() - started
    await sched.stop()
    return elapsed


def full_run(base: Path, slaves: int, tasks: int) -> None:
    store = Store(base / "full.db")
    t0 = time.perf_counter()
    fill(store, 100, tasks)
    print(f"queued {tasks} tasks in 100 jobs in {time.perf_counter() - t0:.1f} s")
    sched = scheduler_for(store, slaves)
    commits = store.commits
    elapsed = asyncio.run(drain(sched, tasks))
    done = store.db.execute("SELECT COUNT(*) FROM tasks WHERE status='completed'").fetchone()[0]
    assert done == tasks, f"only {done} of {tasks} tasks completed"
    n = sched.decisions
    print(f"full run: {n} dispatch+complete cycles by {slaves} slaves in {elapsed:.2f} s:"
          f" {n / elapsed:,.0f} decisions/s, {(store.commits - commits) / elapsed:,.0f}"
          " SQLite commits/s")
    store.close()


def cost_at(base: Path, queued: int, slaves: int, decisions: int) -> tuple[float, float]:
    """Seconds per decision with `queued` tasks waiting: the index, and the old query."""
    store = Store(base / f"q{queued}.db")
    fill(store, max(1, min(100, queued // 100)), queued)
    sched = scheduler_for(store, slaves)
    views = [SlaveView(f"s{i:04d}", frozenset(), None) for i in range(slaves)]
    t0 = time.perf_counter()
    # Both paths batch their writes into one transaction, as the scheduler does, so the
    # figures are the cost of deciding, not of fsync.
    with store.transaction():
        _decide_with_index(store, sched, views, decisions)
    new = (time.perf_counter() - t0) / decisions
    db: sqlite3.Connection = store.db
    old_n = max(20, decisions // 50)
    t0 = time.perf_counter()
    with store.transaction():
        for i in range(old_n):
            name = views[i % len(views)].name
            row = db.execute(OLD_NEXT_TASK, ("slave", name, name)).fetchone()
            task = store.task(row[0])
            assert task is not None
            attempt = store.start_task(task.id, name)
            assert attempt is not None
            store.complete_task(task, attempt)
    old = (time.perf_counter() - t0) / old_n
    store.close()
    return new, old


def _decide_with_index(store: Store, sched: Scheduler, views: list[SlaveView],
                       decisions: int) -> None:
    slaves = len(views)
    for i in range(decisions):
        cand = sched.index.take("slave", views[i % slaves])
        assert cand is not None
        attempt = store.start_task(cand.task_id, views[i % slaves].name)
        task = store.task(cand.task_id)
        assert task is not None and attempt is not None
        store.complete_task(task, attempt)
        sched.index.completed(task.id)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--slaves", type=int, default=1000)
    p.add_argument("--tasks", type=int, default=100_000)
    a = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        full_run(base, a.slaves, a.tasks)
        print("cost per dispatch+complete cycle by queue length (writes batched in one"
              " transaction):")
        print(f"{'queued':>8} {'index':>10} {'old query':>10} {'ratio':>7}")
        for queued in (1_000, 10_000, 100_000):
            if queued > a.tasks:
                break
            new, old = cost_at(base, queued, a.slaves, min(2000, queued // 2))
            print(f"{queued:>8,} {new * 1e3:>8.3f}ms {old * 1e3:>8.3f}ms {old / new:>6.1f}x"
                  f"   ({1 / new:,.0f} vs {1 / old:,.0f} decisions/s)")
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS {rss:.0f} MiB")


if __name__ == "__main__":
    main()
