# SPDX-License-Identifier: MIT
"""Jobs, tasks, slaves and the event log in SQLite (WAL); every SQL statement lives here.

The store records facts and keeps them consistent; it decides nothing. Which task runs
where is the scheduler's business (master/scheduling/), what a failure means is
model/policy.py's. Events are written inside the transaction that caused them and handed to
listeners only after its COMMIT, so nobody hears of a change that was rolled back.
"""

import json
import sqlite3
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from afarm.errors import IllegalTransition
from afarm.model.job import InputFile, Job, JobSpec, Task, TaskSpec
from afarm.model.policy import FailureDecision
from afarm.model.status import (
    RUNNABLE,
    JobStatus,
    TaskStatus,
    derive_job_status,
    job_transition_is_legal,
    may_move,
)
from afarm.store import benchmarks
from afarm.store.schema import migrate

EventHook = Callable[[dict[str, Any]], None]
MAX_TASK_WARNINGS = 20  # stored per task (one more line may say how many were left out)
MAX_WARNING_CHARS = 1000
_TASK_COLUMNS = (
    "id, job_id, idx, kind, label, application, runs_on, params, inputs, outputs, status,"
    " attempt, slave, started, finished, error, frames"
)
SUBMITTING = "submitting"  # a job whose tasks are still being written: invisible to all
_MAX_ID = (1 << 63) - 1  # SQLite's largest integer: "before" no job


@dataclass(frozen=True)
class JobPage:
    """One page of the jobs, newest first (see Store.job_page)."""

    jobs: list[Job]
    older: int | None  # `before` of the next, older page; None: this page has the oldest
    total: int  # every job, on this page or another


@dataclass(frozen=True)
class RunnableRow:
    """What the scheduler's in-memory index needs of a task that may run (now or later)."""

    task_id: int
    job_id: int
    idx: int
    runs_on: str
    application: str
    waiting: int  # dependencies not completed yet


@dataclass(frozen=True)
class JobRow:
    """What the scheduler needs of a job: its order and its constraints."""

    job_id: int
    priority: int
    tags: frozenset[str]
    scheduling: dict[str, Any] = field(default_factory=dict)


def _marks(values: Iterable[Any]) -> tuple[str, list[Any]]:
    vals = [v.value if isinstance(v, TaskStatus | JobStatus) else v for v in values]
    return "(" + ",".join("?" * len(vals)) + ")", vals


class _Counts:
    """A job's task counts by status plus its frame counts, kept up to date incrementally
    so progress and the job's status never need a scan of its tasks."""

    def __init__(self) -> None:
        self.job_status: str | None = None  # as stored, once read
        self.by_status: Counter[str] = Counter()
        self.frames_total = 0
        self.frames_done = 0

    def move(self, old: str | None, new: str, frames: int, kind: str) -> None:
        if old is not None:
            self.by_status[old] -= 1
        self.by_status[new] += 1
        if kind == "render":
            if old == TaskStatus.COMPLETED.value:
                self.frames_done -= frames
            if new == TaskStatus.COMPLETED.value:
                self.frames_done += frames


