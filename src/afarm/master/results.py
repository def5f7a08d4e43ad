# SPDX-License-Identifier: MIT
"""Where a task's results go on the master: `.partial/` while they arrive, renamed into the
job's `out/` once verified and the attempt still holds its lease, and the task's log."""

import logging
import time
from collections.abc import Callable
from pathlib import Path

from afarm.master.files import JobDir
from afarm.model.job import Task
from afarm.protocol.messages import TaskReply

log = logging.getLogger(__name__)
MAX_TASK_LOG = 4 << 20  # bytes one task's log may grow to over all its attempts


def output_rel(task: Task, name: str) -> str | None:
    """Where in the job an output file `name` of this task goes: one of its planned outputs,
    or (for a task that collects what its program writes) under its collect_extra dir."""
    for rel in task.outputs:
        if Path(rel).name == name:
            return rel
    extra = task.params.get("collect_extra")
    return f"{extra}/{name}" if extra else None


class Results:
    def __init__(self, jobs_root: Path) -> None:
        self.jobs_root = jobs_root

    def jobdir(self, job_id: int) -> JobDir:
        return JobDir(self.jobs_root, job_id)

    def partial_for(self, task: Task, attempt: int) -> Callable[[str], Path]:
        jobdir = self.jobdir(task.job_id)
        tag = f"{task.id}-{attempt}"
        return lambda rel: jobdir.partial_for(rel, tag)

    def published(self, job_id: int, rel: str) -> Path:
        return self.jobdir(job_id).final(rel)

    def scratch(self, job_id: int) -> Path:
        return self.jobdir(job_id).scratch

    def publish(self, task: Task, got: dict[str, Path]) -> None:
        jobdir = self.jobdir(task.job_id)
        for rel, partial in got.items():
            jobdir.publish(partial, rel)

    def discard(self, task: Task, attempt: int) -> None:
        """Whatever of this attempt is still in .partial/ was not published: remove it."""
        for p in self.jobdir(task.job_id).partial.glob(f"*.{task.id}-{attempt}"):
            p.unlink(missing_ok=True)

    def write_log(self, task: Task, attempt: int, slave: str, reply: TaskReply | None,
                  reason: str) -> None:
        r = reply or TaskReply(task.id, attempt, error=reason or None)
        lines = [f"=== task {task.id} ({task.label}) attempt {attempt} on {slave} at "
                 f"{time.strftime('%Y-%m-%d %H:%M:%S')}",
                 f"argv: {r.argv}",
                 f"exit code: {r.exit_code}, {r.seconds} s"]
        if r.error or reason:
            lines.append(f"error: {r.error or reason}")
        if r.warnings:
            lines += ["--- warnings ---", *r.warnings]
        if r.errors:
            lines += ["--- error lines ---", *r.errors]
        lines += ["--- output (last lines) ---", *r.log]
        jobdir = self.jobdir(task.job_id)
        path = jobdir.task_log(task.id)
        try:
            jobdir.logs.mkdir(parents=True, exist_ok=True)
            size = path.stat().st_size if path.exists() else 0
            text = "\n".join(lines) + "\n"
            if size + len(text) > MAX_TASK_LOG:
                text = (f"=== task {task.id} attempt {attempt} on {slave}: log limit of"
                        f" {MAX_TASK_LOG} bytes reached; error: {r.error or reason}\n")
                if size > MAX_TASK_LOG:
                    return
            with open(path, "a", encoding="utf-8") as f:
                f.write(text)
        except OSError as exc:
            log.error("cannot write the log of task %d: %s", task.id, exc)
