# SPDX-License-Identifier: MIT
"""The power manager with the real scheduler, index and store, over slaves that sleep.

The slaves are stand-ins whose machine "boots" a few milliseconds after its magic packet
(or never, for the resume-timeout tests) and refuses to suspend while a task runs, as the
slave's suspend verb does; the manager runs its real loop with short settings.
"""

import asyncio
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from afarm.master.scheduling.properties import Properties
from afarm.master.scheduling.scheduler import Scheduler
from afarm.master.slaves.link import Outcome
from afarm.master.slaves.power import PowerSettings
from afarm.master.slaves.waker import Machine, PowerManager
from afarm.model.job import Job, Task
from afarm.model.policy import FailurePolicy
from afarm.model.status import JobStatus, TaskStatus
from afarm.store.db import Store
from tests.fakes import NoResults
from tests.unit.master.scheduling.test_scheduler import render, spec

FAST = PowerSettings(enabled=True, idle_suspend=0.05 / 60, resume_timeout=0.5, wake_rate=1000,
                     min_sleep=0, retry_down=0.3 / 60, resend=0.1)


class SleepyPlace:
    """A slave whose machine sleeps and wakes, as the manager and scheduler see it."""

    def __init__(self, name: str, on_state: Callable[[str, str], None],
                 ready: Callable[[], None], boot: float = 0.01) -> None:
        self.name = name
        self.slots = 1
        self.state = "online"
        self.tags: list[str] = []
        self.applications: frozenset[str] | None = None
        self.running: dict[int, Any] = {}
        self.on_state = on_state
        self.ready = ready
        self.boot = boot
        self.wakes_fail = False  # its NIC ignores the packet (resume timeout)
        self.suspended_while_running = 0
        self.ran_while_asleep = 0
        self.suspends = 0

    @property
    def free_slots(self) -> int:
        return self.slots - len(self.running) if self.state in ("online", "busy") else 0

    def set_state(self, state: str, error: str | None = None) -> None:
        self.state = state
        self.on_state(self.name, state)

    def mark_busy(self, task_id: int, job: Any) -> None:
        self.running[task_id] = job
        if self.state == "online":
            self.set_state("busy")

    def mark_free(self, task_id: int) -> None:
        self.running.pop(task_id, None)
        if self.state == "busy":
            self.set_state("online")

    def cancel(self, task_id: int, attempt: int) -> None:
        pass

    async def run(self, task: Task, attempt: int, job: Job, timeout: int,
                  partial: Callable[[str], Path]) -> Outcome:
        await asyncio.sleep(0.003)
        if self.state in ("asleep", "down"):
            self.ran_while_asleep += 1
            return Outcome("gone", "slept mid-task")
        return Outcome("done")

    async def stop(self) -> None:
        pass

    # -- PowerPlace -----------------------------------------------------------------------
    def sleep(self, state: str, reason: str) -> None:
        self.set_state(state)

    def wake(self) -> None:
        self.set_state("waking")
        if not self.wakes_fail:
            asyncio.get_running_loop().call_later(self.boot, self._booted)

    def _booted(self) -> None:
        if self.state == "waking":
            self.set_state("testing")
            self.set_state("online")
            self.ready()

    async def suspend_machine(self) -> str:
        if self.running:
            self.suspended_while_running += 1
            return "a task is running"
        self.suspends += 1
        return ""


class Waker:
    def __init__(self) -> None:
        self.sent: list[str] = []

    def wake(self, mac: str, broadcast: str, port: int) -> None:
        self.sent.append(mac)


class PowerFarm:
    def __init__(self, store: Store, n: int, settings: PowerSettings = FAST,
                 static: dict[str, dict[str, float]] | None = None) -> None:
        self.store = store
        self.sched = Scheduler(store, NoResults(), FailurePolicy(), lambda t, j: 60)
        if static is not None:  # memory and GPUs of the slaves, as definitions give them
            self.sched.configure_ranking(Properties(static), "fastest")
        self.waker = Waker()
        self.places = {}
        for i in range(n):
            p = SleepyPlace(f"s{i}", self._state, self.sched.wake)
            self.places[p.name] = p
            self.sched.places[p.name] = p  # type: ignore[assignment]
        self.power = PowerManager(
            self.sched.places, settings,
            {n: Machine(f"52:54:00:00:00:{i:02x}") for i, n in enumerate(self.places)},
            waker=self.waker, ranked=lambda: sorted(self.places),
            demand=self.sched.power_demand, tick=0.01,
            properties=self.sched.properties.row)
        self.sched.load()

    def _state(self, name: str, state: str) -> None:
        self.store.set_slave(name, state)
        self.power.observe(name, state)

    def add(self, tasks: int, **scheduling: Any) -> int:
        s = spec()
        s.scheduling = dict(scheduling)
        job = self.store.add_job(s, [render(i) for i in range(tasks)])
        self.sched.reload_job(job)
        return job

    async def until(self, cond: Callable[[], bool], timeout: float = 20) -> None:
        deadline = asyncio.get_running_loop().time() + timeout
        while not cond():
            if asyncio.get_running_loop().time() > deadline:
                raise TimeoutError({n: p.state for n, p in self.places.items()})
            await asyncio.sleep(0.005)

    def done(self, job: int) -> bool:
        j = self.store.job(job)
        return j is not None and j.status == JobStatus.COMPLETED

    def all_asleep(self) -> bool:
        return all(p.state == "asleep" for p in self.places.values())

    def completions(self) -> dict[int, int]:
        out: dict[int, int] = {}
        for e in self.store.events(limit=1_000_000):
            if e["kind"] == "task-completed":
                out[e["task"]] = out.get(e["task"], 0) + 1
        return out


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = Store(tmp_path / "afarm.db")
    yield s
    s.close()


