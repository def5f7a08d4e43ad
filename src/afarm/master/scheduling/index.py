# SPDX-License-Identifier: MIT
"""The runnable work in memory, indexed by what a scheduling decision asks.

Jobs are kept in priority order (higher first, then older); within a job each place a task
runs (`slave` or `master`) has a heap of runnable tasks by index. Tasks waiting for
dependencies are counted down as those complete. A decision therefore looks at the first
jobs in order and the top of a heap, whatever the length of the queue; SQLite stays the
durable record and this index is rebuilt from it at start and after bulk job actions.
"""

import bisect
import heapq
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from afarm.store.db import JobRow, RunnableRow


@dataclass(frozen=True)
class Candidate:
    """What the index hands out: enough to fetch the task and start it."""

    task_id: int
    job_id: int
    idx: int
    application: str


@dataclass
class _Job:
    job_id: int
    priority: int
    tags: frozenset[str]
    heaps: dict[str, list[tuple[int, int, str]]] = field(default_factory=dict)  # runs_on ->
    waiting: int = 0  # tasks of this job waiting for dependencies

    @property
    def key(self) -> tuple[int, int]:
        return (-self.priority, self.job_id)

    def empty(self) -> bool:
        return not self.waiting and not any(self.heaps.values())


@dataclass(frozen=True)
class SlaveView:
    """What decides whether a slave may take a task: its name, tags and applications."""

    name: str
    tags: frozenset[str]
    applications: frozenset[str] | None  # None: unknown yet, any


