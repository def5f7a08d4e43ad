# SPDX-License-Identifier: MIT
"""The event-driven scheduler: hands runnable tasks to places with free slots, applies what
comes back, and writes every decision to the store before any slave hears of it.

There is no polling interval: a new job, a finished task or a slave coming online wakes it,
and one pass applies every outcome that arrived (in one transaction) and then makes every
decision it can (in one more). A decision costs the same however long the queue is: the
runnable work sits in a RunnableIndex, not in a query.
"""

import asyncio
import dataclasses
import logging
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from afarm.gpu import PARAM as GPU_PARAM
from afarm.master.scheduling.gpu_slots import GpuSlots, gpu_count
from afarm.master.scheduling.index import Candidate, RunnableIndex, SlaveView
from afarm.master.scheduling.placement import MIB, Placement
from afarm.master.scheduling.properties import Properties
from afarm.master.scheduling.ranking import Policy, Ranking, tail_defers
from afarm.master.slaves.link import Outcome
from afarm.master.slaves.power import Demand
from afarm.model.job import Job, Task
from afarm.model.policy import FailureDecision, FailurePolicy, decide_failure
from afarm.model.status import TaskStatus
from afarm.protocol.messages import TaskReply
from afarm.store.db import Store

log = logging.getLogger(__name__)
MASTER = "master"


class Place(Protocol):
    """Where tasks run: a slave's link, or the master itself for follow-ups."""

    name: str
    slots: int
    state: str
    running: dict[int, "asyncio.Task[None]"]

    @property
    def free_slots(self) -> int: ...

    @property
    def tags(self) -> list[str]: ...

    @property
    def applications(self) -> frozenset[str] | None: ...

    def mark_busy(self, task_id: int, job: "asyncio.Task[None]") -> None: ...

    def mark_free(self, task_id: int) -> None: ...

    def cancel(self, task_id: int, attempt: int) -> None: ...

    async def run(self, task: Task, attempt: int, job: Job, timeout: int,
                  partial: Callable[[str], Path]) -> Outcome: ...

    async def stop(self) -> None: ...


class Results(Protocol):
    """What the scheduler needs done with a task's files and log (master/results.py)."""

    def partial_for(self, task: Task, attempt: int) -> Callable[[str], Path]: ...

    def publish(self, task: Task, got: dict[str, Path]) -> None: ...

    def discard(self, task: Task, attempt: int) -> None: ...

    def write_log(self, task: Task, attempt: int, slave: str, reply: TaskReply | None,
                  reason: str) -> None: ...


