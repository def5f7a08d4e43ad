# SPDX-License-Identifier: MIT
"""Jobs, tasks, slaves and the event log in SQLite (WAL); every SQL statement lives here."""

import json
import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from afarm.model.job import InputFile, Job, JobSpec, Task, TaskSpec
from afarm.model.status import (
    FINISHED,
    RUNNABLE,
    JobStatus,
    TaskStatus,
    check_transition,
    sources_of,
)
from afarm.store.schema import migrate

EventHook = Callable[[dict[str, Any]], None]
_TASK_COLUMNS = (
    "id, job_id, idx, kind, label, application, runs_on, params, inputs, outputs, status,"
    " attempt, slave, started, finished, error, frames"
)


def _in(values: frozenset[TaskStatus] | set[TaskStatus]) -> str:
    return "(" + ",".join(f"'{v.value}'" for v in sorted(values)) + ")"


class Store:
    """One connection, used from the master's event-loop thread only."""

    def __init__(self, path: str | Path, *, on_event: EventHook | None = None) -> None:
        self.path = str(path)
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

    def close(self) -> None:
        self.db.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield self.db
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")

    # -- events -------------------------------------------------------------------------
    def _event(self, kind: str, message: str, *, job_id: int | None = None,
               task_id: int | None = None, slave: str | None = None,
               data: dict[str, Any] | None = None) -> None:
        now = time.time()
        cur = self.db.execute(
            "INSERT INTO events(at, kind, job_id, task_id, slave, message, data)"
            " VALUES (?,?,?,?,?,?,?)",
            (now, kind, job_id, task_id, slave, message, json.dumps(data or {})),
        )
        if self.on_event is not None:
            self.on_event({"id": cur.lastrowid, "at": now, "kind": kind, "job": job_id,
                           "task": task_id, "slave": slave, "message": message, **(data or {})})

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

    # -- files --------------------------------------------------------------------------
    def add_file(self, sha256: str, size: int) -> None:
        self.db.execute("INSERT OR IGNORE INTO files(sha256, size, added) VALUES (?,?,?)",
                        (sha256, size, time.time()))

    def has_file(self, sha256: str) -> bool:
        return self.db.execute("SELECT 1 FROM files WHERE sha256=?", (sha256,)).fetchone() \
            is not None

    # -- jobs ---------------------------------------------------------------------------
    def add_job(self, spec: JobSpec, plan: list[TaskSpec]) -> int:
        """Store a job with all its tasks atomically; returns the job id."""
        now = time.time()
        with self.transaction() as db:
            cur = db.execute(
                "INSERT INTO jobs(name, application, params, priority, status, created,"
                " updated, error, timeout) VALUES (?,?,?,?,?,?,?,'',?)",
                (spec.name, spec.application, json.dumps(spec.params), spec.priority,
                 JobStatus.QUEUED.value, now, now, spec.timeout),
            )
            job_id = int(cur.lastrowid or 0)
            db.executemany(
                "INSERT INTO job_files(job_id, name, sha256, size) VALUES (?,?,?,?)",
                [(job_id, f.name, f.sha256, f.size) for f in spec.files],
            )
            ids: list[int] = []
            for idx, t in enumerate(plan):
                cur = db.execute(
                    "INSERT INTO tasks(job_id, idx, kind, label, application, runs_on, params,"
                    " inputs, outputs, status, attempt, error, frames, updated)"
                    " VALUES (?,?,?,?,?,?,?,?,?,?,0,'',?,?)",
                    (job_id, idx, t.kind, t.label, t.application, t.runs_on,
                     json.dumps(t.params), json.dumps(t.inputs), json.dumps(t.outputs),
                     TaskStatus.QUEUED.value, t.frames, now),
                )
                ids.append(int(cur.lastrowid or 0))
            db.executemany(
                "INSERT INTO task_deps(task_id, dep_id) VALUES (?,?)",
                [(ids[i], ids[d]) for i, t in enumerate(plan) for d in t.depends],
            )
            self._event("job-accepted", f"job {job_id} {spec.name!r}: {len(plan)} tasks",
                        job_id=job_id, data={"status": JobStatus.QUEUED.value})
        return job_id

    def _job(self, row: sqlite3.Row) -> Job:
        files = [InputFile(r["name"], r["sha256"], r["size"]) for r in self.db.execute(
            "SELECT name, sha256, size FROM job_files WHERE job_id=? ORDER BY rowid",
            (row["id"],))]
        return Job(row["id"], row["name"], row["application"], json.loads(row["params"]),
                   row["priority"], JobStatus(row["status"]), row["created"], row["updated"],
                   row["error"], row["timeout"], files)

    def job(self, job_id: int) -> Job | None:
        row = self.db.execute("SELECT * FROM jobs WHERE id=?", (job_id,)).fetchone()
        return self._job(row) if row else None

    def jobs(self, limit: int = 200) -> list[Job]:
        rows = self.db.execute("SELECT * FROM jobs ORDER BY id DESC LIMIT ?", (limit,))
        return [self._job(r) for r in rows.fetchall()]

    def job_progress(self, job_id: int) -> dict[str, int]:
        counts = {s.value: 0 for s in TaskStatus}
        for r in self.db.execute(
            "SELECT status, COUNT(*) AS n FROM tasks WHERE job_id=? GROUP BY status", (job_id,)
        ):
            counts[r["status"]] = r["n"]
        fr = self.db.execute(
            "SELECT COALESCE(SUM(frames),0) AS total,"
            " COALESCE(SUM(CASE WHEN status='completed' THEN frames END),0) AS done"
            " FROM tasks WHERE job_id=? AND kind='render'", (job_id,)).fetchone()
        counts["tasks"] = sum(counts[s.value] for s in TaskStatus)
        counts["frames_total"] = fr["total"]
        counts["frames_done"] = fr["done"]
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

    def next_task(self, runs_on: str, slave: str | None = None) -> Task | None:
        """The most urgent runnable task this slave may take, or None."""
        sql = (
            f"SELECT {', '.join('t.' + c.strip() for c in _TASK_COLUMNS.split(','))}"
            " FROM tasks t JOIN jobs j ON j.id = t.job_id"
            f" WHERE t.status IN {_in(RUNNABLE)} AND t.runs_on = ?"
            " AND j.status IN ('queued', 'active')"
            " AND NOT EXISTS (SELECT 1 FROM task_deps d JOIN tasks u ON u.id = d.dep_id"
            "   WHERE d.task_id = t.id AND u.status != 'completed')"
        )
        args: list[Any] = [runs_on]
        if slave is not None:
            sql += (" AND NOT EXISTS (SELECT 1 FROM blocklist b WHERE b.job_id = t.job_id"
                    "   AND b.slave = ?)"
                    " AND NOT EXISTS (SELECT 1 FROM task_failures f WHERE f.task_id = t.id"
                    "   AND f.slave = ?)")
            args += [slave, slave]
        sql += " ORDER BY j.priority DESC, j.id, t.idx LIMIT 1"
        r = self.db.execute(sql, args).fetchone()
        return self._task(r) if r else None

    def _set_status(self, task_id: int, new: TaskStatus, *, attempt: int | None = None,
                    extra: str = "", args: tuple[Any, ...] = ()) -> bool:
        """Guarded update: only from a legal source status (and the current attempt)."""
        sql = (f"UPDATE tasks SET status=?, updated=?{extra} WHERE id=?"
               f" AND status IN {_in(sources_of(new))}")
        params: list[Any] = [new.value, time.time(), *args, task_id]
        if attempt is not None:
            sql += " AND attempt=?"
            params.append(attempt)
        return self.db.execute(sql, params).rowcount == 1

    def start_task(self, task: Task, slave: str) -> int:
        """Mark the task active on `slave`; returns the new attempt number (its lease)."""
        check_transition(task.status, TaskStatus.ACTIVE)
        with self.transaction():
            ok = self._set_status(task.id, TaskStatus.ACTIVE,
                                  extra=", attempt=attempt+1, slave=?, started=?, finished=NULL",
                                  args=(slave, time.time()))
            if not ok:
                raise RuntimeError(f"task {task.id} is no longer runnable")
            attempt = self.db.execute("SELECT attempt FROM tasks WHERE id=?",
                                      (task.id,)).fetchone()[0]
            self.db.execute("UPDATE jobs SET status='active', updated=? WHERE id=?"
                            " AND status='queued'", (time.time(), task.job_id))
            self._event("task-active", f"task {task.id} ({task.label}) on {slave}",
                        job_id=task.job_id, task_id=task.id, slave=slave,
                        data={"status": "active", "attempt": attempt})
        return int(attempt)

    def lease_valid(self, task_id: int, attempt: int) -> bool:
        r = self.db.execute("SELECT 1 FROM tasks WHERE id=? AND attempt=? AND status='active'",
                            (task_id, attempt)).fetchone()
        return r is not None

    def complete_task(self, task: Task, attempt: int) -> bool:
        with self.transaction():
            if not self._set_status(task.id, TaskStatus.COMPLETED, attempt=attempt,
                                    extra=", finished=?, error=''", args=(time.time(),)):
                return False
            self._event("task-completed", f"task {task.id} ({task.label}) completed",
                        job_id=task.job_id, task_id=task.id, slave=task.slave,
                        data={"status": "completed"})
            self._refresh_job(task.job_id)
        return True

    def requeue_task(self, task: Task, attempt: int, reason: str) -> bool:
        """Give an active task back to the queue without blaming its slave."""
        with self.transaction():
            if not self._set_status(task.id, TaskStatus.QUEUED, attempt=attempt,
                                    extra=", slave=NULL, error=?", args=(reason,)):
                return False
            self._event("task-requeued", f"task {task.id} requeued: {reason}",
                        job_id=task.job_id, task_id=task.id, slave=task.slave,
                        data={"status": "queued"})
            self._refresh_job(task.job_id)
        return True

    def fail_task(self, task: Task, attempt: int | None, slave: str | None, reason: str, *,
                  slave_failures_per_job: int, slaves_per_task: int,
                  eligible_slaves: set[str]) -> TaskStatus | None:
        """Record a failure and apply the policy; returns the new status or None if stale."""
        with self.transaction():
            cur = self.db.execute("SELECT status, attempt FROM tasks WHERE id=?",
                                  (task.id,)).fetchone()
            if cur["status"] != "active" or (attempt is not None and cur["attempt"] != attempt):
                return None
            now = time.time()
            if slave is not None:
                self.db.execute("INSERT INTO task_failures(task_id, job_id, slave, at, reason)"
                                " VALUES (?,?,?,?,?)", (task.id, task.job_id, slave, now, reason))
                n = self.db.execute("SELECT COUNT(*) FROM task_failures WHERE job_id=?"
                                    " AND slave=?", (task.job_id, slave)).fetchone()[0]
                if n >= slave_failures_per_job:
                    self.db.execute("INSERT OR IGNORE INTO blocklist(job_id, slave, at)"
                                    " VALUES (?,?,?)", (task.job_id, slave, now))
                    self._event("slave-blocklisted",
                                f"{slave} failed {n} tasks of job {task.job_id}; blocklisted",
                                job_id=task.job_id, slave=slave)
            failed_on = {r[0] for r in self.db.execute(
                "SELECT DISTINCT slave FROM task_failures WHERE task_id=?", (task.id,))}
            blocked = {r[0] for r in self.db.execute(
                "SELECT slave FROM blocklist WHERE job_id=?", (task.job_id,))}
            left = eligible_slaves - failed_on - blocked
            final = slave is None or len(failed_on) >= slaves_per_task or not left
            new = TaskStatus.FAILED if final else TaskStatus.SOFT_FAILED
            self._set_status(task.id, new, extra=", slave=NULL, finished=?, error=?",
                             args=(now, reason))
            self._event(f"task-{new.value}", f"task {task.id} ({task.label}) {new.value}:"
                        f" {reason}", job_id=task.job_id, task_id=task.id, slave=slave,
                        data={"status": new.value})
            self._refresh_job(task.job_id)
        return new

    def recover_active(self) -> int:
        """After a restart nobody runs anything: every active task goes back to the queue."""
        with self.transaction():
            rows = self.db.execute("SELECT id, job_id FROM tasks WHERE status='active'"
                                   ).fetchall()
            for r in rows:
                self.db.execute("UPDATE tasks SET status='queued', slave=NULL, updated=?"
                                " WHERE id=?", (time.time(), r["id"]))
                self._event("task-requeued", f"task {r['id']} requeued: master restarted",
                            job_id=r["job_id"], task_id=r["id"], data={"status": "queued"})
        return len(rows)

    def blocklist(self, job_id: int | None = None) -> list[tuple[int, str]]:
        sql = "SELECT job_id, slave FROM blocklist"
        rows = self.db.execute(sql + (" WHERE job_id=?" if job_id else ""),
                               (job_id,) if job_id else ())
        return [(r[0], r[1]) for r in rows]

    def failures(self, task_id: int) -> list[dict[str, Any]]:
        rows = self.db.execute("SELECT slave, at, reason FROM task_failures WHERE task_id=?"
                               " ORDER BY at", (task_id,))
        return [dict(r) for r in rows]

    # -- job control ----------------------------------------------------------------------
    def _refresh_job(self, job_id: int) -> None:
        """Derive the job's status from its tasks (inside the caller's transaction)."""
        row = self.db.execute("SELECT status FROM jobs WHERE id=?", (job_id,)).fetchone()
        status = JobStatus(row["status"])
        counts = {r[0]: r[1] for r in self.db.execute(
            "SELECT status, COUNT(*) FROM tasks WHERE job_id=? GROUP BY status", (job_id,))}
        total = sum(counts.values())
        new = status
        if counts.get("failed"):
            new = JobStatus.FAILED
            self._cancel_open(job_id, "another task of the job failed")
        elif counts.get("completed", 0) == total:
            new = JobStatus.COMPLETED
        elif status in (JobStatus.PAUSED, JobStatus.CANCELED):
            new = status
        elif counts.get("active") or counts.get("completed"):
            new = JobStatus.ACTIVE
        else:
            new = JobStatus.QUEUED
        if new != status:
            self.db.execute("UPDATE jobs SET status=?, updated=? WHERE id=?",
                            (new.value, time.time(), job_id))
            self._event(f"job-{new.value}", f"job {job_id} {new.value}", job_id=job_id,
                        data={"status": new.value})

    def _cancel_open(self, job_id: int, reason: str) -> None:
        self.db.execute(
            f"UPDATE tasks SET status='canceled', updated=?, error=? WHERE job_id=?"
            f" AND status IN {_in({TaskStatus.QUEUED, TaskStatus.SOFT_FAILED, TaskStatus.PAUSED})}",
            (time.time(), reason, job_id))

    def cancel_job(self, job_id: int) -> list[Task]:
        """Cancel a job; returns its tasks that were active (the caller stops them)."""
        with self.transaction():
            active = [self._task(r) for r in self.db.execute(
                f"SELECT {_TASK_COLUMNS} FROM tasks WHERE job_id=? AND status='active'",
                (job_id,))]
            self._cancel_open(job_id, "job canceled")
            self.db.execute("UPDATE tasks SET status='canceled', slave=NULL, updated=?,"
                            " error='job canceled' WHERE job_id=? AND status='active'",
                            (time.time(), job_id))
            self.db.execute("UPDATE jobs SET status='canceled', updated=? WHERE id=?",
                            (time.time(), job_id))
            self._event("job-canceled", f"job {job_id} canceled", job_id=job_id,
                        data={"status": "canceled"})
        return active

    def pause_job(self, job_id: int) -> None:
        with self.transaction():
            self.db.execute(f"UPDATE tasks SET status='paused', updated=? WHERE job_id=?"
                            f" AND status IN {_in(RUNNABLE)}", (time.time(), job_id))
            self.db.execute("UPDATE jobs SET status='paused', updated=? WHERE id=?",
                            (time.time(), job_id))
            self._event("job-paused", f"job {job_id} paused", job_id=job_id,
                        data={"status": "paused"})

    def resume_job(self, job_id: int) -> None:
        with self.transaction():
            self.db.execute("UPDATE tasks SET status='queued', updated=? WHERE job_id=?"
                            " AND status='paused'", (time.time(), job_id))
            self.db.execute("UPDATE jobs SET status='queued', updated=? WHERE id=?",
                            (time.time(), job_id))
            self._event("job-resumed", f"job {job_id} resumed", job_id=job_id)
            self._refresh_job(job_id)

    def requeue_job(self, job_id: int, only_unfinished: bool = True) -> int:
        """Queue the job's failed and canceled tasks again (all tasks if not only_unfinished)."""
        which = {TaskStatus.FAILED, TaskStatus.CANCELED}
        if not only_unfinished:
            which |= {TaskStatus.COMPLETED}
        with self.transaction():
            n = self.db.execute(
                f"UPDATE tasks SET status='queued', slave=NULL, error='', updated=?"
                f" WHERE job_id=? AND status IN {_in(which)}", (time.time(), job_id)).rowcount
            self.db.execute("DELETE FROM task_failures WHERE job_id=?", (job_id,))
            self.db.execute("DELETE FROM blocklist WHERE job_id=?", (job_id,))
            self.db.execute("UPDATE jobs SET status='queued', error='', updated=? WHERE id=?",
                            (time.time(), job_id))
            self._event("job-requeued", f"job {job_id}: {n} tasks requeued", job_id=job_id,
                        data={"status": "queued"})
            self._refresh_job(job_id)
        return int(n)

    def finished_statuses(self) -> frozenset[TaskStatus]:
        return FINISHED

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
            (name, state, error or "", time.time(), json.dumps(info or {}),
             error, json.dumps(info) if info is not None else None))
        if old is None or old["state"] != state:
            self._event("slave-state", f"{name} is {state}" + (f": {error}" if error else ""),
                        slave=name, data={"state": state})

    def slaves(self) -> list[dict[str, Any]]:
        rows = self.db.execute("SELECT * FROM slaves ORDER BY name").fetchall()
        out = []
        for r in rows:
            d = dict(r)
            d["info"] = json.loads(d["info"] or "{}")
            d["blocklisted_for"] = [j for j, s in self.blocklist() if s == r["name"]]
            out.append(d)
        return out
