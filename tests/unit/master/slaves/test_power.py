# SPDX-License-Identifier: MIT
"""The power policy: wakes for the queue, floors, min_sleep, windows, rate, timeouts."""

from dataclasses import replace
from datetime import UTC, datetime

import pytest

from afarm.master.slaves.power import (
    Action,
    Demand,
    PowerSettings,
    PowerSlave,
    decide,
    parse_keep_awake,
    parse_window,
)

# Wednesday 2026-12-02 12:00 UTC
NOON = datetime(2026, 12, 2, 12, 0, tzinfo=UTC).timestamp()
ON = PowerSettings(enabled=True, idle_suspend=30, resume_timeout=60, wake_rate=10,
                   min_sleep=10)
RENDER = frozenset({"render"})


def slave(name: str, state: str, since: float = NOON - 3600, **kw: object) -> PowerSlave:
    return PowerSlave(name, state, since, **{"wakeable": True, **kw})  # type: ignore[arg-type]


def kinds(actions: list[Action]) -> list[tuple[str, str]]:
    return [(a.kind, a.slave) for a in actions]


def test_nothing_happens_when_power_management_is_off() -> None:
    assert decide([slave("a", "idle")], [], PowerSettings(), NOON, tz=UTC) == []


def test_a_slave_idle_past_idle_suspend_is_suspended() -> None:
    acts = decide([slave("a", "online", NOON - 31 * 60)], [], ON, NOON, tz=UTC)
    assert kinds(acts) == [("suspend", "a")]


def test_a_slave_without_a_mac_is_never_suspended() -> None:
    s = slave("a", "idle", NOON - 99 * 60, wakeable=False)
    assert decide([s], [], ON, NOON, tz=UTC) == []


def test_a_slave_idle_shorter_than_idle_suspend_stays_up() -> None:
    assert decide([slave("a", "idle", NOON - 29 * 60)], [], ON, NOON, tz=UTC) == []


def test_a_slave_with_a_running_task_is_never_suspended() -> None:
    busy = [slave("a", "online", NOON - 99 * 60, running=1, slots=2),
            slave("b", "draining", NOON - 99 * 60, running=1)]
    assert decide(busy, [], ON, NOON, tz=UTC) == []


def test_queued_work_beyond_awake_capacity_wakes_the_best_ranked_sleepers() -> None:
    slaves = [slave("up", "idle", NOON - 60, slots=2),
              slave("slow", "asleep", rank=3), slave("fast", "asleep", rank=1),
              slave("mid", "asleep", rank=2), slave("nomac", "asleep", rank=0,
                                                     wakeable=False)]
    acts = decide(slaves, [Demand(frozenset(), 4)], ON, NOON, tz=UTC)
    assert kinds(acts) == [("wake", "fast"), ("wake", "mid")]


def test_queued_work_the_awake_slaves_can_take_wakes_nobody() -> None:
    slaves = [slave("up", "idle", NOON - 60, slots=4, running=1), slave("s", "asleep")]
    assert decide(slaves, [Demand(frozenset(), 3)], ON, NOON, tz=UTC) == []


def test_work_that_needs_a_tag_wakes_only_slaves_with_it() -> None:
    slaves = [slave("plain", "asleep", rank=0), slave("r", "asleep", rank=5, tags=RENDER)]
    acts = decide(slaves, [Demand(RENDER, 1)], ON, NOON, tz=UTC)
    assert kinds(acts) == [("wake", "r")]


def test_wake_rate_caps_wakes_per_minute_counting_earlier_ones() -> None:
    slaves = [slave(f"s{i}", "asleep", rank=i) for i in range(10)]
    rate = replace(ON, wake_rate=3)
    acts = decide(slaves, [Demand(frozenset(), 10)], rate, NOON, [NOON - 10, NOON - 70],
                  tz=UTC)
    assert kinds(acts) == [("wake", "s0"), ("wake", "s1")]


