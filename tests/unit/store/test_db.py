# SPDX-License-Identifier: MIT
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from afarm.model.job import InputFile, JobSpec, TaskSpec
from afarm.model.status import JobStatus, TaskStatus
from afarm.store.db import Store
from afarm.store.schema import MIGRATIONS

POLICY = {"slave_failures_per_job": 3, "slaves_per_task": 3}


def spec(name: str = "job", priority: int = 50) -> JobSpec:
    return JobSpec(name=name, application="app", params={"x": 1},
                   files=[InputFile("a.blend", "ab" * 32, 10)], priority=priority)


def render(n: int, **kw: Any) -> TaskSpec:
    return TaskSpec(kind="render", label=f"frame {n}", application="app",
                    params={"frames": [n]}, outputs=[f"out/frame_{n:04d}.png"], frames=1, **kw)


@pytest.fixture
def store(tmp_path: Path) -> Store:
    s = Store(tmp_path / "afarm.db")
    yield s
    s.close()


def test_a_job_and_its_tasks_are_stored_together(store: Store) -> None:
    job_id = store.add_job(spec(), [render(1), render(2)])
    job = store.job(job_id)
    assert job is not None and job.status == JobStatus.QUEUED
    assert job.files == [InputFile("a.blend", "ab" * 32, 10)]
    assert [t.label for t in store.tasks(job_id)] == ["frame 1", "frame 2"]


def test_a_failing_plan_stores_nothing(store: Store) -> None:
    bad = render(2, depends=[5])  # points past the plan: the insert of deps fails
    with pytest.raises(IndexError):
        store.add_job(spec(), [render(1), bad])
    assert store.jobs() == []
    assert store.db.execute("SELECT COUNT(*) FROM tasks").fetchone()[0] == 0


def test_the_schema_version_is_recorded_and_reopening_is_a_no_op(tmp_path: Path) -> None:
    Store(tmp_path / "db").close()
    db = sqlite3.connect(tmp_path / "db")
    assert db.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    Store(tmp_path / "db").close()


def test_higher_priority_jobs_run_first_then_older_jobs(store: Store) -> None:
    low = store.add_job(spec("low", 10), [render(1)])
    high = store.add_job(spec("high", 90), [render(1)])
    first = store.next_task("slave", "s1")
    assert first is not None and first.job_id == high
    store.start_task(first, "s1")
    second = store.next_task("slave", "s1")
    assert second is not None and second.job_id == low


def test_dependent_tasks_wait_for_their_inputs(store: Store) -> None:
    job = store.add_job(spec(), [render(1), TaskSpec(
        kind="encode", label="encode", application="ff", params={}, outputs=["out/x.mp4"],
        runs_on="master", depends=[0])])
    assert store.next_task("master") is None
    t = store.next_task("slave", "s1")
    assert t is not None
    attempt = store.start_task(t, "s1")
    assert store.complete_task(t, attempt)
    follow = store.next_task("master")
    assert follow is not None and follow.kind == "encode"
    assert store.job(job).status == JobStatus.ACTIVE  # type: ignore[union-attr]


def test_a_stale_attempt_cannot_complete_a_task(store: Store) -> None:
    store.add_job(spec(), [render(1)])
    t = store.next_task("slave", "s1")
    assert t is not None
    first = store.start_task(t, "s1")
    assert store.requeue_task(t, first, "s1 vanished")
    t2 = store.next_task("slave", "s2")
    assert t2 is not None
    second = store.start_task(t2, "s2")
    assert not store.complete_task(t, first)
    assert not store.lease_valid(t.id, first)
    assert store.complete_task(t2, second)


def test_a_slave_that_failed_a_task_does_not_get_it_again(store: Store) -> None:
    store.add_job(spec(), [render(1)])
    t = store.next_task("slave", "s1")
    assert t is not None
    a = store.start_task(t, "s1")
    new = store.fail_task(t, a, "s1", "boom", eligible_slaves={"s1", "s2", "s3"}, **POLICY)
    assert new == TaskStatus.SOFT_FAILED
    assert store.next_task("slave", "s1") is None
    assert store.next_task("slave", "s2") is not None


