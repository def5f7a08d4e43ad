# SPDX-License-Identifier: MIT
"""The farm: the store, the slaves' dispatchers and the event-driven scheduler between them."""

import asyncio
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from afarm.applications.base import Application, relative_name
from afarm.errors import UsageError
from afarm.master.dispatcher import Dispatcher
from afarm.master.files import FileStore, JobDir, check_sha
from afarm.master.followups import FollowupRunner
from afarm.model.job import InputFile, JobSpec, Task
from afarm.store.db import Store

log = logging.getLogger(__name__)
Listener = Callable[[dict[str, Any]], None]


class Farm:
    def __init__(self, state_dir: Path, applications: dict[str, Application], *,
                 slave_failures_per_job: int = 3, slaves_per_task: int = 3,
                 task_timeout: int = 3600, followup_workers: int = 1) -> None:
        self.state_dir = state_dir
        self.apps = applications
        self.listeners: list[Listener] = []
        self.store = Store(state_dir / "afarm.db", on_event=self._broadcast)
        self.files = FileStore(state_dir / "files")
        self.jobs_root = state_dir / "jobs"
        self.jobs_root.mkdir(parents=True, exist_ok=True)
        self.policy = {"slave_failures_per_job": slave_failures_per_job,
                       "slaves_per_task": slaves_per_task}
        self.task_timeout = task_timeout
        self.dispatchers: dict[str, Dispatcher] = {}
        self.followups = FollowupRunner(self, followup_workers)
        self.bytes_sent: dict[str, int] = {}
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._started = False

    # -- life cycle -----------------------------------------------------------------------
    def add_slave(self, dispatcher: Dispatcher) -> None:
        self.dispatchers[dispatcher.name] = dispatcher
        if self._started:  # enrolled while running: connect now, not at the next start
            self._tasks.append(asyncio.create_task(dispatcher.keep_connected()))
            self.wake()

    async def start(self) -> None:
        n = self.store.recover_active()
        if n:
            log.info("requeued %d tasks that were active when the master stopped", n)
        # Whatever is in a .partial dir now belongs to an attempt that died with the master.
        for partial in self.jobs_root.glob("*/.partial/*"):
            partial.unlink(missing_ok=True)
        self._started = True
        for d in self.dispatchers.values():
            self._tasks.append(asyncio.create_task(d.keep_connected()))
        self._tasks.append(asyncio.create_task(self._schedule_loop()))
        self.wake()

    async def stop(self) -> None:
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await asyncio.gather(*(d.stop() for d in self.dispatchers.values()),
                             return_exceptions=True)
        await self.followups.stop()
        self.store.close()

    def wake(self) -> None:
        self._wake.set()

    async def _schedule_loop(self) -> None:
        # No polling interval: a new job, a finished task or a slave coming online sets the
        # event, and one pass hands out every task that can run now.
        while True:
            await self._wake.wait()
            self._wake.clear()
            try:
                self.dispatch_ready()
            except Exception:
                log.exception("scheduler pass failed")

    def dispatch_ready(self) -> None:
        for d in sorted(self.dispatchers.values(), key=lambda d: (-d.free_slots, d.name)):
            while d.free_slots > 0:
                task = self.store.next_task("slave", d.name)
                if task is None:
                    break
                attempt = self.store.start_task(task, d.name)
                d.launch(task, attempt)
        while self.followups.free_slots > 0:
            task = self.store.next_task("master")
            if task is None:
                break
            attempt = self.store.start_task(task, "master")
            self.followups.launch(task, attempt)

    # -- jobs -----------------------------------------------------------------------------
    def submit(self, spec: JobSpec, dry_run: bool = False) -> int:
        """Validate, plan and store a job; with dry_run only validate (returns 0)."""
        app = self.apps.get(spec.application)
        if app is None:
            raise UsageError(f"unknown application {spec.application!r}; this master has: "
                             + ", ".join(sorted(self.apps)))
        for f in spec.files:
            if not dry_run and not self.files.has(f.sha256):
                raise UsageError(f"input {f.name!r} ({f.sha256[:12]}) was not uploaded;"
                                 " upload it first (afarmctl does this for you)")
        spec.params = app.validate(spec.params, spec.files)
        plan = app.plan(spec.name, spec.params, spec.files)
        for t in plan:
            if t.application not in self.apps:
                raise UsageError(f"job needs application {t.application!r} for its"
                                 f" {t.kind} tasks, but this master does not define it")
        if dry_run:
            return 0
        app.check_inputs([self.files.path(f.sha256) for f in spec.files])
        job_id = self.store.add_job(spec, plan)
        JobDir(self.jobs_root, job_id).create()
        self.wake()
        return job_id

    def input_files(self, raw: Any) -> list[InputFile]:
        if not isinstance(raw, list):
            raise UsageError("files must be a list of {name, sha256}")
        out = []
        for f in raw:
            if not isinstance(f, dict):
                raise UsageError("files must be a list of {name, sha256}")
            sha = check_sha(str(f.get("sha256", "")))
            name = relative_name(str(f.get("name", "")), "input file name")
            path = self.files.path(sha)
            out.append(InputFile(name, sha, path.stat().st_size if path.is_file() else 0))
        if len({f.name for f in out}) != len(out):
            raise UsageError("two input files have the same name; rename one")
        return out

    def cancel_job(self, job_id: int) -> None:
        for task in self.store.cancel_job(job_id):
            d = self.dispatchers.get(task.slave or "")
            if d is not None:
                d.cancel(task.id, task.attempt)
        self.wake()

    def app_timeout(self, name: str) -> int:
        app = self.apps.get(name)
        return app.timeout if app else self.task_timeout

    # -- results --------------------------------------------------------------------------
    async def finish_remote(self, d: Dispatcher, task: Task, attempt: int,
                            reply: dict[str, Any]) -> None:
        jobdir = JobDir(self.jobs_root, task.job_id)
        self.write_log(jobdir, task, attempt, d.name, reply)
        if reply.get("error"):
            if reply["error"] == "canceled" and not self.store.lease_valid(task.id, attempt):
                return
            self.fail(task, attempt, d.name, str(reply["error"]))
            return
        tag = f"{task.id}-{attempt}"
        got = await d.fetch_outputs(task, attempt, reply,
                                    lambda rel: jobdir.partial_for(rel, tag))
        self.publish(task, attempt, jobdir, got, d.name)

    def publish(self, task: Task, attempt: int, jobdir: JobDir, got: dict[str, Path],
                slave: str) -> None:
        """Rename verified outputs into place, unless someone else owns the task by now."""
        missing = [o for o in task.outputs if o not in got]
        if missing:
            self.fail(task, attempt, slave, f"output {missing[0]} did not arrive")
            return
        # No await between this check and the renames: a late result from a slave the
        # master already gave up on can never replace a frame another slave rendered.
        if not self.store.lease_valid(task.id, attempt):
            for p in got.values():
                p.unlink(missing_ok=True)
            log.info("discarded a late result of task %d attempt %d from %s",
                     task.id, attempt, slave)
            return
        for rel, partial in got.items():
            jobdir.publish(partial, rel)
        self.store.complete_task(task, attempt)

    def discard_partials(self, task: Task, attempt: int) -> None:
        """Whatever of this attempt is still in .partial/ was not published: remove it."""
        jobdir = JobDir(self.jobs_root, task.job_id)
        for p in jobdir.partial.glob(f"*.{task.id}-{attempt}"):
            p.unlink(missing_ok=True)

    def fail(self, task: Task, attempt: int, slave: str | None, reason: str) -> None:
        eligible = set(self.dispatchers) if slave != "master" else set()
        new = self.store.fail_task(task, attempt, None if slave == "master" else slave,
                                   reason, eligible_slaves=eligible, **self.policy)
        if new is not None:
            log.info("task %d (%s) %s on %s: %s", task.id, task.label, new, slave, reason)
        self.wake()

    def write_log(self, jobdir: JobDir, task: Task, attempt: int, slave: str,
                   reply: dict[str, Any]) -> None:
        lines = [f"=== task {task.id} ({task.label}) attempt {attempt} on {slave} at "
                 f"{time.strftime('%Y-%m-%d %H:%M:%S')}",
                 f"argv: {reply.get('argv')}",
                 f"exit code: {reply.get('exit_code')}, {reply.get('seconds', '?')} s"]
        if reply.get("error"):
            lines.append(f"error: {reply['error']}")
        if reply.get("errors"):
            lines += ["--- error lines ---", *map(str, reply["errors"])]
        lines += ["--- output (last lines) ---", *map(str, reply.get("log", []))]
        try:
            jobdir.logs.mkdir(parents=True, exist_ok=True)
            with open(jobdir.task_log(task.id), "a", encoding="utf-8") as f:
                f.write("\n".join(lines) + "\n")
        except OSError as exc:
            log.error("cannot write the log of task %d: %s", task.id, exc)

    def on_progress(self, slave: str, msg: dict[str, Any]) -> None:
        self._broadcast({"kind": "frame-saved", "slave": slave, "task": msg.get("task"),
                         "file": msg.get("saved"), "at": time.time()})

    def count_bytes(self, slave: str, n: int) -> None:
        self.bytes_sent[slave] = self.bytes_sent.get(slave, 0) + n

    # -- events ---------------------------------------------------------------------------
    def _broadcast(self, event: dict[str, Any]) -> None:
        for listener in list(self.listeners):
            try:
                listener(event)
            except Exception:
                log.exception("event listener failed")
