# SPDX-License-Identifier: MIT
"""Every attempt is paid for as its outcome is applied: through the real scheduler, store
and meter, with a clock the test moves."""

from collections.abc import Iterator
from pathlib import Path

import pytest

from afarm.master import accounting
from afarm.master.http_util import energy_json
from afarm.master.metering import MASTER, Meter, Power, Site
from afarm.master.scheduling.scheduler import Scheduler
from afarm.master.slaves.link import Outcome
from afarm.model.job import InputFile, JobSpec, Task, TaskSpec
from afarm.model.policy import FailurePolicy
from afarm.model.status import TaskStatus
from afarm.protocol.messages import TaskReply
from afarm.store import usage
from afarm.store.db import Store
from tests.fakes import InstantPlace, NoResults


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


class Farm:
    def __init__(self, tmp: Path) -> None:
        self.clock = Clock()
        self.store = Store(tmp / "afarm.db", clock=self.clock)
        self.meter = Meter(self.store, self.clock)
        self.meter.site = Site(watts_busy=50, price_per_kwh=0.30, currency="EUR")
        self.sched = Scheduler(self.store, NoResults(), FailurePolicy(), lambda t, j: 60)
        self.sched.meter = self.meter.record
        self.places = {n: InstantPlace(n) for n in ("s1", "s2", "s3")}
        self.sched.places.update(self.places)  # type: ignore[arg-type]

    def job(self, n: int = 1, runs_on: str = "slave") -> int:
        plan = [TaskSpec(kind="render", label=f"frame {i}", application="app",
                         params={}, outputs=[], frames=1, runs_on=runs_on)
                for i in range(1, n + 1)]
        job = self.store.add_job(JobSpec("job", "app", {}, [InputFile("a", "ab" * 32, 1)]),
                                 plan)
        self.sched.reload_job(job)
        return job

    def run(self, task_id: int, where: str, seconds: float, outcome: Outcome) -> Task:
        """Start the task on `where`, let `seconds` pass, apply the outcome."""
        attempt = self.store.start_task(task_id, where)
        assert attempt is not None
        task = self.store.task(task_id)
        assert task is not None
        self.clock.now += seconds
        place = self.sched.master if where == MASTER else self.places[where]
        self.sched._outcomes.append((place, task, attempt, outcome))  # type: ignore
        self.sched.apply_outcomes()
        return task


@pytest.fixture
def farm(tmp_path: Path) -> Iterator[Farm]:
    f = Farm(tmp_path)
    yield f
    f.store.close()


def reply(task: int, attempt: int, seconds: float, energy: float | None = None) -> TaskReply:
    return TaskReply(task, attempt, exit_code=0, seconds=seconds, energy_j=energy)


def test_requeued_failed_and_completed_attempts_all_count_toward_the_job(farm: Farm) -> None:
    farm.meter.places = {"s1": Power(watts_busy=100), "s2": Power(watts_busy=200, slots=2)}
    job = farm.job()
    (tid,) = [t.id for t in farm.store.tasks(job)]
    # The link to s1 breaks after 10 s: requeued, nobody blamed, the 10 s still used power.
    farm.run(tid, "s1", 10, Outcome("gone", "connection lost"))
    assert farm.store.task(tid).status == TaskStatus.QUEUED  # type: ignore[union-attr]
    # s2 (200 W over 2 slots: 100 W a task) answers that it failed after 20 s.
    farm.run(tid, "s2", 25, Outcome("failed", "boom", reply(tid, 2, 20)))
    assert farm.store.task(tid).status == TaskStatus.SOFT_FAILED  # type: ignore[union-attr]
    farm.run(tid, "s1", 31, Outcome("done", "", reply(tid, 3, 30)))
    assert farm.store.task(tid).status == TaskStatus.COMPLETED  # type: ignore[union-attr]

    rows = usage.of_task(farm.store.db, tid)
    assert [(r.attempt, r.slave, r.seconds, r.watts) for r in rows] == [
        (1, "s1", 10, 100), (2, "s2", 20, 100), (3, "s1", 30, 100)]
    totals = usage.of_jobs(farm.store.db, [job])[job]
    assert (totals.attempts, totals.tasks, totals.seconds) == (3, 1, 60)
    assert totals.joules == pytest.approx(60 * 100)
    assert totals.kwh == pytest.approx(60 * 100 / 3.6e6)
    assert totals.cost == pytest.approx(60 * 100 / 3.6e6 * 0.30)
    energy, warnings = energy_json(totals, "EUR")
    assert energy["kwh"] == pytest.approx(totals.kwh) and energy["estimated"]
    assert warnings == []


def test_a_slave_without_watts_makes_the_job_energy_unknown_with_a_warning(
        farm: Farm) -> None:
    farm.meter.site = Site(price_per_kwh=0.30)  # no master-wide default either
    farm.meter.places = {"s1": Power(watts_busy=100)}
    job = farm.job(2)
    a, b = [t.id for t in farm.store.tasks(job)]
    farm.run(a, "s1", 10, Outcome("done", "", reply(a, 1, 10)))
    farm.run(b, "s2", 10, Outcome("done", "", reply(b, 1, 10)))
    totals = usage.of_jobs(farm.store.db, [job])[job]
    assert totals.unknown_energy == 1 and totals.unknown_slaves == ["s2"]
    energy, warnings = energy_json(totals, "EUR")
    assert energy["kwh"] is None and energy["cost"] is None
    assert warnings[0].startswith("energy unknown: slave s2 has no watts_busy")


