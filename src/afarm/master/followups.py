# SPDX-License-Identifier: MIT
"""Tasks the master runs itself (stitching tiles, encoding video) on the files it holds."""

import asyncio
import logging
import os
import shutil
import subprocess
import time
from collections import deque
from pathlib import Path
from typing import TYPE_CHECKING

from afarm.applications.base import RunContext
from afarm.errors import AfarmError
from afarm.images import verify_output
from afarm.master.files import JobDir
from afarm.model.job import Task

if TYPE_CHECKING:
    from afarm.master.farm import Farm

log = logging.getLogger(__name__)


class FollowupRunner:
    def __init__(self, farm: "Farm", workers: int) -> None:
        self.farm = farm
        self.workers = workers
        self.running: dict[int, asyncio.Task[None]] = {}

    @property
    def free_slots(self) -> int:
        return self.workers - len(self.running)

    def launch(self, task: Task, attempt: int) -> None:
        self.running[task.id] = asyncio.create_task(self.execute(task, attempt))

    async def stop(self) -> None:
        for t in list(self.running.values()):
            t.cancel()
        await asyncio.gather(*self.running.values(), return_exceptions=True)

    async def execute(self, task: Task, attempt: int) -> None:
        farm = self.farm
        jobdir = JobDir(farm.jobs_root, task.job_id)
        try:
            got, lines = await asyncio.to_thread(self._run, task, attempt, jobdir)
            farm.publish(task, attempt, jobdir, got, "master")
        except AfarmError as exc:
            farm.fail(task, attempt, "master", str(exc))
        except OSError as exc:
            farm.fail(task, attempt, "master", f"{exc.strerror or exc} ({exc.filename})")
        except asyncio.CancelledError:
            farm.store.requeue_task(task, attempt, "master is stopping")
            raise
        finally:
            farm.discard_partials(task, attempt)
            self.running.pop(task.id, None)
            farm.wake()

    def _run(self, task: Task, attempt: int, jobdir: JobDir) -> tuple[dict[str, Path],
                                                                     list[str]]:
        app = self.farm.apps[task.application]
        scratch = jobdir.scratch / f"{task.id}-{attempt}"
        shutil.rmtree(scratch, ignore_errors=True)
        (scratch / "in").mkdir(parents=True)
        (scratch / "out").mkdir()
        inputs = []
        # Inputs are linked as a dense numbered sequence so tools that read patterns see no
        # gaps whatever frames the job had.
        for n, rel in enumerate(task.inputs, start=1):
            src = jobdir.final(rel)
            dst = scratch / "in" / f"input_{n:06d}{Path(rel).suffix}"
            try:
                os.link(src, dst)
            except FileNotFoundError:
                raise AfarmError(f"input {rel} of task {task.id} is missing") from None
            inputs.append(dst)
        ctx = RunContext(inputs=inputs, out_dir=scratch / "out", scratch=scratch,
                         outputs=[Path(o).name for o in task.outputs])
        lines: deque[str] = deque(maxlen=200)
        started = time.monotonic()
        argv: list[str] = []
        for cmd in app.commands(task.kind, task.params, ctx):
            argv = cmd.argv
            try:
                cp = subprocess.run(argv, cwd=scratch, capture_output=True,
                                    timeout=app.timeout, check=False)
            except subprocess.TimeoutExpired:
                raise AfarmError(f"{argv[0]} ran longer than {app.timeout} s") from None
            lines.extend((cp.stdout + cp.stderr).decode(errors="replace").splitlines())
            why = app.failure(cp.returncode, list(lines))
            if why:
                self._log(jobdir, task, attempt, argv, lines, why, started)
                raise AfarmError(why)
        got = {}
        for rel in task.outputs:
            produced = scratch / "out" / Path(rel).name
            verify_output(produced)
            dst = jobdir.partial_for(rel, f"{task.id}-{attempt}")
            os.replace(produced, dst)
            got[rel] = dst
        self._log(jobdir, task, attempt, argv, lines, None, started)
        shutil.rmtree(scratch, ignore_errors=True)
        return got, list(lines)

    def _log(self, jobdir: JobDir, task: Task, attempt: int, argv: list[str],
             lines: deque[str], error: str | None, started: float) -> None:
        self.farm.write_log(jobdir, task, attempt, "master", {
            "argv": argv, "error": error, "log": list(lines),
            "seconds": round(time.monotonic() - started, 3),
            "exit_code": None if error else 0})
