# SPDX-License-Identifier: MIT
"""Each ranking policy on small hand-made farms, and why each slave stands where it does."""

import math

import numpy as np
import pytest

from afarm.master.scheduling.ranking import (
    PRESETS,
    Constraints,
    Key,
    Matrix,
    admitted,
    make_policy,
    pareto_fronts,
    rank,
    tail_defers,
)

FARM = {
    "old": {"speed": 1.0, "watts_busy": 300.0, "reliability": 1.0},
    "mid": {"speed": 2.0, "watts_busy": 200.0, "reliability": 0.9},
    "new": {"speed": 4.0, "watts_busy": 250.0, "reliability": 1.0},
    "eco": {"speed": 1.0, "watts_busy": 60.0, "reliability": 1.0},
}


def names(rows: dict[str, dict[str, float]], policy_kind: str, *keys: str,
          weights: dict[str, float] | None = None) -> list[str]:
    p = make_policy("t", policy_kind, list(keys), weights)
    return rank(Matrix.of(rows), p).names


def test_a_key_parses_direction_and_tolerance() -> None:
    assert Key.parse("-watts_busy~0.1") == Key("watts_busy", -1, 0.1)
    assert Key.parse("speed") == Key("speed", 1, 0.0)
    assert Key.parse("watts_busy").direction == -1  # built-in: lower is better
    assert Key.parse("+vram_gib").direction == 1


@pytest.mark.parametrize("bad", ["", "-", "speed~2", "speed~x", "sp eed", "a;b"])
def test_a_bad_key_is_refused_with_the_form_to_use(bad: str) -> None:
    with pytest.raises(ValueError, match="NAME|tolerance"):
        Key.parse(bad)


def test_lexicographic_orders_by_the_first_key_then_breaks_ties_with_the_next() -> None:
    assert names(FARM, "lexicographic", "speed", "-watts_busy") == ["new", "mid", "eco", "old"]


def test_lexicographic_tolerance_makes_close_values_tie_so_the_next_key_decides() -> None:
    rows = {"a": {"speed": 10.0, "watts_busy": 300.0}, "b": {"speed": 9.8, "watts_busy": 100.0},
            "c": {"speed": 1.0, "watts_busy": 50.0}}
    assert names(rows, "lexicographic", "speed", "-watts_busy") == ["a", "b", "c"]
    # within 5 % of the range (0.45) of the best speed, a and b tie: watts decide
    assert names(rows, "lexicographic", "speed~0.05", "-watts_busy") == ["b", "a", "c"]


def test_weighted_trades_speed_against_watts_by_the_weights() -> None:
    assert names(FARM, "weighted", "speed", "watts_busy",
                 weights={"speed": 1.0, "watts_busy": 0.0})[0] == "new"
    assert names(FARM, "weighted", "speed", "watts_busy",
                 weights={"speed": 0.0, "watts_busy": 1.0})[0] == "eco"


def test_pareto_puts_every_non_dominated_slave_before_the_dominated_ones() -> None:
    m = Matrix.of(FARM)
    keys = (Key("speed", 1), Key("watts_busy", -1))
    fronts = pareto_fronts(m, keys, np.arange(4))
    by_name = {m.slaves[i]: f for i, f in fronts.items()}
    # new (fastest), mid (faster than eco, fewer watts than new) and eco (fewest watts)
    # are beaten by nobody on both keys; old is dominated by mid and eco.
    assert by_name == {"new": 1, "mid": 1, "eco": 1, "old": 2}
    r = rank(m, make_policy("p", "pareto", ["speed", "watts_busy"], {"speed": 0.7,
                                                                     "watts_busy": 0.3}))
    assert r.names[-1] == "old"
    assert r.names[0] == "new"  # the speed weight breaks the front's tie
    assert "pareto front 1" in r.reasons[m.slaves.index("new")]
    assert "speed 0.7" in r.reasons[m.slaves.index("new")]


