# SPDX-License-Identifier: MIT
"""Pool versions in scheduling: a slave holding a job's version is local to it, and a slave
quarantined for a version takes no task of it but keeps taking others."""

from collections.abc import Iterator
from pathlib import Path

import pytest

from afarm.master.scheduling.properties import Properties
from afarm.master.scheduling.ranking import make_policy
from afarm.master.scheduling.scheduler import Scheduler
from afarm.model.job import JobSpec, TaskSpec
from afarm.model.policy import FailurePolicy
from afarm.store.db import Store
from tests.fakes import InstantPlace, NoResults

FARM = {"a": {"speed": 4.0}, "b": {"speed": 1.0}}


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = Store(tmp_path / "afarm.db")
    yield s
    s.close()


@pytest.fixture
def sched(store: Store) -> Scheduler:
    s = Scheduler(store, NoResults(), FailurePolicy(), lambda t, j: 60)
    for name in FARM:
        s.places[name] = InstantPlace(name)  # type: ignore[assignment]
    s.configure_ranking(Properties(FARM), "local",
                        {"local": make_policy("local", "lexicographic",
                                              ["locality", "speed"])})

    def version_of(job_id: int) -> str:
        job = store.job(job_id)
        return job.app_version if job else ""

    s.version_of = version_of
    s.load()
    return s


def add_job(store: Store, sched: Scheduler, version: str, frames: int = 1) -> int:
    spec = JobSpec(name="j", application="blender", params={}, files=[],
                   app_version=version)
    job = store.add_job(spec, [TaskSpec(kind="render", label=f"frame {n}",
                                        application="blender", params={"frames": [n]},
                                        outputs=[], frames=1)
                               for n in range(1, frames + 1)])
    sched.reload_job(job)
    return job


def test_a_slave_that_has_the_jobs_version_installed_is_local_to_it(
        store: Store, sched: Scheduler) -> None:
    sched.places["b"].cached = {"app:blender/4.2.0"}  # type: ignore[attr-defined]
    add_job(store, sched, "4.2.0")
    assert [(p.name, c.idx) for p, c in sched._decide()] == [("b", 0)]


def test_a_slave_quarantined_for_a_version_takes_only_other_versions(
        store: Store, sched: Scheduler) -> None:
    sched.places["a"].quarantined = {"blender/4.2.0": "failed"}  # type: ignore[attr-defined]
    sched.places["b"].cached = set()  # type: ignore[attr-defined]
    new = add_job(store, sched, "4.2.0", frames=2)
    old = add_job(store, sched, "3.4.1", frames=2)
    decided = {(p.name, c.job_id) for p, c in sched._decide()}
    assert ("a", new) not in decided
    assert ("a", old) in decided and ("b", new) in decided


def test_a_slave_whose_architecture_lacks_the_version_is_never_given_its_tasks(
        store: Store, sched: Scheduler) -> None:
    arches = {"4.2.0": frozenset({"arm64"}), "3.4.1": frozenset({"amd64", "arm64"}),
              "4.3.0": frozenset({"all"})}
    sched.version_arches = lambda app, version: arches.get(version)
    sched.places["a"].arch = "amd64"  # type: ignore[attr-defined]
    sched.places["b"].arch = "arm64"  # type: ignore[attr-defined]
    only_arm = add_job(store, sched, "4.2.0", frames=2)
    decided = [(p.name, c.job_id) for p, c in sched._decide()]
    assert decided == [("b", only_arm)]  # "a" (amd64) stays idle rather than fail it
    both = add_job(store, sched, "3.4.1", frames=1)
    anywhere = add_job(store, sched, "4.3.0", frames=1)
    sched.places["b"].slots = 0  # type: ignore[attr-defined]
    decided = [(p.name, c.job_id) for p, c in sched._decide()]
    assert decided and all(name == "a" and job in (both, anywhere) for name, job in decided)


def test_a_version_added_for_another_architecture_is_looked_up_again(
        store: Store, sched: Scheduler) -> None:
    arches = {"4.2.0": frozenset({"arm64"})}
    sched.version_arches = lambda app, version: arches.get(version)
    sched.places["a"].arch = "amd64"  # type: ignore[attr-defined]
    sched.places["b"].slots = 0  # type: ignore[attr-defined]
    job = add_job(store, sched, "4.2.0")
    assert sched._decide() == []
    arches["4.2.0"] = frozenset({"arm64", "amd64"})
    sched.versions_changed()
    assert [(p.name, c.job_id) for p, c in sched._decide()] == [("a", job)]
