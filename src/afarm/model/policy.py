# SPDX-License-Identifier: MIT
"""The failure policy as a pure function: what a task's failure means for it and its slave.

The store only records facts (who failed what, when); the scheduler asks this module what
they mean, so the rule can be read, tested and changed in one place.
"""

from dataclasses import dataclass

from afarm.model.status import TaskStatus


@dataclass(frozen=True)
class FailurePolicy:
    slave_failures_per_job: int = 3  # a slave failing this many tasks of a job is blocklisted
    slaves_per_task: int = 3  # a task failed on this many different slaves fails for good


@dataclass(frozen=True)
class FailureDecision:
    status: TaskStatus  # SOFT_FAILED (another slave may try) or FAILED (for good)
    blocklist: bool  # the failing slave takes no more tasks of this job


def decide_failure(policy: FailurePolicy, *, slave: str | None, failures_in_job: int,
                   failed_on: set[str], blocked: set[str],
                   eligible: set[str]) -> FailureDecision:
    """Decide after a failure; every count and set already includes this failure.

    `slave` is None for tasks the master runs itself: there is no other place to retry
    them, so their failure is final. `eligible` is every slave that could take the task.
    """
    if slave is None:
        return FailureDecision(TaskStatus.FAILED, False)
    blocklist = failures_in_job >= policy.slave_failures_per_job
    now_blocked = blocked | ({slave} if blocklist else set())
    left = eligible - failed_on - now_blocked
    final = len(failed_on) >= policy.slaves_per_task or not left
    return FailureDecision(TaskStatus.FAILED if final else TaskStatus.SOFT_FAILED, blocklist)
