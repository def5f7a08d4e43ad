# SPDX-License-Identifier: MIT
"""The master as a place to run tasks: follow-ups (stitch, encode) and `runs_on = master`
applications, through the same runner and input contract as a slave's agent."""

import asyncio
import os
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from afarm.applications.base import Application
from afarm.errors import AfarmError
from afarm.master.results import output_rel
from afarm.master.slaves.link import Outcome
from afarm.model.job import Job, Task
from afarm.protocol.messages import TaskReply
from afarm.runner.sandbox import Sandbox
from afarm.runner.task import TaskRun
from afarm.runner.workspace import Input, Workspace, sequence_name

NAME = "master"


class FileSource(Protocol):
    def path(self, sha: str) -> Path: ...


def task_inputs(task: Task, job: Job, files: FileSource,
                published: Callable[[str], Path]) -> list[Input]:
    """The input contract: a follow-up reads the outputs it lists, in order, as a numbered
    sequence; any other task reads its job's files under their own names."""
    if task.inputs:
        return [Input(sequence_name(n, rel), published(rel))
                for n, rel in enumerate(task.inputs, start=1)]
    return [Input(f.name, files.path(f.sha256)) for f in job.files]


class MasterRunner:
    name = NAME
    state = "online"
    tags: list[str] = []
    applications = None

    def __init__(self, apps: dict[str, Application], workers: int, files: FileSource,
                 scratch_root: Callable[[int], Path], published: Callable[[int, str], Path],
                 sandbox: Sandbox | None = None) -> None:
        self.apps = apps
        self.slots = workers
        self.files = files
        self.scratch_root = scratch_root
        self.published = published
        # Follow-ups read frames that came from slaves: they run sandboxed like any task.
        self.sandbox = sandbox if sandbox is not None else Sandbox()
        self.running: dict[int, asyncio.Task[None]] = {}
        self._runs: dict[tuple[int, int], TaskRun] = {}

    @property
    def free_slots(self) -> int:
        return self.slots - len(self.running)

    def mark_busy(self, task_id: int, job: "asyncio.Task[None]") -> None:
        self.running[task_id] = job

    def mark_free(self, task_id: int) -> None:
        self.running.pop(task_id, None)

    def cancel(self, task_id: int, attempt: int) -> None:
        run = self._runs.get((task_id, attempt))
        if run is not None:
            run.cancel()

    async def stop(self) -> None:
        for run in list(self._runs.values()):
            run.cancel()

    async def run(self, task: Task, attempt: int, job: Job, timeout: int,
                  partial: Callable[[str], Path]) -> Outcome:
        run = self._runs[(task.id, attempt)] = TaskRun()
        try:
            return await asyncio.to_thread(self._run, run, task, attempt, job, timeout,
                                           partial)
        except asyncio.CancelledError:
            run.cancel()
            raise
        except (AfarmError, OSError, ValueError, KeyError, TypeError) as exc:
            # Whatever went wrong, the task must end: a follow-up left active would be
            # stranded again after every restart.
            why = f"{exc.strerror} ({exc.filename})" if isinstance(exc, OSError) \
                and exc.strerror else str(exc) or type(exc).__name__
            return Outcome("failed", why)
        finally:
            self._runs.pop((task.id, attempt), None)

    def _run(self, run: TaskRun, task: Task, attempt: int, job: Job, timeout: int,
             partial: Callable[[str], Path]) -> Outcome:
        app = self.apps.get(task.application)
        if app is None:
            return Outcome("failed", f"application {task.application!r} is not defined on"
                                     " the master")
        ws = Workspace(self.scratch_root(task.job_id) / f"{task.id}-{attempt}")
        ws.create()
        try:
            try:
                inputs = [ws.link(i) for i in task_inputs(
                    task, job, self.files, lambda rel: self.published(task.job_id, rel))]
            except FileNotFoundError as exc:
                return Outcome("failed", f"an input of task {task.id} is missing: "
                                         f"{exc.filename}")
            expected = [Path(o).name for o in task.outputs]
            result = run.execute(app, task.kind, task.params, ws, inputs, expected,
                                 float(timeout), ws.env(), wrap=self.sandbox.wrap_workspace)
            reply = TaskReply(task.id, attempt, exit_code=result.exit_code,
                              error=result.error, timed_out=result.timed_out,
                              outputs=result.outputs, seconds=result.seconds,
                              argv=result.argv, log=result.log, errors=result.errors,
                              warnings=result.warnings)
            if result.error:
                return Outcome("failed", result.error, reply)
            got = {}
            for name in result.outputs:
                rel = output_rel(task, name)
                if rel is None:
                    continue
                dst = partial(rel)
                os.replace(ws.out_dir / name, dst)
                got[rel] = dst
            return Outcome("done", reply=reply, got=got)
        finally:
            ws.remove()