class Store:
    """One connection, used from the master's event-loop thread only."""

    def __init__(self, path: str | Path, *, on_event: EventHook | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.path = str(path)
        self.clock = clock  # every time the store records comes from here
        # isolation_level=None: we open transactions ourselves, so a job and its tasks are
        # one BEGIN IMMEDIATE ... COMMIT and nothing commits behind our back.
        self.db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self.db.row_factory = sqlite3.Row
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")
        self.db.execute("PRAGMA foreign_keys=ON")
        self.db.execute("PRAGMA busy_timeout=5000")
        migrate(self.db)
        self.on_event = on_event
        self.commits = 0
        self._depth = 0
        self._pending: list[dict[str, Any]] = []
        self._counts: dict[int, _Counts] = {}

    def close(self) -> None:
        self.db.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """BEGIN IMMEDIATE ... COMMIT; nested uses join the outer transaction, so a caller
        can batch many decisions into one commit."""
        if self._depth:
            self._depth += 1
            try:
                yield self.db
            finally:
                self._depth -= 1
            return
        self.db.execute("BEGIN IMMEDIATE")
        self._depth = 1
        try:
            yield self.db
        except BaseException:
            self._depth = 0
            self.db.execute("ROLLBACK")
            self._pending.clear()
            self._counts.clear()  # counts may hold moves that were rolled back
            raise
        self._depth = 0
        self.db.execute("COMMIT")
        self.commits += 1
        events, self._pending = self._pending, []
        for ev in events:
            self._fire(ev)

    # -- events -------------------------------------------------------------------------
    def _fire(self, event: dict[str, Any]) -> None:
        if self.on_event is not None:
            self.on_event(event)

    def _event(self, kind: str, message: str, *, job_id: int | None = None,
               task_id: int | None = None, slave: str | None = None,
               data: dict[str, Any] | None = None) -> None:
        now = self.clock()
        cur = self.db.execute(
            "INSERT INTO events(at, kind, job_id, task_id, slave, message, data)"
            " VALUES (?,?,?,?,?,?,?)",
            (now, kind, job_id, task_id, slave, message, json.dumps(data or {})),
        )
        ev = {"id": cur.lastrowid, "at": now, "kind": kind, "job": job_id, "task": task_id,
              "slave": slave, "message": message, **(data or {})}
        if self._depth:
            self._pending.append(ev)
        else:
            self._fire(ev)

    def events(self, after: int = 0, limit: int = 1000,
               job_id: int | None = None) -> list[dict[str, Any]]:
        sql = "SELECT * FROM events WHERE id > ?"
        args: list[Any] = [after]
        if job_id is not None:
            sql += " AND job_id = ?"
            args.append(job_id)
        rows = self.db.execute(sql + " ORDER BY id LIMIT ?", (*args, limit)).fetchall()
        return [{"id": r["id"], "at": r["at"], "kind": r["kind"], "job": r["job_id"],
                 "task": r["task_id"], "slave": r["slave"], "message": r["message"],
                 **json.loads(r["data"])} for r in rows]

    def last_event_id(self) -> int:
        """The newest event's id (0 without events): where a live page starts listening."""
        return int(self.db.execute("SELECT COALESCE(MAX(id), 0) FROM events").fetchone()[0])

    # -- files --------------------------------------------------------------------------
    def add_file(self, sha256: str, size: int) -> None:
        self.db.execute("INSERT OR IGNORE INTO files(sha256, size, added) VALUES (?,?,?)",
                        (sha256, size, self.clock()))

    def unreferenced_files(self, older_than: float) -> list[str]:
        """Uploads no job names, stored before `older_than` (a time)."""
        rows = self.db.execute(
            "SELECT sha256 FROM files f WHERE added < ? AND NOT EXISTS"
            " (SELECT 1 FROM job_files j WHERE j.sha256 = f.sha256)", (older_than,))
        return [r[0] for r in rows]

    def forget_file(self, sha256: str) -> None:
        self.db.execute("DELETE FROM files WHERE sha256=? AND NOT EXISTS"
                        " (SELECT 1 FROM job_files j WHERE j.sha256 = files.sha256)",
                        (sha256,))

    # -- jobs ---------------------------------------------------------------------------
    def add_job(self, spec: JobSpec, plan: list[TaskSpec]) -> int:
        """Store a job with all its tasks atomically; returns the job id."""
        with self.transaction():
            job_id = self.begin_job(spec)
            self.add_tasks(job_id, plan, 0, [])
            self.finish_job(job_id, len(plan))
        return job_id

    def begin_job(self, spec: JobSpec) -> int:
        """A job row nobody sees until finish_job; large plans are written in several
        transactions between these two so the event loop is never blocked for long."""
        now = self.clock()
        with self.transaction() as db:
            cur = db.execute(
                "INSERT INTO jobs(name, application, params, priority, status, created,"
                " updated, error, timeout, tags, scheduling, app_version)"
                " VALUES (?,?,?,?,?,?,?,'',?,?,?,?)",
                (spec.name, spec.application, json.dumps(spec.params), spec.priority,
                 SUBMITTING, now, now, spec.timeout, json.dumps(sorted(spec.tags)),
                 json.dumps(spec.scheduling), spec.app_version),
            )
            job_id = int(cur.lastrowid or 0)
            if spec.strict:
                db.execute("UPDATE jobs SET strict=1 WHERE id=?", (job_id,))
            db.executemany(
                "INSERT INTO job_files(job_id, name, sha256, size) VALUES (?,?,?,?)",
                [(job_id, f.name, f.sha256, f.size) for f in spec.files],
            )
        return job_id

    def add_tasks(self, job_id: int, plan: list[TaskSpec], start: int,
                  ids: list[int]) -> None:
        """Write plan[start:] (indices are the plan's); `ids` collects the new task ids so
        dependencies on earlier parts of the plan resolve."""
        now = self.clock()
        with self.transaction() as db:
            for idx in range(start, len(plan)):
                t = plan[idx]
                cur = db.execute(
                    "INSERT INTO tasks(job_id, idx, kind, label, application, runs_on,"
                    " params, inputs, outputs, status, attempt, error, frames, updated)"
                    " VALUES (?,?,?,?,?,?,?,?,?,?,0,'',?,?)",
                    (job_id, idx, t.kind, t.label, t.application, t.runs_on,
                     json.dumps(t.params), json.dumps(t.inputs), json.dumps(t.outputs),
                     TaskStatus.QUEUED.value, t.frames, now),
                )
                ids.append(int(cur.lastrowid or 0))
            db.executemany(
                "INSERT INTO task_deps(task_id, dep_id) VALUES (?,?)",
                [(ids[i], ids[d]) for i in range(start, len(plan)) for d in plan[i].depends],
            )

    def finish_job(self, job_id: int, n_tasks: int) -> None:
        with self.transaction() as db:
            db.execute("UPDATE jobs SET status=?, updated=? WHERE id=? AND status=?",
                       (JobStatus.QUEUED.value, self.clock(), job_id, SUBMITTING))
            name = db.execute("SELECT name FROM jobs WHERE id=?", (job_id,)).fetchone()[0]
            self._event("job-accepted", f"job {job_id} {name!r}: {n_tasks} tasks",
                        job_id=job_id, data={"status": JobStatus.QUEUED.value})

    def drop_unfinished_submissions(self) -> int:
        """Jobs whose submission never finished (the master died while writing them): the
        client never heard "accepted", so they are removed, not run."""
        with self.transaction() as db:
            ids = [r[0] for r in db.execute("SELECT id FROM jobs WHERE status=?",
                                            (SUBMITTING,))]
            for job_id in ids:
                db.execute("DELETE FROM task_deps WHERE task_id IN"
                           " (SELECT id FROM tasks WHERE job_id=?)", (job_id,))
                db.execute("DELETE FROM tasks WHERE job_id=?", (job_id,))
                db.execute("DELETE FROM job_files WHERE job_id=?", (job_id,))
                db.execute("DELETE FROM jobs WHERE id=?", (job_id,))
        return len(ids)

    def _job(self, row: sqlite3.Row) -> Job:
        files = [InputFile(r["name"], r["sha256"], r["size"]) for r in self.db.execute(
            "SELECT name, sha256, size FROM job_files WHERE job_id=? ORDER BY rowid",
            (row["id"],))]
        return Job(row["id"], row["name"], row["application"], json.loads(row["params"]),
                   row["priority"], JobStatus(row["status"]), row["created"], row["updated"],
                   row["error"], row["timeout"], files, tags=json.loads(row["tags"]),
                   scheduling=json.loads(row["scheduling"]), app_version=row["app_version"])

    def job(self, job_id: int) -> Job | None:
        row = self.db.execute("SELECT * FROM jobs WHERE id=? AND status!=?",
                              (job_id, SUBMITTING)).fetchone()
        return self._job(row) if row else None

    def jobs(self, limit: int = 200, before: int | None = None) -> list[Job]:
        """The newest ``limit`` jobs, with an id below ``before`` if given. Keyset paging on
        the primary key: a page costs the same with 100 jobs or a million (no OFFSET)."""
        rows = self.db.execute("SELECT * FROM jobs WHERE status!=? AND id<? ORDER BY id DESC"
                               " LIMIT ?", (SUBMITTING, _MAX_ID if before is None else before,
                                            max(0, limit)))
        return [self._job(r) for r in rows.fetchall()]

    def open_job_ids(self) -> list[int]:
        """Every job that may still run (queued, active, paused), however many jobs the
        store holds: slaves keep these jobs' task dirs."""
        marks, vals = _marks([JobStatus.QUEUED, JobStatus.ACTIVE, JobStatus.PAUSED])
        return [r[0] for r in self.db.execute(
            f"SELECT id FROM jobs WHERE status IN {marks} ORDER BY id", vals)]

    def running_job_ids(self) -> list[int]:
        """Queued and active jobs, however far back: what a farm-wide progress sums."""
        marks, vals = _marks([JobStatus.QUEUED, JobStatus.ACTIVE])
        return [r[0] for r in self.db.execute(
            f"SELECT id FROM jobs WHERE status IN {marks} ORDER BY id", vals)]

    def job_page(self, limit: int = 200, before: int | None = None) -> JobPage:
        """A page of jobs, newest first, and what a client needs to say the list is cut:
        the ``before`` of the next older page and how many jobs there are in all."""
        found = self.jobs(limit + 1, before)
        older = found[limit - 1].id if len(found) > limit and limit > 0 else None
        return JobPage(found[:limit], older, self.job_count())

    def job_count(self) -> int:
        """All jobs (submissions still being written left out)."""
        return int(self.db.execute("SELECT COUNT(*) FROM jobs WHERE status!=?",
                                   (SUBMITTING,)).fetchone()[0])

    def jobs_needing_version(self, application: str, version: str) -> list[int]:
        """Unfinished jobs (queued, active, paused) that run this pool version."""
        marks, vals = _marks([JobStatus.QUEUED, JobStatus.ACTIVE, JobStatus.PAUSED,
                              SUBMITTING])
        return [r[0] for r in self.db.execute(
            f"SELECT id FROM jobs WHERE application=? AND app_version=? AND status IN {marks}",
            [application, version, *vals])]

    def job_rows(self, job_ids: Iterable[int] | None = None) -> list[JobRow]:
        """Order and constraints of runnable jobs (queued or active), or of the given ones."""
        if job_ids is None:
            marks, vals = _marks([JobStatus.QUEUED, JobStatus.ACTIVE])
            rows = self.db.execute(f"SELECT id, priority, tags, scheduling FROM jobs WHERE"
                                   f" status IN {marks}", vals)
        else:
            marks, vals = _marks(job_ids)
            rows = self.db.execute(f"SELECT id, priority, tags, scheduling FROM jobs WHERE id"
                                   f" IN {marks}", vals)
        return [JobRow(r[0], r[1], frozenset(json.loads(r[2])), json.loads(r[3]))
                for r in rows]

    def _counts_of(self, job_id: int) -> _Counts:
        c = self._counts.get(job_id)
        if c is None:
            c = _Counts()
            for r in self.db.execute("SELECT status, COUNT(*), COALESCE(SUM(frames), 0)"
                                     " FROM tasks WHERE job_id=? AND kind='render'"
                                     " GROUP BY status", (job_id,)):
                c.frames_total += r[2]
                if r[0] == TaskStatus.COMPLETED.value:
                    c.frames_done += r[2]
            for r in self.db.execute("SELECT status, COUNT(*) FROM tasks WHERE job_id=?"
                                     " GROUP BY status", (job_id,)):
                c.by_status[r[0]] = r[1]
            self._counts[job_id] = c
        return c

    def job_progress(self, job_id: int) -> dict[str, int]:
        c = self._counts_of(job_id)
        counts = {s.value: c.by_status.get(s.value, 0) for s in TaskStatus}
        counts["tasks"] = sum(counts.values())
        counts["frames_total"] = c.frames_total
        counts["frames_done"] = c.frames_done
        return counts

    # -- tasks --------------------------------------------------------------------------
    def _task(self, r: sqlite3.Row) -> Task:
        return Task(r["id"], r["job_id"], r["idx"], r["kind"], r["label"], r["application"],
                    r["runs_on"], json.loads(r["params"]), json.loads(r["inputs"]),
                    json.loads(r["outputs"]), TaskStatus(r["status"]), r["attempt"],
                    r["slave"], r["started"], r["finished"], r["error"], r["frames"])

    def task(self, task_id: int) -> Task | None:
        r = self.db.execute(f"SELECT {_TASK_COLUMNS} FROM tasks WHERE id=?",
                            (task_id,)).fetchone()
        return self._task(r) if r else None

    def tasks(self, job_id: int) -> list[Task]:
        rows = self.db.execute(f"SELECT {_TASK_COLUMNS} FROM tasks WHERE job_id=? ORDER BY idx",
                               (job_id,))
        return [self._task(r) for r in rows.fetchall()]

    def runnable_rows(self, job_id: int | None = None) -> list[RunnableRow]:
        """Tasks that may run now or once their dependencies complete, of runnable jobs."""
        marks, vals = _marks(RUNNABLE)
        jmarks, jvals = _marks([JobStatus.QUEUED, JobStatus.ACTIVE])
        sql = ("SELECT t.id, t.job_id, t.idx, t.runs_on, t.application,"
               " (SELECT COUNT(*) FROM task_deps d JOIN tasks u ON u.id = d.dep_id"
               "  WHERE d.task_id = t.id AND u.status != ?) AS waiting"
               f" FROM tasks t JOIN jobs j ON j.id = t.job_id WHERE t.status IN {marks}"
               f" AND j.status IN {jmarks}")
        args: list[Any] = [TaskStatus.COMPLETED.value, *vals, *jvals]
        if job_id is not None:
            sql += " AND t.job_id = ?"
            args.append(job_id)
        return [RunnableRow(*r) for r in self.db.execute(sql, args)]

    def _pairs_for(self, sql: str, task_ids: Iterable[int]) -> list[tuple[Any, Any]]:
        """Rows of `sql` (whose IN list is `{marks}`) for many tasks, a bounded IN at a time."""
        out: list[tuple[Any, Any]] = []
        ids = list(task_ids)
        for i in range(0, len(ids), 500):
            marks, vals = _marks(ids[i:i + 500])
            out += [(r[0], r[1]) for r in self.db.execute(sql.format(marks=marks), vals)]
        return out

    def dependents(self, task_ids: Iterable[int]) -> list[tuple[int, int]]:
        """(task, dependency) pairs for the given waiting tasks."""
        return self._pairs_for("SELECT task_id, dep_id FROM task_deps WHERE task_id IN {marks}",
                               task_ids)

    def failed_on(self, task_ids: Iterable[int]) -> list[tuple[int, str]]:
        """(task, slave) for every slave each of these tasks failed on."""
        return self._pairs_for("SELECT DISTINCT task_id, slave FROM task_failures"
                               " WHERE task_id IN {marks}", task_ids)

    def _move(self, task_id: int, new: TaskStatus, *, attempt: int | None = None,
              extra: str = "", args: tuple[Any, ...] = ()) -> sqlite3.Row | None:
        """Guarded update from a legal source status (and the current attempt), keeping the
        job's counts; returns the task's row as it was before, or None if not applied."""
        old = self.db.execute("SELECT job_id, status, attempt, kind, frames, slave, label"
                              " FROM tasks WHERE id=?", (task_id,)).fetchone()
        if old is None or not may_move(old["status"], new):
            return None
        if attempt is not None and old["attempt"] != attempt:
            return None
        self.db.execute(f"UPDATE tasks SET status=?, updated=?{extra} WHERE id=?",
                        (new.value, self.clock(), *args, task_id))
        c = self._counts.get(old["job_id"])
        if c is not None:
            c.move(old["status"], new.value, old["frames"], old["kind"])
        return old

    def start_task(self, task_id: int, slave: str) -> int | None:
        """Mark the task active on `slave`; returns the new attempt number (its lease), or
        None if the task is no longer runnable. Call inside a transaction to batch."""
        with self.transaction():
            old = self._move(task_id, TaskStatus.ACTIVE,
                             extra=", attempt=attempt+1, slave=?, started=?, finished=NULL",
                             args=(slave, self.clock()))
            if old is None:
                return None
            attempt = int(old["attempt"]) + 1
            self._event("task-active", f"task {task_id} ({old['label']}) on {slave}",
                        job_id=old["job_id"], task_id=task_id, slave=slave,
                        data={"status": "active", "attempt": attempt})
            self._refresh_job(old["job_id"])
        return attempt

    def lease_valid(self, task_id: int, attempt: int) -> bool:
        r = self.db.execute("SELECT 1 FROM tasks WHERE id=? AND attempt=? AND status=?",
                            (task_id, attempt, TaskStatus.ACTIVE.value)).fetchone()
        return r is not None

    def complete_task(self, task: Task, attempt: int,
                      warnings: Iterable[str] = ()) -> bool:
        """The attempt completed; its warnings replace any the task had before."""
        with self.transaction():
            old = self._move(task.id, TaskStatus.COMPLETED, attempt=attempt,
                             extra=", finished=?, error=''", args=(self.clock(),))
            if old is None:
                return False
            self._set_task_warnings(task, warnings)
            self._event("task-completed", f"task {task.id} ({task.label}) completed",
                        job_id=task.job_id, task_id=task.id, slave=old["slave"],
                        data={"status": "completed"})
            self._refresh_job(task.job_id)
        return True

    def _set_task_warnings(self, task: Task, warnings: Iterable[str]) -> None:
        self.db.execute("DELETE FROM task_warnings WHERE task_id=?", (task.id,))
        rows = [(task.id, task.job_id, i, str(w)[:MAX_WARNING_CHARS])
                for i, w in enumerate(list(warnings)[:MAX_TASK_WARNINGS + 1])]
        self.db.executemany("INSERT INTO task_warnings(task_id, job_id, seq, text)"
                            " VALUES (?,?,?,?)", rows)
        if rows:
            self._event("task-warnings", f"task {task.id} ({task.label}) completed with"
                        f" {len(rows)} warnings: {rows[0][3][:300]}", job_id=task.job_id,
                        task_id=task.id, data={"warnings": len(rows)})

    def task_warnings(self, job_id: int, limit: int = 100) -> tuple[list[dict[str, Any]], int]:
        """A job's distinct task warnings (text, how many tasks gave it, the first such
        task), at most `limit`, and the number of tasks with warnings."""
        rows = self.db.execute(
            "SELECT w.text, COUNT(DISTINCT w.task_id), MIN(w.task_id) FROM task_warnings w"
            " JOIN tasks t ON t.id = w.task_id WHERE w.job_id=? AND t.status=?"
            " GROUP BY w.text ORDER BY MIN(w.task_id), MIN(w.seq) LIMIT ?",
            (job_id, TaskStatus.COMPLETED.value, limit)).fetchall()
        return [{"warning": r[0], "tasks": r[1], "first_task": r[2]} for r in rows], \
            self.warned_tasks(job_id)

    def task_warning_counts(self, job_id: int) -> dict[int, int]:
        """How many warnings each of a job's tasks has (tasks without any are left out)."""
        return {r[0]: r[1] for r in self.db.execute(
            "SELECT task_id, COUNT(*) FROM task_warnings WHERE job_id=? GROUP BY task_id",
            (job_id,))}

    def job_is_strict(self, job_id: int) -> bool:
        """Whether the job was submitted with --strict (a task warning fails it)."""
        row = self.db.execute("SELECT strict FROM jobs WHERE id=?", (job_id,)).fetchone()
        return bool(row and row[0])

    def warned_tasks(self, job_id: int) -> int:
        """How many of a job's completed tasks have warnings."""
        return int(self.db.execute(
            "SELECT COUNT(DISTINCT w.task_id) FROM task_warnings w JOIN tasks t"
            " ON t.id = w.task_id WHERE w.job_id=? AND t.status=?",
            (job_id, TaskStatus.COMPLETED.value)).fetchone()[0])

    def requeue_task(self, task: Task, attempt: int, reason: str) -> bool:
        """Give an active task back to the queue without blaming its slave."""
        with self.transaction():
            old = self._move(task.id, TaskStatus.QUEUED, attempt=attempt,
                             extra=", slave=NULL, error=?", args=(reason,))
            if old is None:
                return False
            self._event("task-requeued", f"task {task.id} requeued: {reason}",
                        job_id=task.job_id, task_id=task.id, slave=old["slave"],
                        data={"status": "queued"})
            self._refresh_job(task.job_id)
        return True

    def failure_facts(self, task: Task, slave: str) -> tuple[int, set[str], set[str]]:
        """Failures of `slave` in this job, slaves this task failed on, slaves blocklisted
        for the job: what the failure policy needs (before this failure is recorded)."""
        n = self.db.execute("SELECT COUNT(*) FROM task_failures WHERE job_id=? AND slave=?",
                            (task.job_id, slave)).fetchone()[0]
        failed_on = {r[0] for r in self.db.execute(
            "SELECT DISTINCT slave FROM task_failures WHERE task_id=?", (task.id,))}
        blocked = {r[0] for r in self.db.execute(
            "SELECT slave FROM blocklist WHERE job_id=?", (task.job_id,))}
        return int(n), failed_on, blocked

    def fail_task(self, task: Task, attempt: int | None, slave: str | None, reason: str,
                  decision: FailureDecision) -> TaskStatus | None:
        """Record a failure and the policy's decision; None if the attempt is stale."""
        cur = self.db.execute("SELECT status, attempt FROM tasks WHERE id=?",
                              (task.id,)).fetchone()
        if cur is None or cur["status"] != TaskStatus.ACTIVE.value or (
                attempt is not None and cur["attempt"] != attempt):
            return None  # only the current attempt of an active task can fail
        with self.transaction():
            now = self.clock()
            if self._move(task.id, decision.status, attempt=attempt,
                          extra=", slave=NULL, finished=?, error=?", args=(now, reason)) is None:
                return None
            if slave is not None:
                self.db.execute("INSERT INTO task_failures(task_id, job_id, slave, at, reason)"
                                " VALUES (?,?,?,?,?)", (task.id, task.job_id, slave, now, reason))
                if decision.blocklist:
                    self.db.execute("INSERT OR IGNORE INTO blocklist(job_id, slave, at)"
                                    " VALUES (?,?,?)", (task.job_id, slave, now))
                    self._event("slave-blocklisted",
                                f"{slave} failed too many tasks of job {task.job_id};"
                                " blocklisted for it", job_id=task.job_id, slave=slave)
            new = decision.status
            self._event(f"task-{new.value}", f"task {task.id} ({task.label}) {new.value}:"
                        f" {reason}", job_id=task.job_id, task_id=task.id, slave=slave,
                        data={"status": new.value, "error": reason})
            self._refresh_job(task.job_id)
        return new

    def recover_active(self) -> int:
        """After a restart nobody runs anything: every active task goes back to the queue."""
        with self.transaction():
            rows = self.db.execute("SELECT id, job_id FROM tasks WHERE status=?",
                                   (TaskStatus.ACTIVE.value,)).fetchall()
            for r in rows:
                self.db.execute("UPDATE tasks SET status=?, slave=NULL, updated=?"
                                " WHERE id=?", (TaskStatus.QUEUED.value, self.clock(), r["id"]))
                self._event("task-requeued", f"task {r['id']} requeued: master restarted",
                            job_id=r["job_id"], task_id=r["id"], data={"status": "queued"})
            for job_id in {r["job_id"] for r in rows}:
                self._counts.pop(job_id, None)
                self._refresh_job(job_id)
        return len(rows)

    def blocklist(self, job_id: int | None = None) -> list[tuple[int, str]]:
        sql = "SELECT job_id, slave FROM blocklist"
        rows = self.db.execute(sql + (" WHERE job_id=?" if job_id else ""),
                               (job_id,) if job_id else ())
        return [(r[0], r[1]) for r in rows]

    def failures_of_job(self, job_id: int) -> dict[int, list[dict[str, Any]]]:
        out: dict[int, list[dict[str, Any]]] = {}
        for r in self.db.execute("SELECT task_id, slave, at, reason FROM task_failures"
                                 " WHERE job_id=? ORDER BY at", (job_id,)):
            out.setdefault(r["task_id"], []).append(
                {"slave": r["slave"], "at": r["at"], "reason": r["reason"]})
        return out

    def finished_task_dirs(self, slave: str, job_ids: Iterable[int]) -> list[int]:
        """Of these jobs, those with no task queued or active: their dirs on a slave can go."""
        ids = list(job_ids)
        if not ids:
            return []
        marks, vals = _marks(ids)
        smarks, svals = _marks([TaskStatus.QUEUED, TaskStatus.ACTIVE, TaskStatus.SOFT_FAILED,
                                TaskStatus.PAUSED])
        busy = {r[0] for r in self.db.execute(
            f"SELECT DISTINCT job_id FROM tasks WHERE job_id IN {marks} AND status IN"
            f" {smarks}", (*vals, *svals))}
        return [j for j in ids if j not in busy]

    # -- job control ----------------------------------------------------------------------
    def _refresh_job(self, job_id: int) -> None:
        """Derive the job's status from its task counts (inside the caller's transaction)."""
        c = self._counts_of(job_id)
        if c.job_status is None:
            row = self.db.execute("SELECT status FROM jobs WHERE id=?", (job_id,)).fetchone()
            if row is None:
                return
            c.job_status = row["status"]
        if c.job_status == SUBMITTING:
            return
        status = JobStatus(c.job_status)
        new = derive_job_status(status, c.by_status)
        if not job_transition_is_legal(status, new):
            return  # e.g. a late failure of a canceled job's task: the job stays canceled
        if new == JobStatus.FAILED and status != JobStatus.FAILED:
            self._cancel_open(job_id, "another task of the job failed")
        if new != status:
            self.db.execute("UPDATE jobs SET status=?, updated=? WHERE id=?",
                            (new.value, self.clock(), job_id))
            c = self._counts.get(job_id) or c  # _cancel_open may have dropped the counts
            c.job_status = new.value
            self._event(f"job-{new.value}", f"job {job_id} {new.value}", job_id=job_id,
                        data={"status": new.value})

    def _cancel_open(self, job_id: int, reason: str) -> None:
        marks, vals = _marks([TaskStatus.QUEUED, TaskStatus.SOFT_FAILED, TaskStatus.PAUSED])
        self.db.execute(f"UPDATE tasks SET status=?, updated=?, error=? WHERE job_id=?"
                        f" AND status IN {marks}",
                        (TaskStatus.CANCELED.value, self.clock(), reason, job_id, *vals))
        self._counts.pop(job_id, None)

    def cancel_job(self, job_id: int) -> list[Task]:
        """Cancel a job; returns its tasks that were active (the caller stops them)."""
        with self.transaction():
            active = [self._task(r) for r in self.db.execute(
                f"SELECT {_TASK_COLUMNS} FROM tasks WHERE job_id=? AND status=?",
                (job_id, TaskStatus.ACTIVE.value))]
            self._cancel_open(job_id, "job canceled")
            self.db.execute("UPDATE tasks SET status=?, slave=NULL, updated=?,"
                            " error='job canceled' WHERE job_id=? AND status=?",
                            (TaskStatus.CANCELED.value, self.clock(), job_id,
                             TaskStatus.ACTIVE.value))
            self._set_job(job_id, JobStatus.CANCELED)
            self._event("job-canceled", f"job {job_id} canceled", job_id=job_id,
                        data={"status": "canceled"})
        return active

    def _set_job(self, job_id: int, status: JobStatus, *, clear_error: bool = False) -> None:
        row = self.db.execute("SELECT status FROM jobs WHERE id=?", (job_id,)).fetchone()
        if row is not None and not job_transition_is_legal(JobStatus(row[0]), status):
            raise IllegalTransition(f"job {job_id} is {row[0]}; it cannot become {status}")
        self.db.execute("UPDATE jobs SET status=?, updated=?" + (", error=''" if clear_error
                                                                   else "") + " WHERE id=?",
                        (status.value, self.clock(), job_id))
        self._counts.pop(job_id, None)

    def pause_job(self, job_id: int) -> None:
        marks, vals = _marks(RUNNABLE)
        with self.transaction():
            self.db.execute(f"UPDATE tasks SET status=?, updated=? WHERE job_id=?"
                            f" AND status IN {marks}",
                            (TaskStatus.PAUSED.value, self.clock(), job_id, *vals))
            self._set_job(job_id, JobStatus.PAUSED)
            self._event("job-paused", f"job {job_id} paused", job_id=job_id,
                        data={"status": "paused"})

    def resume_job(self, job_id: int) -> None:
        with self.transaction():
            self.db.execute("UPDATE tasks SET status=?, updated=? WHERE job_id=?"
                            " AND status=?", (TaskStatus.QUEUED.value, self.clock(), job_id,
                                              TaskStatus.PAUSED.value))
            self._set_job(job_id, JobStatus.QUEUED)
            self._event("job-resumed", f"job {job_id} resumed", job_id=job_id)
            self._refresh_job(job_id)

    def set_priority(self, job_id: int, priority: int) -> None:
        """A job's new priority (0 to 100, higher first); its tasks keep their places."""
        with self.transaction():
            self.db.execute("UPDATE jobs SET priority=?, updated=? WHERE id=?",
                            (priority, self.clock(), job_id))
            self._event("job-priority", f"job {job_id} priority {priority}", job_id=job_id,
                        data={"priority": priority})

    def requeue_job(self, job_id: int, only_unfinished: bool = True) -> int:
        """Queue the job's failed and canceled tasks again (all tasks if not only_unfinished)."""
        which = [TaskStatus.FAILED, TaskStatus.CANCELED]
        if not only_unfinished:
            which.append(TaskStatus.COMPLETED)
        marks, vals = _marks(which)
        with self.transaction():
            n = self.db.execute(
                f"UPDATE tasks SET status=?, slave=NULL, error='', updated=?"
                f" WHERE job_id=? AND status IN {marks}",
                (TaskStatus.QUEUED.value, self.clock(), job_id, *vals)).rowcount
            self.db.execute("DELETE FROM task_failures WHERE job_id=?", (job_id,))
            self.db.execute("DELETE FROM blocklist WHERE job_id=?", (job_id,))
            self._set_job(job_id, JobStatus.QUEUED, clear_error=True)
            self._event("job-requeued", f"job {job_id}: {n} tasks requeued", job_id=job_id,
                        data={"status": "queued"})
            self._refresh_job(job_id)
        return int(n)

    # -- slaves -------------------------------------------------------------------------
    def set_slave(self, name: str, state: str, error: str | None = None,
                  info: dict[str, Any] | None = None) -> None:
        old = self.db.execute("SELECT state, last_error FROM slaves WHERE name=?",
                              (name,)).fetchone()
        self.db.execute(
            "INSERT INTO slaves(name, state, last_error, last_seen, info) VALUES (?,?,?,?,?)"
            " ON CONFLICT(name) DO UPDATE SET state=excluded.state,"
            " last_error=COALESCE(?, slaves.last_error), last_seen=excluded.last_seen,"
            " info=COALESCE(?, slaves.info)",
            (name, state, error or "", self.clock(), json.dumps(info or {}),
             error, json.dumps(info) if info is not None else None))
        if old is None or old["state"] != state:
            self.db.execute("UPDATE slaves SET state_since=? WHERE name=?",
                            (self.clock(), name))
            self._event("slave-state", f"{name} is {state}" + (f": {error}" if error else ""),
                        slave=name, data={"state": state})

    def add_benchmarks(self, rows: list[benchmarks.Benchmark]) -> None:
        """Record one benchmark run (a row per engine and device) and say so in the events."""
        with self.transaction():
            for b in rows:
                benchmarks.record(self.db, b)
                what = (f"{b.seconds_per_frame:.3g} s per frame ({b.application} {b.version},"
                        f" {b.engine} {b.device})" if b.seconds_per_frame is not None
                        else f"failed: {b.error}")
                self._event("slave-benchmarked", f"{b.slave} benchmarked: {what}",
                            slave=b.slave, data={"benchmark": b.as_json()})

    def latest_benchmarks(self) -> dict[str, float]:
        """Each slave's latest measured seconds per frame of afarm's benchmark scene."""
        return {s: b.seconds_per_frame for s, b in benchmarks.latest(self.db).items()
                if b.seconds_per_frame is not None}

    def slave_states(self) -> dict[str, tuple[str, float | None]]:
        """Each slave's stored state and since when (the power manager resumes from it)."""
        return {r[0]: (r[1], r[2]) for r in self.db.execute(
            "SELECT name, state, state_since FROM slaves")}

    def slaves(self) -> list[dict[str, Any]]:
        rows = self.db.execute("SELECT * FROM slaves ORDER BY name").fetchall()
        blocked: dict[str, list[int]] = {}
        for job_id, slave in self.blocklist():
            blocked.setdefault(slave, []).append(job_id)
        out = []
        for r in rows:
            d = dict(r)
            d["info"] = json.loads(d["info"] or "{}")
            d["blocklisted_for"] = blocked.get(r["name"], [])
            out.append(d)
        return out