def test_a_slave_asleep_shorter_than_min_sleep_is_still_woken_for_the_queue() -> None:
    acts = decide([slave("a", "asleep", NOON - 60)], [Demand(frozenset(), 1)], ON, NOON,
                  tz=UTC)
    assert kinds(acts) == [("wake", "a")]


def test_the_floor_does_not_wake_a_slave_before_min_sleep() -> None:
    floor = replace(ON, keep_awake=(("*", 1),))
    assert decide([slave("a", "asleep", NOON - 60)], [], floor, NOON, tz=UTC) == []
    acts = decide([slave("a", "asleep", NOON - 11 * 60)], [], floor, NOON, tz=UTC)
    assert kinds(acts) == [("wake", "a")]


def test_the_floor_per_tag_keeps_the_best_ranked_awake() -> None:
    floor = replace(ON, keep_awake=(("render", 2),))
    slaves = [slave(n, "idle", NOON - 3600, tags=RENDER, rank=r)
              for n, r in (("best", 0), ("second", 1), ("worst", 2))]
    slaves.append(slave("other", "idle", NOON - 3600, rank=3))
    acts = decide(slaves, [], floor, NOON, tz=UTC)
    assert sorted(kinds(acts)) == [("suspend", "other"), ("suspend", "worst")]


def test_a_floor_of_zero_lets_every_idle_slave_sleep() -> None:
    floor = replace(ON, keep_awake=(("*", 0),))
    slaves = [slave(n, "idle", NOON - 3600) for n in "abc"]
    assert len(decide(slaves, [], floor, NOON, tz=UTC)) == 3


def test_excluded_slaves_and_tags_never_sleep() -> None:
    excl = replace(ON, exclude=frozenset({"a", "office"}))
    slaves = [slave("a", "idle"), slave("b", "idle", tags=frozenset({"office"})),
              slave("c", "idle")]
    assert kinds(decide(slaves, [], excl, NOON, tz=UTC)) == [("suspend", "c")]


def test_windows_decide_when_a_slave_may_sleep() -> None:
    night = replace(ON, windows=(parse_window("mon-fri 20:00-07:00"),))
    s = slave("office", "idle", NOON - 3600 * 5)
    assert decide([s], [], night, NOON, tz=UTC) == []  # Wednesday noon
    wed_night = NOON + 9 * 3600  # 21:00
    assert kinds(decide([s], [], night, wed_night, tz=UTC)) == [("suspend", "office")]
    sat_early = datetime(2026, 12, 5, 6, 0, tzinfo=UTC).timestamp()  # after Friday 20:00
    assert kinds(decide([s], [], night, sat_early, tz=UTC)) == [("suspend", "office")]
    sat_late = datetime(2026, 12, 5, 8, 0, tzinfo=UTC).timestamp()
    assert decide([s], [], night, sat_late, tz=UTC) == []


def test_a_slaves_own_windows_override_the_sites() -> None:
    s = slave("x", "idle", windows=(parse_window("* 00:00-24:00"),))
    night = replace(ON, windows=(parse_window("mon-fri 20:00-07:00"),))
    assert kinds(decide([s], [], night, NOON, tz=UTC)) == [("suspend", "x")]


def test_a_slave_with_queued_work_it_could_take_is_not_suspended() -> None:
    s = slave("a", "idle", NOON - 3600)
    assert decide([s], [Demand(frozenset(), 1)], ON, NOON, tz=UTC) == []


def test_resume_timeout_marks_a_waking_slave_down_and_wakes_another_for_its_work() -> None:
    slaves = [slave("late", "waking", NOON - 61, woken_at=NOON - 5, rank=0),
              slave("next", "asleep", rank=1)]
    acts = decide(slaves, [Demand(frozenset(), 1)], ON, NOON, tz=UTC)
    assert kinds(acts) == [("down", "late"), ("wake", "next")]


