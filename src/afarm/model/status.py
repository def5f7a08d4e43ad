# SPDX-License-Identifier: MIT
"""The closed set of task and job statuses and the one table of legal task transitions."""

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


def is_legal(old: TaskStatus, new: TaskStatus) -> bool:
    return new in TRANSITIONS[old]


def check_transition(old: TaskStatus, new: TaskStatus) -> None:
    if not is_legal(old, new):
        raise IllegalTransition(f"a task cannot go from {old} to {new}")


def sources_of(new: TaskStatus) -> frozenset[TaskStatus]:
    """Every status a task may leave to reach `new` (used to guard UPDATEs in SQL)."""
    return frozenset(old for old, targets in TRANSITIONS.items() if new in targets)