class RunnableIndex:
    def __init__(self) -> None:
        self._jobs: dict[int, _Job] = {}
        self._order: list[tuple[int, int]] = []  # sorted job keys
        self._waiting: dict[int, tuple[int, int, int, str, str]] = {}  # task -> (left,
        #                                                     job, idx, runs_on, application)
        self._dependents: dict[int, list[int]] = {}  # dependency -> waiting tasks
        self._failed_on: dict[int, set[str]] = {}
        self._blocked: dict[int, set[str]] = {}  # job -> blocklisted slaves
        self._excluded: dict[int, frozenset[str]] = {}  # job -> slaves its rules leave out

    # -- loading --------------------------------------------------------------------------
    def load(self, jobs: Iterable[JobRow], rows: Iterable[RunnableRow],
             dependencies: Iterable[tuple[int, int]], failed_on: Iterable[tuple[int, str]],
             blocklist: Iterable[tuple[int, str]]) -> None:
        """Add jobs and their tasks (from the store); replaces what the index had of them."""
        jobs_list = list(jobs)
        for j in jobs_list:
            self.drop_job(j.job_id)
            self._jobs[j.job_id] = _Job(j.job_id, j.priority, j.tags)
        rows = list(rows)
        for r in rows:  # the store's failures replace what the index knew of these tasks
            self._failed_on.pop(r.task_id, None)
        for r in rows:
            job = self._jobs.get(r.job_id)
            if job is None:
                continue
            if r.waiting:
                self._waiting[r.task_id] = (r.waiting, r.job_id, r.idx, r.runs_on,
                                            r.application)
                job.waiting += 1
            else:
                job.heaps.setdefault(r.runs_on, []).append((r.idx, r.task_id, r.application))
        for task, dep in dependencies:
            if task in self._waiting:
                self._dependents.setdefault(dep, []).append(task)
        for task, slave in failed_on:
            self._failed_on.setdefault(task, set()).add(slave)
        for job_id, slave in blocklist:
            self._blocked.setdefault(job_id, set()).add(slave)
        loaded = []
        for j in jobs_list:
            job = self._jobs[j.job_id]
            for heap in job.heaps.values():
                heapq.heapify(heap)
            if not job.empty():
                loaded.append(job.key)
        self._order = sorted(set(self._order) | set(loaded))

    def drop_job(self, job_id: int) -> None:
        job = self._jobs.pop(job_id, None)
        if job is None:
            return
        i = bisect.bisect_left(self._order, job.key)
        if i < len(self._order) and self._order[i] == job.key:
            del self._order[i]
        gone = [t for t, w in self._waiting.items() if w[1] == job_id] if job.waiting else []
        for t in gone:
            del self._waiting[t]
        self._blocked.pop(job_id, None)
        self._excluded.pop(job_id, None)

    # -- decisions ------------------------------------------------------------------------
    def take(self, runs_on: str, slave: SlaveView | None = None,
             accept: Callable[[int, str], bool] | None = None) -> Candidate | None:
        """Remove and return the most urgent task this slave may run, or None.

        `accept(job_id, application)` is a further per-job check (a version the slave has,
        say); the index itself checks tags, the blocklist and earlier failures.
        """
        for key in self._order:
            job = self._jobs[key[1]]
            heap = job.heaps.get(runs_on)
            if not heap:
                continue
            if slave is not None:
                if slave.name in self._blocked.get(job.job_id, ()):
                    continue
                if slave.name in self._excluded.get(job.job_id, ()):
                    continue
                if not job.tags <= slave.tags:
                    continue
            cand = self._pop_fitting(job, heap, slave, accept)
            if cand is not None:
                if job.empty():
                    self._remove_key(job)
                return cand
        return None

    def _pop_fitting(self, job: _Job, heap: list[tuple[int, int, str]],
                     slave: SlaveView | None,
                     accept: Callable[[int, str], bool] | None) -> Candidate | None:
        skipped: list[tuple[int, int, str]] = []
        found = None
        # Usually the top fits; a task this slave already failed (or an application it
        # lacks) is set aside and put back, so the scan stays short.
        while heap:
            idx, task_id, app = heapq.heappop(heap)
            if slave is not None and (
                    slave.name in self._failed_on.get(task_id, ())
                    or (slave.applications is not None and app not in slave.applications)
                    or (accept is not None and not accept(job.job_id, app))):
                skipped.append((idx, task_id, app))
                if len(skipped) > 64:
                    break
                continue
            found = Candidate(task_id, job.job_id, idx, app)
            break
        for item in skipped:
            heapq.heappush(heap, item)
        return found

    def _remove_key(self, job: _Job) -> None:
        i = bisect.bisect_left(self._order, job.key)
        if i < len(self._order) and self._order[i] == job.key:
            del self._order[i]

    def _ensure_key(self, job: _Job) -> None:
        i = bisect.bisect_left(self._order, job.key)
        if i >= len(self._order) or self._order[i] != job.key:
            self._order.insert(i, job.key)

    # -- changes --------------------------------------------------------------------------
    def put_back(self, job_id: int, task_id: int, idx: int, runs_on: str,
                 application: str) -> None:
        """A task runnable again (requeued, or soft-failed elsewhere)."""
        job = self._jobs.get(job_id)
        if job is None:
            return  # the job left the index (paused, canceled): it is reloaded on resume
        heapq.heappush(job.heaps.setdefault(runs_on, []), (idx, task_id, application))
        self._ensure_key(job)

    def failed_on(self, task_id: int, slave: str) -> None:
        self._failed_on.setdefault(task_id, set()).add(slave)

    def blocklist(self, job_id: int, slave: str) -> None:
        self._blocked.setdefault(job_id, set()).add(slave)

    def completed(self, task_id: int) -> list[int]:
        """A task completed: release the tasks that waited only for it; returns them."""
        self._failed_on.pop(task_id, None)
        released = []
        for t in self._dependents.pop(task_id, []):
            w = self._waiting.get(t)
            if w is None:
                continue
            left, job_id, idx, runs_on, app = w
            if left > 1:
                self._waiting[t] = (left - 1, job_id, idx, runs_on, app)
                continue
            del self._waiting[t]
            job = self._jobs.get(job_id)
            if job is None:
                continue
            job.waiting -= 1
            heapq.heappush(job.heaps.setdefault(runs_on, []), (idx, t, app))
            self._ensure_key(job)
            released.append(t)
        return released

    def exclude(self, job_id: int, slaves: frozenset[str]) -> None:
        """Slaves that may not take this job's tasks for now (its minimums, or held back
        by its ranking policy); replaces the previous set."""
        if slaves:
            self._excluded[job_id] = slaves
        else:
            self._excluded.pop(job_id, None)

    def has_job(self, job_id: int) -> bool:
        return job_id in self._jobs

    def first_job(self) -> int | None:
        """The most urgent job with runnable work (its policy orders the pass)."""
        return self._order[0][1] if self._order else None

    def runnable(self, job_id: int, runs_on: str = "slave") -> int:
        """How many tasks of a job could start now on `runs_on` (tail avoidance asks)."""
        job = self._jobs.get(job_id)
        return len(job.heaps.get(runs_on, ())) if job else 0

    def job_tags(self, job_id: int) -> frozenset[str] | None:
        job = self._jobs.get(job_id)
        return job.tags if job else None

    def demand(self, runs_on: str = "slave") -> dict[frozenset[str], int]:
        """Tasks that could start now on `runs_on`, by the tags their jobs require (the
        power manager wakes slaves for them)."""
        out: dict[frozenset[str], int] = {}
        for job in self._jobs.values():
            n = len(job.heaps.get(runs_on, ()))
            if n:
                out[job.tags] = out.get(job.tags, 0) + n
        return out

    def demand_by_job(self, runs_on: str = "slave") -> list[tuple[int, frozenset[str], str,
                                                                  int]]:
        """Most urgent first, each job with tasks that could start now on `runs_on`: its
        id, the tags it requires, the application of its next task and how many tasks
        (the power manager wakes only slaves that can take them)."""
        out = []
        for key in self._order:
            job = self._jobs[key[1]]
            heap = job.heaps.get(runs_on)
            if heap:
                out.append((job.job_id, job.tags, heap[0][2], len(heap)))
        return out
