# SPDX-License-Identifier: MIT
"""The scheduler hands tasks to free slaves in ranked order, keeps a job's last tasks off a
far slower slave, and measures speed and reliability from the attempts it sees."""

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from afarm.master.accounting import parse_tariff
from afarm.master.scheduling.properties import Properties
from afarm.master.scheduling.ranking import make_policy
from afarm.master.scheduling.scheduler import Scheduler
from afarm.model.job import InputFile, JobSpec, TaskSpec
from afarm.model.policy import FailurePolicy
from afarm.store.db import Store
from tests.fakes import InstantPlace, NoResults


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = Store(tmp_path / "afarm.db")
    yield s
    s.close()


def scheduler(store: Store, static: dict[str, dict[str, float]], policy: str = "fastest",
              slots: int = 1) -> Scheduler:
    sched = Scheduler(store, NoResults(), FailurePolicy(), lambda t, j: 60)
    for name in static:
        sched.places[name] = InstantPlace(name, slots)  # type: ignore[assignment]
    sched.configure_ranking(Properties(static), policy)
    sched.load()
    return sched


def add_job(store: Store, sched: Scheduler, frames: int) -> int:
    spec = JobSpec(name="j", application="app", params={},
                   files=[InputFile("a.blend", "ab" * 32, 10)])
    job = store.add_job(spec, [TaskSpec(kind="render", label=f"frame {n}", application="app",
                                        params={"frames": [n]}, outputs=[], frames=1)
                               for n in range(1, frames + 1)])
    sched.reload_job(job)
    return job


def first_tasks(sched: Scheduler) -> list[tuple[str, int]]:
    return [(p.name, c.idx) for p, c in sched._decide()]


FARM = {"a-slow": {"speed": 1.0, "watts_busy": 50.0},
        "b-fast": {"speed": 4.0, "watts_busy": 400.0},
        "c-mid": {"speed": 2.0, "watts_busy": 100.0}}


def test_the_best_ranked_free_slave_takes_the_most_urgent_task(store: Store) -> None:
    sched = scheduler(store, FARM, "fastest")
    add_job(store, sched, 10)
    assert first_tasks(sched) == [("b-fast", 0), ("c-mid", 1), ("a-slow", 2)]


def test_the_policy_decides_the_order_cheapest_puts_the_frugal_slave_first(
        store: Store) -> None:
    sched = scheduler(store, FARM, "greenest")
    add_job(store, sched, 10)
    # Wh per frame: a-slow 50/1, c-mid 100/2, b-fast 400/4: a and c tie, speed decides
    assert [n for n, _ in first_tasks(sched)] == ["c-mid", "a-slow", "b-fast"]


def test_a_jobs_last_task_waits_for_a_far_faster_busy_slave(store: Store) -> None:
    sched = scheduler(store, FARM, "fastest")
    add_job(store, sched, 2)
    fast = sched.places["b-fast"]
    fast.running[999] = None  # busy with something else
    # c-mid (2/s) takes frame 1; one task is left for a-slow (1/s), and b-fast (4/s),
    # though busy, would finish its task and this one first: a-slow leaves it to b-fast
    assert first_tasks(sched) == [("c-mid", 0)]
    assert sched.index.runnable(1) == 1


def test_slaves_without_any_property_are_visited_by_name(store: Store) -> None:
    sched = scheduler(store, {"s2": {}, "s1": {}, "s3": {}})
    add_job(store, sched, 5)
    assert [n for n, _ in first_tasks(sched)] == ["s1", "s2", "s3"]


def test_the_ranking_is_cached_until_a_property_moves(store: Store) -> None:
    sched = scheduler(store, FARM)
    first, _ = sched.placement.order(sched.places, sched.ranking_policy)
    sched.properties.record("a-slow", 0.01, 1, True)  # a-slow measured at 100 frames/s
    # within the re-rank interval a moved property waits...
    assert sched.placement.order(sched.places, sched.ranking_policy)[0] is first
    sched.placement._cache["fastest"].at -= 10  # ...and is ranked once it has passed
    assert sched.ranked_places()[0][0].name == "a-slow"


def test_speed_is_a_moving_average_and_reliability_a_window_of_attempts() -> None:
    p = Properties({"s": {"speed": 0.5, "watts_busy": 100.0}}, price=0.2)
    assert p.row("s")["speed"] == 0.5  # the benchmark until measured
    p.record("s", 4.0, 2, True)  # 2 s a frame
    assert p.row("s")["speed"] == pytest.approx(0.5)
    p.record("s", 1.0, 1, True)
    assert p.row("s")["speed"] == pytest.approx(1 / (0.3 * 1 + 0.7 * 2))
    p.record("s", None, 1, False)
    assert p.row("s")["reliability"] == pytest.approx(2 / 3)
    row = p.row("s")
    assert row["energy_per_frame"] == pytest.approx(100 / row["speed"] / 3600)
    assert row["cost_per_frame"] == pytest.approx(row["energy_per_frame"] / 1000 * 0.2)