class Scheduler:
    def __init__(self, store: Store, results: Results, policy: FailurePolicy,
                 timeout_of: Callable[[Task, Job], int]) -> None:
        self.store = store
        self.results = results
        self.policy = policy
        self.timeout_of = timeout_of
        self.places: dict[str, Place] = {}
        self.master: Place | None = None
        self.index = RunnableIndex()
        self.decisions = 0
        self._outcomes: list[tuple[Place, Task, int, Outcome]] = []
        self._wake = asyncio.Event()
        self._loop_task: asyncio.Task[None] | None = None
        self._jobs: dict[int, Job] = {}  # jobs with tasks running, for their files
        # Told of every attempt's outcome inside the transaction that applies it (energy).
        self.meter: Callable[[str, Task, int, Outcome], None] | None = None
        self.placement = Placement(store.clock)
        self.gpu = GpuSlots()  # which device each running GPU task holds
        # The pool version a job runs ("" none), for slaves quarantined for a version.
        self.version_of: Callable[[int], str] = lambda job_id: ""
        self._versions: dict[int, str] = {}
        # The architectures a pool version exists for ("all" fits any); None: any (no
        # pool). A slave whose architecture is not among them is never given its tasks.
        self.version_arches: Callable[[str, str], frozenset[str] | None] = \
            lambda app, version: None
        self._arches: dict[str, frozenset[str] | None] = {}
        self._gpu_jobs: set[int] = set()  # jobs that asked for GPU rendering

    def configure_ranking(self, properties: Properties, policy: str,
                          policies: dict[str, Policy] | None = None) -> None:
        """The slaves' properties and the site's policy (master.conf [scheduler] policy)."""
        self.placement.configure(properties, policy, policies)

    @property
    def properties(self) -> Properties:
        return self.placement.properties

    @property
    def policies(self) -> dict[str, Policy]:
        return self.placement.policies

    @property
    def ranking_policy(self) -> Policy:
        return self.placement.site_policy

    # -- life cycle -----------------------------------------------------------------------
    def load(self) -> None:
        """Rebuild the index from the store (at start)."""
        s = self.store
        rows = s.runnable_rows()
        waiting = [r.task_id for r in rows if r.waiting]
        self.index = RunnableIndex()
        jobs = s.job_rows()
        for j in jobs:
            self._job_settings(j.job_id, j.scheduling)
        self.index.load(jobs, rows, s.dependents(waiting),
                        s.failed_on([r.task_id for r in rows]), s.blocklist())

    def start(self) -> None:
        self._loop_task = asyncio.create_task(self._loop())
        self.wake()

    async def stop(self) -> None:
        if self._loop_task is not None:
            self._loop_task.cancel()
            await asyncio.gather(self._loop_task, return_exceptions=True)
        running = [t for p in self.all_places() for t in p.running.values()]
        for t in running:
            t.cancel()
        await asyncio.gather(*running, return_exceptions=True)
        self.apply_outcomes()

    def all_places(self) -> list[Place]:
        return [*self.places.values(), *([self.master] if self.master else [])]

    def wake(self) -> None:
        self._wake.set()

    async def _loop(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            try:
                self.schedule_pass()
            except Exception:
                log.exception("scheduler pass failed")

    # -- jobs -----------------------------------------------------------------------------
    def job_added(self, job_id: int) -> None:
        self.reload_job(job_id)

    def reload_job(self, job_id: int) -> None:
        """After a bulk change of a job (added, resumed, requeued): index it afresh."""
        s = self.store
        self.index.drop_job(job_id)
        jobs = s.job_rows([job_id])
        for j in jobs:
            self._job_settings(j.job_id, j.scheduling)
        job = s.job(job_id)
        if job is None or job.status.value not in ("queued", "active"):
            self.wake()
            return
        rows = s.runnable_rows(job_id)
        self.index.load(jobs, rows, s.dependents([r.task_id for r in rows if r.waiting]),
                        s.failed_on([r.task_id for r in rows]), s.blocklist(job_id))
        self.wake()

    def drop_job(self, job_id: int) -> None:
        self.index.drop_job(job_id)
        self.placement.drop_job(job_id)
        self._versions.pop(job_id, None)
        self._gpu_jobs.discard(job_id)

    def _job_settings(self, job_id: int, scheduling: dict[str, Any]) -> None:
        """A job's ranking settings, with its frames per task (speed is in frames/s)."""
        if scheduling.get("device") == "GPU":
            self._gpu_jobs.add(job_id)
        else:
            self._gpu_jobs.discard(job_id)
        if not scheduling:
            self.placement.drop_job(job_id)
            return
        p = self.store.job_progress(job_id)
        per_task = p["frames_total"] / p["tasks"] if p["tasks"] and p["frames_total"] else 1
        self.placement.set_job(job_id, {**scheduling, "frames_per_task": per_task})

    def cancel_running(self, tasks: list[Task]) -> None:
        for task in tasks:
            place = self.places.get(task.slave or "") or (
                self.master if task.slave == MASTER else None)
            if place is not None:
                place.cancel(task.id, task.attempt)

    # -- one pass -------------------------------------------------------------------------
    def schedule_pass(self) -> None:
        self.apply_outcomes()
        decisions = self._decide()
        if not decisions:
            return
        started: list[tuple[Place, int, int]] = []
        with self.store.transaction():
            for place, cand in decisions:
                attempt = self.store.start_task(cand.task_id, place.name)
                if attempt is not None:
                    started.append((place, cand.task_id, attempt))
                else:
                    self.gpu.release(place.name, cand.task_id)
        self.decisions += len(started)
        for place, task_id, attempt in started:
            task = self.store.task(task_id)
            job = None if task is None else (
                self._jobs.get(task.job_id) or self.store.job(task.job_id))
            if task is None or job is None:
                self.gpu.release(place.name, task_id)
                continue
            self._jobs[job.id] = job
            device = self.gpu.device_of(place.name, task.id)
            if device is not None:  # the slave pins the task to it (afarm/gpu.py)
                task = dataclasses.replace(task, params={**task.params, GPU_PARAM: device})
            place.mark_busy(task.id, asyncio.create_task(
                self._execute(place, task, attempt, job)))

    # -- ranking --------------------------------------------------------------------------
    def ranking(self, policy: Policy | None = None, job: Job | None = None) -> Ranking:
        """The slaves ranked now (by the site's policy unless another is given), for a
        job if given: what `afarmctl slaves --rank` shows."""
        return self.placement.ranking(self.places, self.index, policy, job)

    def ranked_places(self) -> tuple[list[Place], dict[str, float]]:
        """The slaves best first under the most urgent job's policy, and their speeds."""
        first = self.index.first_job()
        policy = self.placement.policy_of(first)

        def head() -> Job | None:
            if first is None:
                return None
            job = self._jobs.get(first) or self.store.job(first)
            if job is not None:
                self._jobs[first] = job
            return job

        names, speed = self.placement.order(self.places, policy, head)
        return [self.places[n] for n in names], speed

    def _decide(self) -> list[tuple[Place, Candidate]]:
        decisions: list[tuple[Place, Candidate]] = []
        self.placement.apply_job_rules(self.places, self.index)
        ranked, speeds = self.ranked_places()
        # Speeds of the busy slots, ascending, for tail avoidance.
        busy = np.sort(np.array([speeds.get(p.name, math.nan) for p in ranked
                                 for _ in range(len(p.running))], dtype=float))
        busy = busy[np.isfinite(busy)]
        gpu_jobs = self._gpu_jobs
        cpu_only = (lambda job_id, app: job_id not in gpu_jobs) if gpu_jobs else None
        for place in ranked:
            view = SlaveView(place.name, frozenset(place.tags), place.applications)
            accept = self._version_filter(place, cpu_only)
            # GPU tasks run besides the CPU slots, not in them (those running are counted
            # in place.running; those decided in this pass are not yet).
            free = place.free_slots + self.gpu.held(place.name) \
                if place.state in ("online", "busy") else 0
            if gpu_jobs and place.state in ("online", "busy"):
                decisions += self._decide_gpu(place, view)
            if free <= 0:
                continue
            speed = speeds.get(place.name, math.nan)
            for _ in range(free):
                cand = self.index.take("slave", view, accept)
                if cand is None:
                    break
                if len(busy) and tail_defers(speed, self.index.runnable(cand.job_id) + 1,
                                             busy):
                    self.index.put_back(cand.job_id, cand.task_id, cand.idx, "slave",
                                        cand.application)
                    break
                decisions.append((place, cand))
        if self.master is not None:
            for _ in range(self.master.free_slots):
                cand = self.index.take("master")
                if cand is None:
                    break
                decisions.append((self.master, cand))
        return decisions

    def power_demand(self) -> list[Demand]:
        """The queued work as the power manager weighs it: per job, its tags, application,
        pool version (and the architectures it exists for), --min-memory and GPUs, most
        urgent first."""
        out = []
        for job_id, tags, app, n in self.index.demand_by_job("slave"):
            settings = self.placement.jobs.get(job_id, {})
            version = self._versions.get(job_id)
            if version is None:
                version = self._versions[job_id] = self.version_of(job_id)
            gpus = int(settings.get("gpus") or 0)
            if job_id in self._gpu_jobs:
                gpus = max(gpus, 1)
            out.append(Demand(tags, n, app, version,
                              float(settings.get("min_memory_mib") or 0) * MIB, gpus,
                              self.arches_of(app, version) if version else None))
        return out

    def versions_changed(self) -> None:
        """A pool version was added or removed: its architectures are looked up again."""
        self._arches.clear()

    def arches_of(self, app: str, version: str) -> frozenset[str] | None:
        key = f"{app}/{version}"
        if key not in self._arches:
            self._arches[key] = self.version_arches(app, version)
        return self._arches[key]

    def _version_filter(self, place: Place, then: Callable[[int, str], bool] | None
                        ) -> Callable[[int, str], bool] | None:
        """`then`, and not the tasks of jobs that run a pool version this slave cannot:
        one it is quarantined for (it failed its acceptance test there), or one that does
        not exist for its architecture (filtered here like tags, not failed at install)."""
        bad: dict[str, str] = getattr(place, "quarantined", {})
        arch: str | None = getattr(place, "arch", None)
        if not bad and arch is None:
            return then

        def accept(job_id: int, app: str) -> bool:
            if then is not None and not then(job_id, app):
                return False
            version = self._versions.get(job_id)
            if version is None:
                version = self._versions[job_id] = self.version_of(job_id)
            if not version:
                return True
            if f"{app}/{version}" in bad:
                return False
            if arch is not None:
                arches = self.arches_of(app, version)
                if arches is not None and arch not in arches and "all" not in arches:
                    return False
            return True
        return accept

    def _decide_gpu(self, place: Place, view: SlaveView) -> list[tuple[Place, Candidate]]:
        """GPU tasks onto this slave's free GPUs, one task per device, each pinned to it."""
        out: list[tuple[Place, Candidate]] = []
        gpu_jobs = self._gpu_jobs
        # A definition's own `gpus` first, as the ranking's properties take it.
        count = int(self.properties.static.get(place.name, {}).get("gpus", 0)) \
            or gpu_count(place)
        count = min(count, 64)
        for device in self.gpu.free_devices(place.name, count):
            cand = self.index.take("slave", view, lambda job_id, app: job_id in gpu_jobs)
            if cand is None:
                break
            self.gpu.take(place.name, cand.task_id, device)
            out.append((place, cand))
        return out

    def gpu_device(self, slave: str, task_id: int) -> int | None:
        """The GPU a running task is pinned to on `slave` (None: a CPU task); the link
        sends it to the agent, which sets CUDA_VISIBLE_DEVICES and the Cycles device."""
        return self.gpu.device_of(slave, task_id)

    async def _execute(self, place: Place, task: Task, attempt: int, job: Job) -> None:
        started = time.monotonic()
        try:
            outcome = await place.run(task, attempt, job, self.timeout_of(task, job),
                                      self.results.partial_for(task, attempt))
        except asyncio.CancelledError:
            outcome = Outcome("canceled", "master is stopping")
        except Exception as exc:  # a bug in a link must not strand the task
            log.exception("running task %d on %s failed", task.id, place.name)
            outcome = Outcome("failed", f"internal error on the master: {exc!r}")
        if place is not self.master and outcome.kind in ("done", "failed"):
            self.properties.record(place.name, time.monotonic() - started, task.frames,
                                   outcome.kind == "done")
        self._outcomes.append((place, task, attempt, outcome))
        self.wake()

    # -- outcomes -------------------------------------------------------------------------
    def apply_outcomes(self) -> None:
        batch, self._outcomes = self._outcomes, []
        if not batch:
            return
        with self.store.transaction():
            for place, task, attempt, outcome in batch:
                try:
                    self._apply(place, task, attempt, outcome)
                finally:
                    place.mark_free(task.id)
                    self.gpu.release(place.name, task.id)
                    self.results.discard(task, attempt)
        if len(self._jobs) > 1000:
            self._jobs.clear()  # only a cache of job records; refilled on demand

    def _apply(self, place: Place, task: Task, attempt: int, outcome: Outcome) -> None:
        s = self.store
        if self.meter is not None:  # every attempt used energy, whatever its outcome
            self.meter(place.name, task, attempt, outcome)
        if outcome.reply is not None or outcome.kind == "failed":
            self.results.write_log(task, attempt, place.name, outcome.reply, outcome.reason)
        if outcome.kind == "done":
            if not s.lease_valid(task.id, attempt):
                log.info("discarded a late result of task %d attempt %d from %s",
                         task.id, attempt, place.name)
                return
            missing = [o for o in task.outputs if o not in outcome.got]
            if missing:
                self.fail(task, attempt, None if place.name == MASTER else place.name,
                          f"output {missing[0]} did not arrive")
                return
            warnings = outcome.reply.warnings if outcome.reply is not None else []
            if warnings and self._strict(task.job_id):
                # The file lacks what it needs: every slave would render it the same wrong
                # way, so the task fails for good without blaming this slave.
                self.fail_for_good(task, attempt, "--strict: the task had warnings: "
                                   + warnings[0])
                return
            # No await between the lease check and the renames: a late result from a slave
            # the master already gave up on can never replace a frame.
            self.results.publish(task, outcome.got)
            if s.complete_task(task, attempt, warnings):
                self.index.completed(task.id)
            return
        if outcome.kind in ("gone", "canceled"):
            if s.requeue_task(task, attempt, outcome.reason):
                self.index.put_back(task.job_id, task.id, task.idx, task.runs_on,
                                    task.application)
            return
        if outcome.reason == "canceled" and not s.lease_valid(task.id, attempt):
            return  # the job was canceled: the slave only confirms it stopped
        self.fail(task, attempt, None if place.name == MASTER else place.name, outcome.reason)

    def _strict(self, job_id: int) -> bool:
        return self.store.job_is_strict(job_id)

    def fail_for_good(self, task: Task, attempt: int, reason: str) -> None:
        """A failure no other slave would avoid (the job's own input is at fault)."""
        if self.store.fail_task(task, attempt, None, reason,
                                FailureDecision(TaskStatus.FAILED, False)) is not None:
            log.info("task %d (%s) failed: %s", task.id, task.label, reason)
            self.index.drop_job(task.job_id)

    def fail(self, task: Task, attempt: int, slave: str | None, reason: str) -> None:
        s = self.store
        failed_on: set[str] = set()
        blocked: set[str] = set()
        n = 0
        if slave is not None:
            n, failed_on, blocked = s.failure_facts(task, slave)
            n += 1
            failed_on = failed_on | {slave}
        eligible = {name for name, p in self.places.items()
                    if frozenset(self.index.job_tags(task.job_id) or ()) <= set(p.tags)}
        decision = decide_failure(self.policy, slave=slave, failures_in_job=n,
                                  failed_on=failed_on, blocked=blocked, eligible=eligible)
        new = s.fail_task(task, attempt, slave, reason, decision)
        if new is None:
            return
        log.info("task %d (%s) %s on %s: %s", task.id, task.label, new, slave or MASTER,
                 reason)
        if slave is not None:
            self.index.failed_on(task.id, slave)
            if decision.blocklist:
                self.index.blocklist(task.job_id, slave)
        if new == TaskStatus.SOFT_FAILED:
            self.index.put_back(task.job_id, task.id, task.idx, task.runs_on,
                                task.application)
        else:
            self.index.drop_job(task.job_id)  # one failed task fails the job
