# SPDX-License-Identifier: MIT
"""A slave's measured energy crosses the wire only as a believable number."""

import pytest

from afarm.protocol.messages import MAX_ENERGY_J, TaskReply


def test_a_measured_energy_survives_the_round_trip() -> None:
    wire = TaskReply(3, 1, exit_code=0, seconds=2.5, energy_j=41.25).to_wire()
    assert TaskReply.from_wire(wire).energy_j == 41.25


def test_an_old_agent_without_energy_is_read_as_unknown() -> None:
    assert TaskReply.from_wire({"op": "done", "task": 3, "attempt": 1}).energy_j is None


@pytest.mark.parametrize("bad", [-1, float("nan"), float("inf"), MAX_ENERGY_J * 2, "12",
                                 True, [1], None])
def test_a_nonsense_energy_is_dropped_not_trusted(bad: object) -> None:
    msg = {"op": "done", "task": 3, "attempt": 1, "energy_j": bad}
    assert TaskReply.from_wire(msg).energy_j is None