def test_the_sites_tariff_prices_slaves_without_their_own_and_re_ranks_when_it_changes(
        ) -> None:
    now = [time.mktime((2026, 12, 1, 21, 59, 0, 0, 0, -1))]
    tariff = parse_tariff(["22:00-06:00 0.18", "06:00-22:00 0.34"])
    p = Properties({"own": {"price": 0.5}, "site": {}}, tariff=tariff, clock=lambda: now[0])
    assert p.row("site")["price"] == 0.34 and p.row("own")["price"] == 0.5
    version = p.version
    now[0] += 120  # 22:01: the night price
    p.check_tariff()
    assert p.version == version + 1 and p.row("site")["price"] == 0.18


def test_site_watts_stand_in_for_a_slave_without_its_own_and_no_price_is_unknown() -> None:
    p = Properties({"s": {"speed": 2.0}}, watts_busy=100.0)
    row = p.row("s")
    assert row["watts_busy"] == 100.0 and "price" not in row and "cost_per_frame" not in row
    assert row["energy_per_frame"] == pytest.approx(100 / 2 / 3600)


def test_a_finished_attempt_is_measured_for_the_ranking(store: Store) -> None:
    sched = scheduler(store, {"s1": {}})
    add_job(store, sched, 1)

    async def run() -> None:
        sched.schedule_pass()
        await asyncio.sleep(0.01)
        sched.apply_outcomes()

    asyncio.run(run())
    assert sched.properties.row("s1")["reliability"] == 1.0
    assert sched.properties.row("s1")["speed"] > 0


def add_job_with(store: Store, sched: Scheduler, frames: int, **scheduling: object) -> int:
    spec = JobSpec(name="j", application="app", params={},
                   files=[InputFile("a.blend", "ab" * 32, 10)], scheduling=dict(scheduling))
    job = store.add_job(spec, [TaskSpec(kind="render", label=f"frame {n}", application="app",
                                        params={"frames": [n]}, outputs=[], frames=1)
                               for n in range(1, frames + 1)])
    sched.reload_job(job)
    return job


def test_a_jobs_own_policy_orders_the_slaves_for_its_tasks(store: Store) -> None:
    sched = scheduler(store, FARM, "fastest")
    add_job_with(store, sched, 10, policy="greenest")
    assert [n for n, _ in first_tasks(sched)] == ["c-mid", "a-slow", "b-fast"]


def test_a_job_with_a_memory_minimum_never_goes_to_a_smaller_slave(store: Store) -> None:
    farm = {"big": {"memory": 64.0 * 2**30}, "small": {"memory": 4.0 * 2**30}, "unknown": {}}
    sched = scheduler(store, farm)
    add_job_with(store, sched, 10, min_memory_mib=16 * 1024)
    assert [n for n, _ in first_tasks(sched)] == ["big"]


def test_cheapest_within_deadline_leaves_the_slaves_it_does_not_need_idle(
        store: Store) -> None:
    farm = {f"s{i}": {"speed": 1.0, "watts_busy": 100.0 * i} for i in range(1, 6)}
    sched = scheduler(store, farm)
    now = store.clock()
    # 250 frames in 100 s at 1 frame/s per slave: the three cheapest make it
    add_job_with(store, sched, 250, policy="cheapest-within-deadline", deadline=now + 100)
    assert sorted(n for n, _ in first_tasks(sched)) == ["s1", "s2", "s3"]
    r = sched.ranking(sched.policies["cheapest-within-deadline"], store.job(1))
    assert r.names[:3] == ["s1", "s2", "s3"]
    assert {r.matrix.slaves[i] for i in r.held} == {"s4", "s5"}


def test_a_missed_deadline_holds_no_slave_back(store: Store) -> None:
    farm = {f"s{i}": {"speed": 1.0, "watts_busy": 100.0 * i} for i in range(1, 4)}
    sched = scheduler(store, farm)
    add_job_with(store, sched, 50, policy="cheapest-within-deadline",
                 deadline=store.clock() - 10)
    assert len(first_tasks(sched)) == 3


def test_a_policy_with_locality_prefers_slaves_that_hold_the_jobs_inputs(
        store: Store) -> None:
    farm = {"a": {"speed": 4.0}, "b": {"speed": 1.0}}
    sched = scheduler(store, farm)
    sched.configure_ranking(Properties(farm), "local",
                            {"local": make_policy("local", "lexicographic",
                                                  ["locality", "speed"])})
    sched.places["b"].cached = {"ab" * 32}  # type: ignore[attr-defined]
    add_job(store, sched, 1)
    assert first_tasks(sched) == [("b", 0)]


def test_a_benchmark_gives_a_slave_its_speed_until_its_tasks_measure_one() -> None:
    props = Properties()
    before = props.version
    props.benchmarked("fast", 0.25)
    props.benchmarked("slow", 1.0)
    assert props.version > before
    assert props.row("fast")["speed"] == 4.0 and props.row("slow")["benchmark"] == 1.0
    props.record("fast", 2.0, 1, True)  # its own task: 2 s a frame
    assert props.row("fast")["speed"] == 0.5 and props.row("fast")["benchmark"] == 4.0
