# SPDX-License-Identifier: MIT
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from afarm.model.job import InputFile, JobSpec, TaskSpec
from afarm.model.status import JobStatus, TaskStatus
from afarm.store.db import Store
from afarm.store.schema import MIGRATIONS


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


def test_active_tasks_are_requeued_after_a_restart(tmp_path: Path) -> None:
    s = Store(tmp_path / "db")
    s.add_job(spec(), [render(1)])
    task = s.tasks(1)[0]
    assert s.start_task(task.id, "s1") == 1
    s.close()  # as if the master died here
    s2 = Store(tmp_path / "db")
    assert s2.recover_active() == 1
    again = s2.tasks(1)[0]
    assert again.status == TaskStatus.QUEUED and again.slave is None
    assert [r.task_id for r in s2.runnable_rows()] == [task.id]


def test_a_stale_attempt_cannot_complete_a_task(store: Store) -> None:
    store.add_job(spec(), [render(1)])
    t = store.tasks(1)[0]
    first = store.start_task(t.id, "s1")
    assert first is not None and store.requeue_task(t, first, "s1 vanished")
    second = store.start_task(t.id, "s2")
    assert second == first + 1
    assert not store.complete_task(t, first)
    assert not store.lease_valid(t.id, first)
    assert store.complete_task(t, second)


def test_a_task_that_is_not_runnable_is_not_started(store: Store) -> None:
    store.add_job(spec(), [render(1)])
    t = store.tasks(1)[0]
    assert store.start_task(t.id, "s1") == 1
    assert store.start_task(t.id, "s2") is None


def test_progress_counts_follow_every_change_without_a_scan(store: Store) -> None:
    job = store.add_job(spec(), [render(1), render(2), render(3)])
    assert store.job_progress(job)["frames_total"] == 3
    a, b, _ = store.tasks(job)
    store.complete_task(a, store.start_task(a.id, "s1") or 0)
    store.requeue_task(b, store.start_task(b.id, "s1") or 0, "gone")
    p = store.job_progress(job)
    assert (p["completed"], p["queued"], p["active"], p["frames_done"]) == (1, 2, 0, 1)
    fresh = Store(store.path)  # counts recounted from the rows agree
    assert fresh.job_progress(job) == p
    fresh.close()


def test_a_submission_written_in_parts_is_invisible_until_finished(store: Store) -> None:
    plan = [render(n) for n in range(1, 11)]
    job = store.begin_job(spec())
    ids: list[int] = []
    store.add_tasks(job, plan[:5], 0, ids)
    assert store.job(job) is None and store.jobs() == [] and store.runnable_rows() == []
    store.add_tasks(job, plan, 5, ids)
    store.finish_job(job, len(plan))
    assert len(store.runnable_rows()) == 10


def test_a_submission_the_master_never_finished_is_dropped_at_start(store: Store) -> None:
    job = store.begin_job(spec())
    store.add_tasks(job, [render(1)], 0, [])
    assert store.drop_unfinished_submissions() == 1
    assert store.db.execute("SELECT COUNT(*) FROM tasks").fetchone()[0] == 0


def test_events_fire_only_after_commit(tmp_path: Path) -> None:
    seen: list[str] = []
    s = Store(tmp_path / "db", on_event=lambda e: seen.append(e["kind"]))
    with pytest.raises(RuntimeError), s.transaction():
        s.add_job(spec(), [render(1)])
        assert seen == []  # inside the transaction nobody has heard of it yet
        raise RuntimeError("rolled back")
    assert seen == [] and s.jobs() == []
    s.add_job(spec(), [render(1)])
    assert seen == ["job-accepted"]
    s.close()


def test_cancel_pause_resume_and_requeue(store: Store) -> None:
    job = store.add_job(spec(), [render(1), render(2)])
    t = store.tasks(job)[0]
    store.start_task(t.id, "s1")
    store.pause_job(job)
    assert store.runnable_rows() == []
    store.resume_job(job)
    assert len(store.runnable_rows()) == 1
    active = store.cancel_job(job)
    assert [a.id for a in active] == [t.id]
    assert {x.status for x in store.tasks(job)} == {TaskStatus.CANCELED}
    assert store.requeue_job(job) == 2
    assert store.job(job).status == JobStatus.QUEUED  # type: ignore[union-attr]


def test_events_are_logged_and_pushed_to_the_hook(tmp_path: Path) -> None:
    seen: list[dict[str, Any]] = []
    s = Store(tmp_path / "db", on_event=seen.append)
    job = s.add_job(spec(), [render(1)])
    t = s.tasks(job)[0]
    s.complete_task(t, s.start_task(t.id, "s1") or 0)
    kinds = [e["kind"] for e in s.events(job_id=job)]
    assert kinds == ["job-accepted", "task-active", "job-active", "task-completed",
                     "job-completed"]
    assert [e["kind"] for e in seen] == kinds


def test_the_store_takes_its_times_from_the_clock_it_is_given(tmp_path: Path) -> None:
    now = [1000.0]
    s = Store(tmp_path / "db", clock=lambda: now[0])
    job = s.add_job(spec(), [render(1)])
    now[0] = 1005.0
    t = s.tasks(job)[0]
    s.start_task(t.id, "s1")
    assert s.tasks(job)[0].started == 1005.0
    assert [e["at"] for e in s.events(job_id=job)] == [1000.0, 1005.0, 1005.0]
    s.close()


def test_open_job_ids_names_every_job_that_may_still_run_past_any_listing_limit(
        store: Store) -> None:
    ids = [store.add_job(spec(f"j{i}"), [render(1)]) for i in range(250)]
    store.pause_job(ids[0])
    store.cancel_job(ids[1])
    assert ids[0] in store.open_job_ids() and ids[1] not in store.open_job_ids()
    assert store.open_job_ids() == [i for i in ids if i != ids[1]]


def test_jobs_page_newest_first_below_before(store: Store) -> None:
    ids = [store.add_job(spec(f"j{i}"), [render(1)]) for i in range(5)]
    assert [j.id for j in store.jobs(limit=2)] == [ids[4], ids[3]]
    assert [j.id for j in store.jobs(limit=2, before=ids[3])] == [ids[2], ids[1]]
    assert [j.id for j in store.jobs(limit=10, before=ids[1])] == [ids[0]]
    assert store.jobs(limit=10, before=ids[0]) == []
    assert store.jobs(limit=10, before=0) == []


def test_a_job_page_names_the_next_page_only_when_there_are_older_jobs(store: Store) -> None:
    ids = [store.add_job(spec(f"j{i}"), [render(1)]) for i in range(4)]
    page = store.job_page(limit=2)
    assert [j.id for j in page.jobs] == [ids[3], ids[2]]
    assert page.older == ids[2] and page.total == 4
    last = store.job_page(limit=2, before=page.older)
    assert [j.id for j in last.jobs] == [ids[1], ids[0]]
    assert last.older is None  # exactly limit left: limit+1 was asked, none more came
    assert store.job_page(limit=4).older is None
    assert store.job_page(limit=3).older == ids[1]


def test_a_job_page_of_no_jobs_is_empty_and_counts_none(store: Store) -> None:
    page = store.job_page()
    assert page.jobs == [] and page.older is None and page.total == 0


def test_a_submission_still_being_written_is_on_no_page_and_in_no_count(store: Store) -> None:
    done = store.add_job(spec("done"), [render(1)])
    store.begin_job(spec("uploading"))
    page = store.job_page(limit=1)
    assert [j.id for j in page.jobs] == [done] and page.older is None and page.total == 1
