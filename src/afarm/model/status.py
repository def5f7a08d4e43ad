# SPDX-License-Identifier: MIT
"""The closed sets of task and job statuses, their tables of legal transitions, and how a
job's status follows from the statuses of its tasks."""

from enum import StrEnum

from afarm.errors import IllegalTransition


class TaskStatus(StrEnum):
    QUEUED = "queued"
    ACTIVE = "active"
    SOFT_FAILED = "soft-failed"
    FAILED = "failed"
    COMPLETED = "completed"
    CANCELED = "canceled"
    PAUSED = "paused"


class JobStatus(StrEnum):
    QUEUED = "queued"
    ACTIVE = "active"
    PAUSED = "paused"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELED = "canceled"


S = TaskStatus
# active -> queued is the "slave vanished / master restarted" path: the work is redone
# without blaming anyone.  Finished statuses only leave through an explicit requeue.
TRANSITIONS: dict[TaskStatus, frozenset[TaskStatus]] = {
    S.QUEUED: frozenset({S.ACTIVE, S.CANCELED, S.PAUSED, S.FAILED}),
    S.ACTIVE: frozenset({S.COMPLETED, S.SOFT_FAILED, S.FAILED, S.QUEUED, S.CANCELED}),
    S.SOFT_FAILED: frozenset({S.ACTIVE, S.FAILED, S.CANCELED, S.PAUSED, S.QUEUED}),
    S.PAUSED: frozenset({S.QUEUED, S.CANCELED}),
    S.FAILED: frozenset({S.QUEUED}),
    S.COMPLETED: frozenset({S.QUEUED}),
    S.CANCELED: frozenset({S.QUEUED}),
}

RUNNABLE = frozenset({S.QUEUED, S.SOFT_FAILED})
FINISHED = frozenset({S.COMPLETED, S.FAILED, S.CANCELED})
JOB_FINISHED = frozenset({JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELED})


J = JobStatus
# A job's status is derived from its tasks (derive_job_status) or set by an explicit action
# (pause, resume, cancel, requeue); either way it only moves along this table.
JOB_TRANSITIONS: dict[JobStatus, frozenset[JobStatus]] = {
    J.QUEUED: frozenset({J.ACTIVE, J.PAUSED, J.COMPLETED, J.FAILED, J.CANCELED}),
    J.ACTIVE: frozenset({J.QUEUED, J.PAUSED, J.COMPLETED, J.FAILED, J.CANCELED}),
    J.PAUSED: frozenset({J.QUEUED, J.ACTIVE, J.CANCELED, J.COMPLETED, J.FAILED}),
    J.COMPLETED: frozenset({J.QUEUED}),
    J.FAILED: frozenset({J.QUEUED}),
    J.CANCELED: frozenset({J.QUEUED}),
}


def derive_job_status(current: JobStatus, counts: dict[str, int]) -> JobStatus:
    """The status a job's task counts imply; a paused or canceled job keeps its status
    until it finishes or an action moves it."""
    total = sum(counts.get(v, 0) for v in _TASK_VALUES)
    if counts.get(S.FAILED.value):
        return J.FAILED
    if total and counts.get(S.COMPLETED.value, 0) == total:
        return J.COMPLETED
    if current in (J.PAUSED, J.CANCELED):
        return current
    if counts.get(S.ACTIVE.value) or counts.get(S.COMPLETED.value):
        return J.ACTIVE
    return J.QUEUED


def job_transition_is_legal(old: JobStatus, new: JobStatus) -> bool:
    return old == new or new in JOB_TRANSITIONS[old]


def is_legal(old: TaskStatus, new: TaskStatus) -> bool:
    return new in TRANSITIONS[old]


def check_transition(old: TaskStatus, new: TaskStatus) -> None:
    if not is_legal(old, new):
        raise IllegalTransition(f"a task cannot go from {old} to {new}")


def sources_of(new: TaskStatus) -> frozenset[TaskStatus]:
    """Every status a task may leave to reach `new` (used to guard updates)."""
    return _SOURCES[new]


_SOURCES = {new: frozenset(old for old, targets in TRANSITIONS.items() if new in targets)
            for new in TaskStatus}
_SOURCE_VALUES = {new.value: frozenset(s.value for s in olds) for new, olds in _SOURCES.items()}
_TASK_VALUES = tuple(s.value for s in TaskStatus)


def may_move(old: str, new: TaskStatus) -> bool:
    """Whether a task whose status (as text) is `old` may go to `new`."""
    return old in _SOURCE_VALUES[new.value]


# What clients see of a completed job some of whose tasks reported warnings (a file the
# .blend needs was missing, the denoiser was off): not plain "completed", so a script that
# checks for "completed" does not take possibly wrong frames for right ones. The store keeps
# the job COMPLETED (it is finished: nothing runs, requeue does not apply) and the warnings
# with its tasks; the status is shown from both.
COMPLETED_WITH_WARNINGS = "completed-with-warnings"
SHOWN_FINISHED = frozenset({*(s.value for s in JOB_FINISHED), COMPLETED_WITH_WARNINGS})


def shown_job_status(status: JobStatus, warned_tasks: int) -> str:
    """The job status clients see: COMPLETED_WITH_WARNINGS for a completed job with task
    warnings, else the stored status."""
    if status == JobStatus.COMPLETED and warned_tasks:
        return COMPLETED_WITH_WARNINGS
    return status.value
