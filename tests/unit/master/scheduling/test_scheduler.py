# SPDX-License-Identifier: MIT
"""The scheduler's decisions through its real index, store and failure policy."""

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from afarm.master.scheduling.index import SlaveView
from afarm.master.scheduling.scheduler import Scheduler
from afarm.master.slaves.link import Outcome
from afarm.model.job import InputFile, JobSpec, Task, TaskSpec
from afarm.model.policy import FailurePolicy
from afarm.model.status import JobStatus, TaskStatus
from afarm.store.db import Store
from tests.fakes import InstantPlace, NoResults


class Harness:
    """Drives the scheduler's pieces one decision at a time."""

    def __init__(self, store: Store, slaves: list[InstantPlace]) -> None:
        self.store = store
        self.sched = Scheduler(store, NoResults(), FailurePolicy(), lambda t, j: 60)
        for p in slaves:
            self.sched.places[p.name] = p  # type: ignore[assignment]
        self.sched.load()

    def add(self, spec: JobSpec, plan: list[TaskSpec]) -> int:
        job = self.store.add_job(spec, plan)
        self.sched.reload_job(job)
        return job

    def next(self, slave: str | None, tags: frozenset[str] = frozenset()) -> Task | None:
        view = SlaveView(slave, tags, None) if slave else None
        cand = self.sched.index.take("slave" if slave else "master", view)
        return self.store.task(cand.task_id) if cand else None

    def start(self, task: Task, slave: str) -> int:
        attempt = self.store.start_task(task.id, slave)
        assert attempt is not None
        return attempt

    def complete(self, task: Task, attempt: int) -> None:
        self.sched._apply(InstantPlace(task.slave or "s"), task, attempt,  # type: ignore
                          Outcome("done"))

    def fail(self, task: Task, attempt: int, slave: str) -> TaskStatus:
        self.sched.fail(task, attempt, slave, "boom")
        t = self.store.task(task.id)
        assert t is not None
        return t.status


def spec(name: str = "job", priority: int = 50, tags: frozenset[str] = frozenset()) -> JobSpec:
    return JobSpec(name=name, application="app", params={},
                   files=[InputFile("a.blend", "ab" * 32, 10)], priority=priority, tags=tags)


def render(n: int, **kw: Any) -> TaskSpec:
    return TaskSpec(kind="render", label=f"frame {n}", application="app",
                    params={"frames": [n]}, outputs=[], frames=1, **kw)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = Store(tmp_path / "afarm.db")
    yield s
    s.close()


def farm(store: Store, n: int = 4) -> Harness:
    return Harness(store, [InstantPlace(f"s{i}") for i in range(1, n + 1)])


def test_higher_priority_jobs_run_first_then_older_jobs(store: Store) -> None:
    h = farm(store)
    low = h.add(spec("low", 10), [render(1)])
    old = h.add(spec("old", 90), [render(1)])
    new = h.add(spec("new", 90), [render(1)])
    assert [getattr(h.next("s1"), "job_id", None) for _ in range(4)] == [old, new, low, None]


def test_dependent_tasks_wait_for_their_inputs(store: Store) -> None:
    h = farm(store)
    job = h.add(spec(), [render(1), TaskSpec(
        kind="encode", label="encode", application="ff", params={}, outputs=[],
        runs_on="master", depends=[0])])
    assert h.next(None) is None
    t = h.next("s1")
    assert t is not None
    h.complete(t, h.start(t, "s1"))
    follow = h.next(None)
    assert follow is not None and follow.kind == "encode"
    assert store.job(job).status == JobStatus.ACTIVE  # type: ignore[union-attr]


def test_a_slave_that_failed_a_task_does_not_get_it_again(store: Store) -> None:
    h = farm(store)
    h.add(spec(), [render(1)])
    t = h.next("s1")
    assert t is not None
    assert h.fail(t, h.start(t, "s1"), "s1") == TaskStatus.SOFT_FAILED
    assert h.next("s1") is None
    assert h.next("s2") is not None


def test_a_task_fails_for_good_after_three_different_slaves(store: Store) -> None:
    h = farm(store)
    job = h.add(spec(), [render(1), render(2)])
    results = []
    for s in ("s1", "s2", "s3"):
        t = h.next(s)
        assert t is not None and t.idx == 0
        results.append(h.fail(t, h.start(t, s), s))
    assert results == [TaskStatus.SOFT_FAILED, TaskStatus.SOFT_FAILED, TaskStatus.FAILED]
    assert store.job(job).status == JobStatus.FAILED  # type: ignore[union-attr]
    # the rest of the failed job is canceled, not left hanging in the queue
    assert store.tasks(job)[1].status == TaskStatus.CANCELED
    assert h.next("s4") is None


def test_a_task_fails_when_every_slave_of_the_farm_failed_it(store: Store) -> None:
    h = farm(store, 2)
    h.add(spec(), [render(1)])
    for s, expected in (("s1", TaskStatus.SOFT_FAILED), ("s2", TaskStatus.FAILED)):
        t = h.next(s)
        assert t is not None
        assert h.fail(t, h.start(t, s), s) == expected


def test_a_slave_is_blocklisted_for_a_job_after_three_failures(store: Store) -> None:
    h = farm(store, 10)
    job = h.add(spec(), [render(n) for n in range(1, 6)])
    for _ in range(3):
        t = h.next("s1")
        assert t is not None
        h.fail(t, h.start(t, "s1"), "s1")
    assert store.blocklist(job) == [(job, "s1")]
    assert h.next("s1") is None
    assert h.next("s2") is not None


def test_a_job_requiring_tags_goes_only_to_slaves_with_all_of_them(store: Store) -> None:
    h = farm(store)
    h.add(spec(tags=frozenset({"gpu", "big"})), [render(1)])
    assert h.next("s1", frozenset({"gpu"})) is None
    t = h.next("s2", frozenset({"gpu", "big", "x"}))
    assert t is not None


def test_the_index_rebuilt_after_a_restart_gives_the_same_order(tmp_path: Path) -> None:
    s = Store(tmp_path / "db")
    h = farm(s)
    a = h.add(spec("a", 10), [render(1), render(2)])
    b = h.add(spec("b", 60), [render(1)])
    s.close()
    s2 = Store(tmp_path / "db")
    h2 = farm(s2)
    assert [getattr(h2.next("s1"), "job_id", None) for _ in range(4)] == [b, a, a, None]
    s2.close()


def test_a_pass_batches_its_decisions_into_one_commit(store: Store) -> None:
    h = farm(store, 50)
    h.add(spec(), [render(n) for n in range(1, 101)])
    before = store.commits

    async def one_pass() -> None:
        h.sched.schedule_pass()
        await asyncio.sleep(0)

    asyncio.run(one_pass())
    assert store.commits == before + 1
    assert store.job_progress(1)["active"] == 50