def test_without_any_price_the_energy_is_known_and_the_cost_unknown(farm: Farm) -> None:
    farm.meter.site = Site(watts_busy=100)
    job = farm.job()
    (tid,) = [t.id for t in farm.store.tasks(job)]
    farm.run(tid, "s1", 36, Outcome("done", "", reply(tid, 1, 36)))
    energy, warnings = energy_json(usage.of_jobs(farm.store.db, [job])[job], "EUR")
    assert energy["kwh"] == pytest.approx(0.001) and energy["cost"] is None
    assert warnings and warnings[0].startswith("cost unknown")


def test_measured_energy_replaces_the_estimate_and_a_slave_price_beats_the_site(
        farm: Farm) -> None:
    farm.meter.places = {"s1": Power(watts_busy=100, price=0.50)}
    job = farm.job(2)
    a, b = [t.id for t in farm.store.tasks(job)]
    farm.run(a, "s1", 10, Outcome("done", "", reply(a, 1, 10, energy=1234.0)))
    farm.run(b, "s1", 10, Outcome("done", "", reply(b, 1, 10, energy=1e9)))  # not believed
    ra, rb = usage.of_task(farm.store.db, a)[0], usage.of_task(farm.store.db, b)[0]
    assert ra.measured and ra.joules == 1234.0 and ra.watts == pytest.approx(123.4)
    assert ra.price == 0.50 and ra.cost == pytest.approx(1234 / 3.6e6 * 0.50)
    assert not rb.measured and rb.joules == 1000.0


def test_a_multi_slot_slave_s_measured_energy_is_not_used(farm: Farm) -> None:
    # RAPL counts the whole machine: with other tasks beside it, one task's figure is wrong.
    farm.meter.places = {"s1": Power(watts_busy=400, slots=4)}
    job = farm.job()
    (tid,) = [t.id for t in farm.store.tasks(job)]
    farm.run(tid, "s1", 10, Outcome("done", "", reply(tid, 1, 10, energy=9999.0)))
    (r,) = usage.of_task(farm.store.db, tid)
    assert not r.measured and r.watts == 100 and r.joules == 1000


def test_a_local_slave_s_measured_energy_is_not_used_as_it_shares_the_machine(
        farm: Farm) -> None:
    farm.meter.places = {"s1": Power(watts_busy=100, shared=True)}
    job = farm.job()
    (tid,) = [t.id for t in farm.store.tasks(job)]
    farm.run(tid, "s1", 10, Outcome("done", "", reply(tid, 1, 10, energy=9999.0)))
    (r,) = usage.of_task(farm.store.db, tid)
    assert not r.measured and r.joules == 1000


def test_master_follow_ups_count_at_the_master_s_own_watts(farm: Farm) -> None:
    farm.sched.master = InstantPlace(MASTER)  # type: ignore[assignment]
    farm.meter.site = Site(watts_busy=80, price_per_kwh=0.2)
    job = farm.job(runs_on="master")
    (tid,) = [t.id for t in farm.store.tasks(job)]
    farm.run(tid, MASTER, 45, Outcome("done", "", reply(tid, 1, 45, energy=5.0)))
    (r,) = usage.of_task(farm.store.db, tid)
    assert r.slave == MASTER and r.watts == 80 and r.joules == 80 * 45 and not r.measured


def test_the_site_tariff_prices_an_attempt_by_when_it_ran(farm: Farm) -> None:
    farm.meter.site = Site(watts_busy=1000, price_per_kwh=0.2,
                           tariff=accounting.parse_tariff(["00:00-12:00 0.1"], 0.2))
    job = farm.job()
    (tid,) = [t.id for t in farm.store.tasks(job)]
    farm.run(tid, "s1", 3600, Outcome("done", "", reply(tid, 1, 3600)))
    (r,) = usage.of_task(farm.store.db, tid)
    expected = accounting.priced(3.6e6, r.ended - 3600, r.ended, farm.meter.site.tariff)
    assert r.cost == pytest.approx(expected) and r.price == pytest.approx(expected)


def test_an_attempt_is_recorded_once_and_the_report_totals_per_job_and_slave(
        farm: Farm) -> None:
    farm.meter.places = {"s1": Power(watts_busy=100), "s2": Power(watts_busy=200)}
    first, second = farm.job(), farm.job()
    (a,), (b,) = [[t.id for t in farm.store.tasks(j)] for j in (first, second)]
    since = farm.clock.now
    farm.run(a, "s1", 100, Outcome("done", "", reply(a, 1, 100)))
    farm.run(b, "s2", 50, Outcome("done", "", reply(b, 1, 50)))
    task = farm.store.task(a)
    assert task is not None
    before = usage.of_task(farm.store.db, a)
    farm.meter.record("s1", task, 1, Outcome("done"))  # a second word on the same attempt
    assert usage.of_task(farm.store.db, a) == before
    total, jobs, slaves = usage.report(farm.store.db, since, farm.clock.now + 1)
    assert total.attempts == 2 and total.joules == pytest.approx(100 * 100 + 50 * 200)
    assert set(jobs) == {first, second} and jobs[first].seconds == 100
    assert slaves["s2"].joules == pytest.approx(10_000) and slaves["s2"].tasks == 1
    assert usage.job_names(farm.store.db, [first]) == {first: "job"}
    empty, _, _ = usage.report(farm.store.db, since - 100, since)
    assert empty.attempts == 0 and empty.joules == 0