def test_cheapest_within_deadline_holds_back_what_the_deadline_does_not_need() -> None:
    rows = {f"s{i}": {"speed": 1.0, "cost_per_frame": float(i), "slots": 1.0}
            for i in range(1, 6)}
    m = Matrix.of(rows)
    p = PRESETS["cheapest-within-deadline"]
    r = rank(m, p, deadline=100.0, remaining=250)  # each does 100 in time: 3 are needed
    assert r.names == ["s1", "s2", "s3", "s4", "s5"]
    assert {m.slaves[i] for i in r.held} == {"s4", "s5"}
    assert "not needed" in r.reasons[m.slaves.index("s4")]


def test_cheapest_within_deadline_without_a_deadline_ranks_as_fastest() -> None:
    rows = {"slow_cheap": {"speed": 1.0, "cost_per_frame": 0.1},
            "fast_dear": {"speed": 5.0, "cost_per_frame": 0.9}}
    r = rank(Matrix.of(rows), PRESETS["cheapest-within-deadline"])
    assert r.names == ["fast_dear", "slow_cheap"]
    assert not r.held
    assert "no deadline" in r.reasons[0]


def test_a_missing_value_ranks_as_the_worst() -> None:
    rows = {"known": {"speed": 0.5}, "a-unknown": {}, "fast": {"speed": 3.0}}
    for kind in ("lexicographic", "weighted", "pareto"):
        assert names(rows, kind, "speed") == ["fast", "known", "a-unknown"], kind
    # a tolerance of the whole range ties every known value (by name), never the unknown
    assert names(rows, "lexicographic", "speed~1") == ["fast", "known", "a-unknown"]


def test_constraints_leave_out_slaves_lacking_memory_tags_or_the_application() -> None:
    rows = {"big": {"memory": 64e9}, "small": {"memory": 4e9}, "blind": {},
            "untagged": {"memory": 64e9}, "noapp": {"memory": 64e9}}
    m = Matrix.of(rows)
    c = Constraints(minimum=(("memory", 16e9),), tags=frozenset({"gpu"}),
                    application="blender")
    tags = {n: frozenset({"gpu"}) for n in rows} | {"untagged": frozenset()}
    apps: dict[str, frozenset[str] | None] = {n: None for n in rows}
    apps["noapp"] = frozenset({"ffmpeg"})
    out = {m.slaves[i]: why for i, why in admitted(m, c, tags, apps).items()}
    assert set(out) == {"small", "blind", "untagged", "noapp"}
    assert "below the job's minimum" in out["small"] and "unknown" in out["blind"]
    assert "gpu" in out["untagged"] and "blender" in out["noapp"]
    r = rank(m, PRESETS["fastest"], admitted(m, c, tags, apps))
    assert r.names == ["big"]
    assert {row["slave"] for row in r.to_json()["slaves"]  # type: ignore[attr-defined]
            if row["position"] is None} == set(out)


def test_the_ranking_as_json_has_the_matrix_the_policy_and_a_reason_per_slave() -> None:
    data = rank(Matrix.of(FARM), PRESETS["fastest"]).to_json()
    assert data["policy"] == "fastest" and data["kind"] == "lexicographic"
    rows = data["slaves"]
    assert [r["slave"] for r in rows] == ["new", "mid", "eco", "old"]  # type: ignore
    assert all(r["why"] for r in rows)  # type: ignore[attr-defined]
    assert rows[0]["properties"]["speed"] == 4.0  # type: ignore[index]


def test_a_policy_definition_with_an_unknown_kind_or_no_keys_is_refused() -> None:
    with pytest.raises(ValueError, match="kind"):
        make_policy("x", "random", ["speed"])
    with pytest.raises(ValueError, match="at least one key"):
        make_policy("x", "weighted", [])


def test_tail_avoidance_defers_only_when_faster_busy_slots_can_take_every_task_left() -> None:
    # a slot 4x faster finishes its (on average half done) running task and 3 more while
    # a 1/s slave does one
    busy = np.array([4.0, 4.0])
    assert tail_defers(1.0, left=6, busy=busy)
    assert not tail_defers(1.0, left=7, busy=busy)
    # 1.5x faster takes one; a slot only 1.4x as fast is no help
    assert tail_defers(1.0, left=1, busy=np.array([1.5]))
    assert not tail_defers(1.0, left=1, busy=np.array([1.4, 1.4]))
    assert not tail_defers(math.nan, left=1, busy=busy)
    assert not tail_defers(1.0, left=1, busy=np.array([]))