def running(farm: PowerFarm) -> Callable[[Callable[[], Any]], Any]:
    """Run a coroutine with the scheduler's and the manager's loops, stopped after."""
    async def go(body: Callable[[], Any]) -> Any:
        farm.sched.start()
        loop = asyncio.create_task(farm.power.run())
        try:
            return await body()
        finally:
            loop.cancel()
            await asyncio.gather(loop, return_exceptions=True)
            await farm.sched.stop()
    return lambda body: asyncio.run(go(body))


def test_a_hundred_suspend_and_wake_cycles_lose_no_task_and_run_none_twice(
        store: Store) -> None:
    farm = PowerFarm(store, 3)
    jobs: list[int] = []

    async def cycles() -> None:
        for n in range(100):
            if n % 10 == 5:  # now and then a slave's NIC ignores its packet
                farm.places["s0"].wakes_fail = True
            jobs.append(farm.add(4))
            await farm.until(lambda: farm.done(jobs[-1]))
            farm.places["s0"].wakes_fail = False
            # Asleep, or down until work needs it again.
            await farm.until(lambda: all(p.state in ("asleep", "down")
                                         for p in farm.places.values()))

    running(farm)(cycles)
    tasks = [t for j in jobs for t in store.tasks(j)]
    assert len(tasks) == 400
    assert all(t.status == TaskStatus.COMPLETED for t in tasks)
    assert set(farm.completions().values()) == {1}
    assert len(farm.completions()) == 400
    places = farm.places.values()
    assert sum(p.suspends for p in places) >= 100
    assert farm.power.counts["wake"] >= 100
    assert farm.power.counts["down"] >= 1  # the resume timeouts did happen
    assert all(p.suspended_while_running == 0 and p.ran_while_asleep == 0 for p in places)


def test_no_slave_is_suspended_while_a_task_runs(store: Store) -> None:
    farm = PowerFarm(store, 2, PowerSettings(enabled=True, idle_suspend=0, wake_rate=100))
    job = farm.add(30)

    async def body() -> None:
        await farm.until(lambda: farm.done(job))
        await farm.until(farm.all_asleep)

    running(farm)(body)
    assert all(p.suspended_while_running == 0 for p in farm.places.values())
    assert set(farm.completions().values()) == {1}


def test_the_floor_keeps_a_slave_awake(store: Store) -> None:
    floor = PowerSettings(enabled=True, idle_suspend=0.01 / 60, keep_awake=(("*", 1),),
                          min_sleep=0)
    farm = PowerFarm(store, 3, floor)

    async def body() -> None:
        await farm.until(lambda: sum(p.state == "asleep" for p in farm.places.values()) == 2)
        await asyncio.sleep(0.2)

    running(farm)(body)
    awake = [p.name for p in farm.places.values() if p.state == "online"]
    assert awake == ["s0"]  # the best ranked


def test_a_slave_that_does_not_wake_is_down_and_its_work_goes_to_the_next(
        store: Store) -> None:
    farm = PowerFarm(store, 2)
    farm.places["s0"].wakes_fail = True

    async def body() -> int:
        await farm.until(farm.all_asleep)
        job = farm.add(3)
        await farm.until(lambda: farm.places["s0"].state == "down")
        await farm.until(lambda: farm.done(job))
        return job

    job = running(farm)(body)
    assert all(t.slave == "s1" for t in store.tasks(job))
    assert farm.power.counts["down"] == 1
    assert farm.power.counts["resend"] >= 1  # it got its packet more than once
    assert farm.waker.sent.count("52:54:00:00:00:00") >= 2


GIB = float(1 << 30)


def test_queued_work_wakes_only_a_slave_with_the_memory_it_needs(store: Store) -> None:
    farm = PowerFarm(store, 2, static={"s0": {"memory": 4 * GIB}, "s1": {"memory": 32 * GIB}})

    async def body() -> int:
        await farm.until(farm.all_asleep)
        sent = len(farm.waker.sent)
        job = farm.add(3, min_memory_mib=16 * 1024)
        await farm.until(lambda: farm.done(job))
        assert farm.waker.sent[sent:] == ["52:54:00:00:00:01"]  # s1 only
        return job

    job = running(farm)(body)
    assert all(t.slave == "s1" for t in store.tasks(job))


def test_queued_work_wakes_a_slave_someone_switched_off_after_retry_down(
        store: Store) -> None:
    farm = PowerFarm(store, 1, replace(FAST, idle_suspend=60))

    async def body() -> int:
        farm.places["s0"].set_state("unreachable")  # switched off by hand
        job = farm.add(2)
        await asyncio.sleep(0.1)
        assert farm.waker.sent == []  # not before retry_down (0.3 s here)
        await farm.until(lambda: farm.done(job))
        return job

    running(farm)(body)
    assert farm.waker.sent == ["52:54:00:00:00:00"]
    assert farm.power.counts["wake"] == 1


def test_a_drained_slave_finishes_nothing_new_and_is_suspended_with_work_queued(
        store: Store) -> None:
    farm = PowerFarm(store, 2, replace(FAST, idle_suspend=60))

    async def body() -> int:
        d = farm.places["s0"]
        d.drained = True  # type: ignore[attr-defined]
        d.set_state("draining")
        job = farm.add(6)
        await farm.until(lambda: farm.done(job))
        await farm.until(lambda: d.state == "asleep")
        return job

    job = running(farm)(body)
    assert all(t.slave == "s1" for t in store.tasks(job))
    assert farm.places["s1"].state == "online"  # idle_suspend is an hour here
