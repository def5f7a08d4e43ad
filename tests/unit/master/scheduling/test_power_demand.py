# SPDX-License-Identifier: MIT
"""What the scheduler tells the power manager the queue needs: per job, its tags,
application, pool version, memory and GPUs, most urgent first."""

from collections.abc import Iterator
from pathlib import Path

import pytest

from afarm.master.scheduling.properties import Properties
from afarm.master.scheduling.scheduler import Scheduler
from afarm.master.slaves.power import Demand, PowerSettings, PowerSlave, decide
from afarm.model.job import InputFile, JobSpec, TaskSpec
from afarm.model.policy import FailurePolicy
from afarm.store.db import Store
from tests.fakes import NoResults

GIB = float(1 << 30)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = Store(tmp_path / "afarm.db")
    yield s
    s.close()


def add(store: Store, sched: Scheduler, frames: int, priority: int = 50,
        tags: frozenset[str] = frozenset(), **scheduling: object) -> int:
    spec = JobSpec(name="j", application="app", params={},
                   files=[InputFile("a.blend", "ab" * 32, 10)], priority=priority,
                   tags=tags, scheduling=dict(scheduling))
    job = store.add_job(spec, [TaskSpec(kind="render", label=f"frame {n}", application="app",
                                        params={"frames": [n]}, outputs=[], frames=1)
                               for n in range(1, frames + 1)])
    sched.reload_job(job)
    return job


def scheduler(store: Store) -> Scheduler:
    sched = Scheduler(store, NoResults(), FailurePolicy(), lambda t, j: 60)
    sched.configure_ranking(Properties({}), "fastest")
    sched.version_of = lambda job_id: "4.2" if job_id == 1 else ""
    sched.load()
    return sched


def test_the_demand_carries_each_jobs_needs_most_urgent_first(store: Store) -> None:
    sched = scheduler(store)
    add(store, sched, 3)  # job 1: pool version 4.2
    add(store, sched, 2, priority=90, tags=frozenset({"gpu"}), min_memory_mib=16 * 1024,
        gpus=2)
    sched.version_arches = lambda app, version: frozenset({"amd64"})
    assert sched.power_demand() == [
        Demand(frozenset({"gpu"}), 2, "app", "", 16 * GIB, 2),
        Demand(frozenset(), 3, "app", "4.2", 0.0, 0, frozenset({"amd64"}))]


def test_a_gpu_rendered_job_needs_a_slave_with_a_gpu(store: Store) -> None:
    sched = scheduler(store)
    add(store, sched, 1, device="GPU")
    assert [d.gpus for d in sched.power_demand()] == [1]


def test_with_the_policy_only_a_slave_able_to_take_the_queued_job_is_woken(
        store: Store) -> None:
    sched = scheduler(store)
    add(store, sched, 1, min_memory_mib=16 * 1024)
    slaves = [PowerSlave("small", "asleep", 0, wakeable=True, memory=8 * GIB, rank=0),
              PowerSlave("big", "asleep", 0, wakeable=True, memory=32 * GIB, rank=1)]
    acts = decide(slaves, sched.power_demand(), PowerSettings(enabled=True), 10_000)
    assert [(a.kind, a.slave) for a in acts] == [("wake", "big")]
