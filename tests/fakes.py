# SPDX-License-Identifier: MIT
"""Stand-ins for the scheduler's collaborators, shared by its unit tests and its benchmark:
places that finish every task at once, and results that keep no files."""

from collections.abc import Callable
from pathlib import Path
from typing import Any

from afarm.master.slaves.link import Outcome
from afarm.model.job import Job, Task
from afarm.protocol.messages import TaskReply


class NoResults:
    def partial_for(self, task: Task, attempt: int) -> Callable[[str], Path]:
        return lambda rel: Path("/nonexistent") / rel

    def publish(self, task: Task, got: dict[str, Path]) -> None:
        pass

    def discard(self, task: Task, attempt: int) -> None:
        pass

    def write_log(self, task: Task, attempt: int, slave: str, reply: TaskReply | None,
                  reason: str) -> None:
        pass


class InstantPlace:
    """A slave that finishes every task the moment it gets it."""

    def __init__(self, name: str, slots: int = 1, tags: list[str] | None = None) -> None:
        self.name = name
        self.slots = slots
        self.state = "online"
        self.tags = tags or []
        self.applications: frozenset[str] | None = None
        self.running: dict[int, Any] = {}

    @property
    def free_slots(self) -> int:
        return self.slots - len(self.running)

    def mark_busy(self, task_id: int, job: Any) -> None:
        self.running[task_id] = job

    def mark_free(self, task_id: int) -> None:
        self.running.pop(task_id, None)

    def cancel(self, task_id: int, attempt: int) -> None:
        pass

    async def run(self, task: Task, attempt: int, job: Job, timeout: int,
                  partial: Callable[[str], Path]) -> Outcome:
        return Outcome("done")

    async def stop(self) -> None:
        pass
