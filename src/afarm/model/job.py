# SPDX-License-Identifier: MIT
"""Jobs and tasks as plain records, and the plan an application makes of a job."""

from dataclasses import dataclass, field
from typing import Any

from afarm.model.status import JobStatus, TaskStatus


@dataclass(frozen=True)
class InputFile:
    """A file a job was submitted with, kept once on the master by its sha256."""

    name: str
    sha256: str
    size: int


@dataclass
class TaskSpec:
    """One task an application planned; `depends` are indices into the same plan."""

    kind: str
    label: str
    application: str
    params: dict[str, Any]
    outputs: list[str]
    inputs: list[str] = field(default_factory=list)
    runs_on: str = "slave"
    depends: list[int] = field(default_factory=list)
    frames: int = 0


@dataclass
class JobSpec:
    """A validated submission, ready to be planned and stored in one transaction."""

    name: str
    application: str
    params: dict[str, Any]
    files: list[InputFile]
    priority: int = 50
    timeout: int | None = None
    strict: bool = False  # submit --strict: a task warning (a missing file) fails the job
    tags: frozenset[str] = frozenset()  # a slave must have all of them to take its tasks
    # policy (a ranking policy's name), deadline (epoch seconds), min_memory_mib, gpus
    scheduling: dict[str, Any] = field(default_factory=dict)
    app_version: str = ""  # the pool version chosen at submit; "": the slaves' own program


@dataclass
class Job:
    id: int
    name: str
    application: str
    params: dict[str, Any]
    priority: int
    status: JobStatus
    created: float
    updated: float
    error: str
    timeout: int | None
    files: list[InputFile]
    tags: list[str] = field(default_factory=list)
    scheduling: dict[str, Any] = field(default_factory=dict)
    app_version: str = ""


@dataclass
class Task:
    id: int
    job_id: int
    idx: int
    kind: str
    label: str
    application: str
    runs_on: str
    params: dict[str, Any]
    inputs: list[str]
    outputs: list[str]
    status: TaskStatus
    attempt: int
    slave: str | None
    started: float | None
    finished: float | None
    error: str
    frames: int
