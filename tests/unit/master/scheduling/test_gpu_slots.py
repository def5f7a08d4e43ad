# SPDX-License-Identifier: MIT
"""One slot per GPU: a slave with k GPUs runs k GPU tasks at once, each pinned to its own
device, besides its CPU slots; CPU jobs never take a GPU slot."""

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from afarm.master.scheduling.gpu_slots import gpu_count
from afarm.master.scheduling.properties import Properties
from afarm.master.scheduling.scheduler import Scheduler
from afarm.master.slaves.link import Outcome
from afarm.model.job import InputFile, JobSpec, TaskSpec
from afarm.model.policy import FailurePolicy
from afarm.store.db import Store
from tests.fakes import InstantPlace, NoResults


class GpuPlace(InstantPlace):
    def __init__(self, name: str, slots: int, gpus: int) -> None:
        super().__init__(name, slots)
        self.gpus = gpus


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = Store(tmp_path / "afarm.db")
    yield s
    s.close()


def scheduler(store: Store, places: list[InstantPlace]) -> Scheduler:
    sched = Scheduler(store, NoResults(), FailurePolicy(), lambda t, j: 60)
    for p in places:
        sched.places[p.name] = p
    sched.configure_ranking(Properties({p.name: {"speed": 1.0, "gpus": float(
        getattr(p, "gpus", 0))} for p in places}), "fastest")
    sched.load()
    return sched


def add_job(store: Store, sched: Scheduler, tasks: int, **scheduling: Any) -> int:
    spec = JobSpec(name="j", application="app", params={},
                   files=[InputFile("a.blend", "ab" * 32, 10)], scheduling=scheduling)
    job = store.add_job(spec, [TaskSpec(kind="render", label=f"frame {n}", application="app",
                                        params={"frames": [n]}, outputs=[], frames=1)
                               for n in range(1, tasks + 1)])
    sched.reload_job(job)
    return job


def start(sched: Scheduler) -> list[tuple[str, int, int | None]]:
    """One pass's decisions, marked busy as the real pass would: (slave, job, device)."""
    out = []
    for place, cand in sched._decide():
        place.mark_busy(cand.task_id, object())  # type: ignore[arg-type]
        out.append((place.name, cand.job_id, sched.gpu_device(place.name, cand.task_id)))
    return out


def test_a_two_gpu_slave_runs_two_gpu_tasks_pinned_to_devices_0_and_1_and_a_third_waits(
        store: Store) -> None:
    sched = scheduler(store, [GpuPlace("g", slots=1, gpus=2)])
    job = add_job(store, sched, 3, device="GPU", gpus=1)
    assert sorted(start(sched)) == [("g", job, 0), ("g", job, 1)]
    assert start(sched) == []  # both GPUs busy: the third task waits


def test_a_finished_gpu_task_frees_its_device_for_the_next(store: Store) -> None:
    place = GpuPlace("g", slots=1, gpus=2)
    sched = scheduler(store, [place])
    add_job(store, sched, 3, device="GPU", gpus=1)
    decided = sched._decide()
    for p, cand in decided:
        p.mark_busy(cand.task_id, object())  # type: ignore[arg-type]
    first = next(c for _, c in decided if sched.gpu_device("g", c.task_id) == 0)
    task = store.task(first.task_id)
    assert task is not None and store.start_task(task.id, "g") is not None
    task = store.task(first.task_id)
    assert task is not None
    sched._outcomes.append((place, task, task.attempt, Outcome("done")))
    sched.apply_outcomes()
    assert [d for _, _, d in start(sched)] == [0]  # device 0 again, not a third device


def test_gpu_slots_come_besides_the_cpu_slots_and_cpu_jobs_never_take_them(
        store: Store) -> None:
    sched = scheduler(store, [GpuPlace("g", slots=1, gpus=2)])
    cpu = add_job(store, sched, 4)
    gpu = add_job(store, sched, 4, device="GPU", gpus=1)
    got = start(sched)
    assert sorted(got) == [("g", cpu, None), ("g", gpu, 0), ("g", gpu, 1)]


def test_a_slave_without_gpus_takes_no_gpu_task_and_cpu_jobs_run_as_before(
        store: Store) -> None:
    sched = scheduler(store, [InstantPlace("c", slots=2)])
    add_job(store, sched, 2, device="GPU", gpus=1)
    assert start(sched) == []
    cpu = add_job(store, sched, 3)
    assert start(sched) == [("c", cpu, None), ("c", cpu, None)]


@pytest.mark.parametrize(("info", "count"), [
    ({"gpus": ["nvidia 0: RTX 3080", "nvidia 1: RTX 3080", "dri: renderD128",
               "dri: renderD129"]}, 2),
    ({"gpus": ["dri: renderD128"]}, 1),
    ({"acceptance": {"gpus": ["nvidia 0: A100"]}}, 1),
    ({"gpus": 3}, 3), ({}, 0), ({"gpus": "lots"}, 0)])
def test_a_slaves_gpu_count_comes_from_what_it_reported(info: dict[str, Any],
                                                        count: int) -> None:
    place = InstantPlace("s")
    place.info = info  # type: ignore[attr-defined]
    assert gpu_count(place) == count