def test_a_waking_slave_gets_its_packet_again_before_the_timeout() -> None:
    s = slave("w", "waking", NOON - 30, woken_at=NOON - 20)
    assert kinds(decide([s], [Demand(frozenset(), 1)], ON, NOON, tz=UTC)) == \
        [("resend", "w")]
    s = slave("w", "waking", NOON - 30, woken_at=NOON - 5)
    assert decide([s], [Demand(frozenset(), 1)], ON, NOON, tz=UTC) == []


def test_a_down_slave_is_tried_again_after_retry_down() -> None:
    d = [Demand(frozenset(), 1)]
    assert decide([slave("d", "down", NOON - 60)], d, ON, NOON, tz=UTC) == []
    acts = decide([slave("d", "down", NOON - 11 * 60)], d, ON, NOON, tz=UTC)
    assert kinds(acts) == [("wake", "d")]


def test_a_draining_slave_sleeps_once_its_tasks_ended() -> None:
    acts = decide([slave("d", "draining", NOON - 5)], [], ON, NOON, tz=UTC)
    assert kinds(acts) == [("suspend", "d")]


def test_quarantined_and_pending_slaves_are_left_alone() -> None:
    slaves = [slave("q", "quarantined"), slave("p", "pending")]
    assert decide(slaves, [Demand(frozenset(), 5)], ON, NOON, tz=UTC) == []


@pytest.mark.parametrize("text", ["mon-fri", "funday 20:00-07:00", "mon 25:00-07:00",
                                  "mon 07:00-07:00"])
def test_a_bad_window_is_refused_with_the_expected_form(text: str) -> None:
    with pytest.raises(ValueError, match="sleep window"):
        parse_window(text)


def test_keep_awake_is_tag_colon_count() -> None:
    assert parse_keep_awake(["render:2", "*:1"]) == (("render", 2), ("*", 1))
    with pytest.raises(ValueError, match="TAG:N"):
        parse_keep_awake(["render"])


# -- what the queued work needs (issue 11, second round) ---------------------------------
GIB = float(1 << 30)


def test_a_sleeper_without_the_application_is_not_woken_and_one_with_it_is() -> None:
    slaves = [slave("ffmpeg-only", "asleep", rank=0, applications=frozenset({"ffmpeg"})),
              slave("renders", "asleep", rank=1, applications=frozenset({"blender"}))]
    acts = decide(slaves, [Demand(frozenset(), 1, "blender")], ON, NOON, tz=UTC)
    assert kinds(acts) == [("wake", "renders")]


def test_a_sleeper_not_known_to_lack_the_application_may_be_woken() -> None:
    acts = decide([slave("new", "asleep")], [Demand(frozenset(), 1, "blender")], ON, NOON,
                  tz=UTC)
    assert kinds(acts) == [("wake", "new")]


def test_a_sleeper_below_the_jobs_minimum_memory_is_not_woken() -> None:
    slaves = [slave("small", "asleep", rank=0, memory=4 * GIB),
              slave("unknown", "asleep", rank=1),
              slave("big", "asleep", rank=2, memory=64 * GIB)]
    acts = decide(slaves, [Demand(frozenset(), 1, min_memory=16 * GIB)], ON, NOON, tz=UTC)
    assert kinds(acts) == [("wake", "big")]


def test_a_sleeper_with_too_few_gpus_is_not_woken() -> None:
    slaves = [slave("cpu", "asleep", rank=0), slave("gpu", "asleep", rank=1, gpus=2)]
    acts = decide(slaves, [Demand(frozenset(), 1, gpus=1)], ON, NOON, tz=UTC)
    assert kinds(acts) == [("wake", "gpu")]


def test_a_sleeper_quarantined_for_the_jobs_pool_version_is_not_woken() -> None:
    slaves = [slave("bad", "asleep", rank=0, quarantined=frozenset({"blender/4.2"})),
              slave("good", "asleep", rank=1)]
    acts = decide(slaves, [Demand(frozenset(), 1, "blender", "4.2")], ON, NOON, tz=UTC)
    assert kinds(acts) == [("wake", "good")]


