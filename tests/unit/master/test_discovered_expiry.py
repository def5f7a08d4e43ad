# SPDX-License-Identifier: MIT
"""Discovered slaves over time: a pending one that leaves is gone, stale rows are forgotten
after [discovery] pending_expiry_hours, and the bound counts gone rows too."""

from collections.abc import Iterator
from pathlib import Path

import pytest

from afarm.discovery.browse import Found
from afarm.discovery.txt import Announcement
from afarm.master import discovered
from afarm.master.farm import Farm
from afarm.store import discovered as table

FP = "SHA256:" + "A" * 43
HOUR = 3600.0


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def setup(tmp_path: Path) -> Iterator[tuple[discovered.Discovery, Clock]]:
    clock = Clock()
    farm = Farm(tmp_path, {}, clock=clock)
    d = discovered.Discovery(farm, tmp_path, None, ("127.0.0.1", 7731), max_pending=2,
                             pending_expiry=24 * HOUR)
    yield d, clock
    farm.store.close()


def found(name: str, service: str | None = None) -> Found:
    return Found(Announcement(name, FP, (), "0.3.0", 22, 7733), "10.0.0.5",
                 service or name)


def states(d: discovered.Discovery) -> dict[str, str]:
    return {r.name: r.state for r in d.rows()}


def test_a_pending_slave_that_leaves_is_gone_then_forgotten_after_the_expiry(
        setup: tuple[discovered.Discovery, Clock]) -> None:
    d, clock = setup
    d.observe(found("r1"))
    clock.now += 2 * 24 * HOUR
    assert states(d) == {"r1": "pending"}  # still announced: kept however old
    d.lost("r1")
    assert states(d) == {"r1": "gone"}
    clock.now += 23 * HOUR
    assert states(d) == {"r1": "gone"}
    clock.now += 2 * HOUR
    assert states(d) == {}


def test_a_pending_row_not_announced_since_the_master_started_expires(
        setup: tuple[discovered.Discovery, Clock]) -> None:
    d, clock = setup
    with d.farm.store.transaction():
        table.put(d.farm.store.db, table.Discovered("old", "pending", FP, "10.0.0.9", 22,
                                                    7733, (), "0.3.0", clock.now, clock.now))
    clock.now += 25 * HOUR
    assert states(d) == {}


def test_gone_rows_count_towards_the_bound_until_they_expire(
        setup: tuple[discovered.Discovery, Clock]) -> None:
    d, clock = setup
    for name in ("r1", "r2"):
        d.observe(found(name))
        d.lost(name)
    d.observe(found("r3"))
    assert states(d) == {"r1": "gone", "r2": "gone"}
    clock.now += 25 * HOUR
    d.observe(found("r3"))
    assert states(d) == {"r3": "pending"}


def test_a_slave_announced_under_another_instance_name_too_is_not_gone_when_one_goes(
        setup: tuple[discovered.Discovery, Clock]) -> None:
    d, _ = setup
    d.observe(found("r1", "r1"))
    d.observe(found("r1", "r1 (2)"))
    d.lost("r1")
    assert states(d) == {"r1": "pending"}
    d.lost("r1 (2)")
    assert states(d) == {"r1": "gone"}
