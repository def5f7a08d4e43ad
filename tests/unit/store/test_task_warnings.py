# SPDX-License-Identifier: MIT
"""Task warnings are stored with the task's completed attempt and make the job's shown
status completed-with-warnings."""

from pathlib import Path

import pytest

from afarm.model.job import InputFile, JobSpec, TaskSpec
from afarm.model.status import COMPLETED_WITH_WARNINGS, JobStatus, shown_job_status
from afarm.store.db import MAX_TASK_WARNINGS, Store


def spec(strict: bool = False) -> JobSpec:
    return JobSpec(name="job", application="app", params={},
                   files=[InputFile("a.blend", "ab" * 32, 10)], strict=strict)


def render(n: int) -> TaskSpec:
    return TaskSpec(kind="render", label=f"frame {n}", application="app",
                    params={"frames": [n]}, outputs=[f"out/frame_{n:04d}.png"], frames=1)


@pytest.fixture
def store(tmp_path: Path) -> Store:
    s = Store(tmp_path / "afarm.db")
    yield s
    s.close()


def run(store: Store, task_index: int, warnings: list[str]) -> None:
    task = store.tasks(1)[task_index]
    attempt = store.start_task(task.id, "s1")
    assert attempt is not None
    assert store.complete_task(task, attempt, warnings)


def test_warnings_are_counted_per_task_and_listed_once_per_text(store: Store) -> None:
    store.add_job(spec(), [render(1), render(2), render(3)])
    run(store, 0, ["missing a", "denoiser off"])
    run(store, 1, ["missing a"])
    found, warned = store.task_warnings(1)
    assert warned == 2
    first = store.tasks(1)[0].id
    assert found == [{"warning": "missing a", "tasks": 2, "first_task": first},
                     {"warning": "denoiser off", "tasks": 1, "first_task": first}]
    job = store.job(1)
    assert job is not None and job.status == JobStatus.ACTIVE
    run(store, 2, [])
    job = store.job(1)
    assert job is not None and job.status == JobStatus.COMPLETED  # finished, as stored
    assert shown_job_status(job.status, warned) == COMPLETED_WITH_WARNINGS
    assert any(e["kind"] == "task-warnings" for e in store.events(job_id=1))


def test_a_completed_job_without_warnings_shows_completed(store: Store) -> None:
    store.add_job(spec(), [render(1)])
    run(store, 0, [])
    job = store.job(1)
    assert job is not None
    assert shown_job_status(job.status, store.warned_tasks(1)) == "completed"
    assert shown_job_status(JobStatus.ACTIVE, 3) == "active"


def test_a_requeued_task_that_completes_again_keeps_only_its_new_warnings(
        store: Store) -> None:
    store.add_job(spec(), [render(1)])
    run(store, 0, ["missing a"])
    task = store.tasks(1)[0]
    store.requeue_job(1, only_unfinished=False)
    assert store.warned_tasks(1) == 0  # a queued task's old warnings do not count
    attempt = store.start_task(task.id, "s1")
    assert attempt is not None and store.complete_task(task, attempt, [])
    assert store.task_warnings(1) == ([], 0)


def test_warnings_are_bounded_in_number_and_length(store: Store) -> None:
    store.add_job(spec(), [render(1)])
    run(store, 0, [f"w{i} " + "x" * 5000 for i in range(100)])
    found, _ = store.task_warnings(1)
    assert len(found) == MAX_TASK_WARNINGS + 1
    assert max(len(w["warning"]) for w in found) == 1000


def test_strict_is_kept_with_the_job(store: Store) -> None:
    store.add_job(spec(strict=True), [render(1)])
    store.add_job(spec(), [render(1)])
    assert [store.job_is_strict(j.id) for j in store.jobs()] == [False, True]