def test_a_task_fails_for_good_after_three_different_slaves(store: Store) -> None:
    job = store.add_job(spec(), [render(1), render(2)])
    slaves = {"s1", "s2", "s3", "s4"}
    results = []
    for s in ("s1", "s2", "s3"):
        t = store.next_task("slave", s)
        assert t is not None and t.idx == 0
        results.append(store.fail_task(t, store.start_task(t, s), s, "err",
                                       eligible_slaves=slaves, **POLICY))
    assert results == [TaskStatus.SOFT_FAILED, TaskStatus.SOFT_FAILED, TaskStatus.FAILED]
    assert store.job(job).status == JobStatus.FAILED  # type: ignore[union-attr]
    # the rest of the failed job is canceled, not left hanging in the queue
    assert [t.status for t in store.tasks(job)][1] == TaskStatus.CANCELED


def test_a_task_fails_when_every_slave_of_the_farm_failed_it(store: Store) -> None:
    store.add_job(spec(), [render(1)])
    for s, expected in (("s1", TaskStatus.SOFT_FAILED), ("s2", TaskStatus.FAILED)):
        t = store.next_task("slave", s)
        assert t is not None
        assert store.fail_task(t, store.start_task(t, s), s, "e", eligible_slaves={"s1", "s2"},
                               **POLICY) == expected


def test_a_slave_is_blocklisted_for_a_job_after_three_failures(store: Store) -> None:
    job = store.add_job(spec(), [render(n) for n in range(1, 6)])
    slaves = {f"s{i}" for i in range(10)}
    for _ in range(3):
        t = store.next_task("slave", "s1")
        assert t is not None
        store.fail_task(t, store.start_task(t, "s1"), "s1", "e", eligible_slaves=slaves,
                        **POLICY)
    assert store.blocklist(job) == [(job, "s1")]
    assert store.next_task("slave", "s1") is None
    assert store.next_task("slave", "s2") is not None


def test_active_tasks_are_requeued_after_a_restart(tmp_path: Path) -> None:
    s = Store(tmp_path / "db")
    s.add_job(spec(), [render(1)])
    t = s.next_task("slave", "s1")
    assert t is not None
    s.start_task(t, "s1")
    s.close()  # as if the master died here
    s2 = Store(tmp_path / "db")
    assert s2.recover_active() == 1
    again = s2.next_task("slave", "s2")
    assert again is not None and again.id == t.id and again.status == TaskStatus.QUEUED


def test_cancel_pause_resume_and_requeue(store: Store) -> None:
    job = store.add_job(spec(), [render(1), render(2)])
    t = store.next_task("slave", "s1")
    assert t is not None
    store.start_task(t, "s1")
    store.pause_job(job)
    assert store.next_task("slave", "s2") is None
    store.resume_job(job)
    assert store.next_task("slave", "s2") is not None
    active = store.cancel_job(job)
    assert [a.id for a in active] == [t.id]
    assert {x.status for x in store.tasks(job)} == {TaskStatus.CANCELED}
    assert store.requeue_job(job) == 2
    assert store.job(job).status == JobStatus.QUEUED  # type: ignore[union-attr]


def test_events_are_logged_and_pushed_to_the_hook(tmp_path: Path) -> None:
    seen: list[dict[str, Any]] = []
    s = Store(tmp_path / "db", on_event=seen.append)
    job = s.add_job(spec(), [render(1)])
    t = s.next_task("slave", "s1")
    assert t is not None
    s.complete_task(t, s.start_task(t, "s1"))
    kinds = [e["kind"] for e in s.events(job_id=job)]
    assert kinds == ["job-accepted", "task-active", "task-completed", "job-completed"]
    assert [e["kind"] for e in seen] == kinds
