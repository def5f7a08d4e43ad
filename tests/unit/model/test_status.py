# SPDX-License-Identifier: MIT
import pytest

from afarm.errors import IllegalTransition
from afarm.model.status import TRANSITIONS, TaskStatus, check_transition, sources_of


def test_every_status_has_a_row_in_the_transition_table() -> None:
    assert set(TRANSITIONS) == set(TaskStatus)


def test_a_completed_task_only_leaves_through_requeue() -> None:
    assert TRANSITIONS[TaskStatus.COMPLETED] == {TaskStatus.QUEUED}
    with pytest.raises(IllegalTransition):
        check_transition(TaskStatus.COMPLETED, TaskStatus.ACTIVE)


def test_only_runnable_statuses_can_become_active() -> None:
    assert sources_of(TaskStatus.ACTIVE) == {TaskStatus.QUEUED, TaskStatus.SOFT_FAILED}


def test_an_active_task_can_go_back_to_the_queue_when_its_slave_vanishes() -> None:
    check_transition(TaskStatus.ACTIVE, TaskStatus.QUEUED)