def test_an_awake_slave_that_cannot_take_the_work_does_not_count_as_its_capacity() -> None:
    slaves = [slave("small", "idle", NOON - 60, memory=4 * GIB),
              slave("big", "asleep", memory=64 * GIB)]
    acts = decide(slaves, [Demand(frozenset(), 1, min_memory=16 * GIB)], ON, NOON, tz=UTC)
    assert kinds(acts) == [("wake", "big")]


def test_an_idle_slave_that_cannot_take_the_queued_work_is_still_suspended() -> None:
    s = slave("small", "idle", NOON - 31 * 60, memory=4 * GIB)
    acts = decide([s], [Demand(frozenset(), 5, min_memory=16 * GIB)], ON, NOON, tz=UTC)
    assert kinds(acts) == [("suspend", "small")]


# -- unreachable: switched off by a person -----------------------------------------------
def test_queued_work_wakes_an_unreachable_slave_after_retry_down() -> None:
    off = slave("off", "unreachable", NOON - 11 * 60)
    acts = decide([off], [Demand(frozenset(), 1)], ON, NOON, tz=UTC)
    assert kinds(acts) == [("wake", "off")]


def test_an_unreachable_slave_is_left_alone_within_retry_down() -> None:
    off = slave("off", "unreachable", NOON - 5 * 60)
    assert decide([off], [Demand(frozenset(), 1)], ON, NOON, tz=UTC) == []


def test_an_unreachable_slave_is_not_woken_for_the_floor_nor_without_a_mac() -> None:
    floor = replace(ON, keep_awake=(("*", 1),))
    assert decide([slave("off", "unreachable", NOON - 99 * 60)], [], floor, NOON,
                  tz=UTC) == []
    no_mac = slave("off", "unreachable", NOON - 99 * 60, wakeable=False)
    assert decide([no_mac], [Demand(frozenset(), 1)], ON, NOON, tz=UTC) == []


# -- drained by hand ----------------------------------------------------------------------
def test_a_drained_sleeper_is_never_woken_for_work_or_the_floor() -> None:
    floor = replace(ON, keep_awake=(("*", 1),))
    s = slave("d", "asleep", NOON - 99 * 60, drained=True)
    assert decide([s], [Demand(frozenset(), 3)], floor, NOON, tz=UTC) == []


def test_a_drained_slave_is_suspended_once_its_tasks_ended_even_with_work_queued() -> None:
    running = slave("d", "draining", NOON - 60, drained=True, running=1)
    assert decide([running], [Demand(frozenset(), 3)], ON, NOON, tz=UTC) == []
    done = replace(running, running=0)
    acts = decide([done], [Demand(frozenset(), 3)], ON, NOON, tz=UTC)
    assert kinds(acts) == [("suspend", "d")]


def test_a_drained_slave_does_not_hold_the_floor_nor_count_as_capacity() -> None:
    floor = replace(ON, keep_awake=(("*", 1),))
    slaves = [slave("d", "testing", NOON - 60, drained=True),
              slave("b", "asleep", NOON - 99 * 60)]
    acts = decide(slaves, [Demand(frozenset(), 1)], floor, NOON, tz=UTC)
    assert ("wake", "b") in kinds(acts)


def test_a_sleeper_of_an_architecture_the_pool_version_lacks_is_not_woken() -> None:
    slaves = [slave("arm", "asleep", rank=0, arch="arm64"),
              slave("pc", "asleep", rank=1, arch="amd64")]
    need = Demand(frozenset(), 1, "blender", "4.2", arches=frozenset({"amd64"}))
    assert kinds(decide(slaves, [need], ON, NOON, tz=UTC)) == [("wake", "pc")]
    anywhere = Demand(frozenset(), 1, "blender", "4.2", arches=frozenset({"all"}))
    assert kinds(decide(slaves, [anywhere], ON, NOON, tz=UTC)) == [("wake", "arm")]
