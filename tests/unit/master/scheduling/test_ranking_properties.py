# SPDX-License-Identifier: MIT
"""Properties every ranking keeps, on farms hypothesis makes up: pareto never puts a slave
above one that dominates it, a change of units changes no ranking, and a slave that fails
a constraint is never ranked, nor given a task by the scheduler."""

import tempfile
from pathlib import Path

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from afarm.master.scheduling.properties import Properties
from afarm.master.scheduling.ranking import (
    PRESETS,
    Constraints,
    Matrix,
    admitted,
    make_policy,
    rank,
)
from afarm.master.scheduling.scheduler import Scheduler
from afarm.model.job import InputFile, JobSpec, TaskSpec
from afarm.model.policy import FailurePolicy
from afarm.store.db import Store
from tests.fakes import InstantPlace, NoResults

PROPS = ["speed", "watts_busy", "cost_per_frame", "reliability", "memory", "vram_gib"]
# Whole numbers with gaps: unit changes keep their order exactly (float rounding is
# monotone), as real measurements of different machines do.
VALUE = st.one_of(st.none(), st.integers(0, 10**6).map(float))
FACTOR = st.sampled_from([1000.0, 0.001, 100.0, 1 / 3.6, 3600.0, 1e-6])


@st.composite
def farms(draw: st.DrawFn) -> dict[str, dict[str, float]]:
    n = draw(st.integers(1, 12))
    rows = {}
    for i in range(n):
        row = {p: v for p in PROPS if (v := draw(VALUE)) is not None}
        rows[f"s{i:02d}"] = row
    return rows


@st.composite
def policies(draw: st.DrawFn) -> object:
    kind = draw(st.sampled_from(["lexicographic", "weighted", "pareto"]))
    keys = draw(st.lists(st.sampled_from(PROPS), min_size=1, max_size=4, unique=True))
    signed = [draw(st.sampled_from(["", "-", "+"])) + k
              + draw(st.sampled_from(["", "~0.1", "~0.25", "~0.5"])) for k in keys]
    weights = {k: float(draw(st.integers(0, 10))) for k in keys}
    return make_policy("drawn", kind, signed, weights)


POLICIES = st.one_of(policies(), st.sampled_from(list(PRESETS.values())))


@settings(max_examples=300, deadline=None, database=None)
@given(farms(), policies())
def test_a_dominated_slave_never_ranks_above_its_dominator_under_pareto(
        rows: dict[str, dict[str, float]], drawn: object) -> None:
    p = make_policy("p", "pareto", [str(k) for k in drawn.keys],  # type: ignore
                    dict(drawn.weights))  # type: ignore[attr-defined]
    m = Matrix.of(rows)
    r = rank(m, p)
    place = {i: pos for pos, i in enumerate(r.order)}
    o = np.stack([np.where(np.isfinite(c := m.column(k.name)), c * k.direction, -np.inf)
                  for k in p.keys], axis=1)
    for a in range(len(m.slaves)):
        for b in range(len(m.slaves)):
            if (o[a] >= o[b]).all() and (o[a] > o[b]).any():
                assert place[a] < place[b], (m.slaves[a], m.slaves[b], r.reasons)


@settings(max_examples=300, deadline=None, database=None)
@given(farms(), POLICIES, st.sampled_from(PROPS), FACTOR)
def test_scaling_a_propertys_units_changes_no_ranking(
        rows: dict[str, dict[str, float]], policy: object, prop: str,
        factor: float) -> None:
    scaled = {n: {k: (v * factor if k == prop else v) for k, v in row.items()}
              for n, row in rows.items()}
    before = rank(Matrix.of(rows), policy, deadline=None)  # type: ignore[arg-type]
    after = rank(Matrix.of(scaled), policy, deadline=None)  # type: ignore[arg-type]
    assert before.names == after.names


@settings(max_examples=200, deadline=None, database=None)
@given(farms(), st.sampled_from(list(PRESETS.values())), st.sampled_from(PROPS), FACTOR,
       st.integers(1, 1000), st.integers(1, 10**5))
def test_scaling_units_changes_no_ranking_within_a_deadline_either(
        rows: dict[str, dict[str, float]], policy: object, prop: str, factor: float,
        deadline: int, remaining: int) -> None:
    if prop == "speed":
        prop = "cost_per_frame"  # speed x seconds is the deadline's arithmetic itself
    scaled = {n: {k: (v * factor if k == prop else v) for k, v in row.items()}
              for n, row in rows.items()}
    kw = {"deadline": float(deadline), "remaining": remaining}
    before = rank(Matrix.of(rows), policy, **kw)  # type: ignore[arg-type]
    after = rank(Matrix.of(scaled), policy, **kw)  # type: ignore[arg-type]
    assert before.names == after.names and before.held == after.held


@settings(max_examples=300, deadline=None, database=None)
@given(farms(), POLICIES, st.integers(0, 10**6), st.sets(st.sampled_from("abc")),
       st.data())
def test_constraints_are_never_violated(rows: dict[str, dict[str, float]], policy: object,
                                        least: int, need: set[str], data: st.DataObject
                                        ) -> None:
    tags = {n: frozenset(data.draw(st.sets(st.sampled_from("abc")))) for n in rows}
    apps: dict[str, frozenset[str] | None] = {
        n: data.draw(st.one_of(st.none(), st.just(frozenset({"blender"})),
                               st.just(frozenset({"ffmpeg"})))) for n in rows}
    c = Constraints(minimum=(("memory", float(least)),), tags=frozenset(need),
                    application="blender")
    m = Matrix.of(rows)
    r = rank(m, policy, admitted(m, c, tags, apps))  # type: ignore[arg-type]
    for name in r.names:
        assert rows[name].get("memory", -1.0) >= least
        assert frozenset(need) <= tags[name]
        assert apps[name] is None or "blender" in apps[name]  # type: ignore[operator]
    # and every slave that meets them is ranked
    ok = {n for n in rows if rows[n].get("memory", -1.0) >= least
          and frozenset(need) <= tags[n] and (apps[n] is None or "blender" in apps[n])}
    assert set(r.names) == ok


@settings(max_examples=40, deadline=None, database=None)
@given(st.lists(st.one_of(st.none(), st.integers(1, 64)), min_size=1, max_size=8),
       st.integers(1, 64), st.sampled_from(["fastest", "greenest", "pareto", "weighted"]),
       st.lists(st.floats(0.1, 10), min_size=8, max_size=8))
def test_the_scheduler_never_gives_a_task_to_a_slave_below_the_jobs_minimum(
        memory_gib: list[int | None], least_gib: int, policy: str,
        speeds: list[float]) -> None:
    static = {f"s{i}": {"speed": speeds[i], "watts_busy": 100.0 * (i + 1),
                        **({"memory": float(g) * 2**30} if g is not None else {})}
              for i, g in enumerate(memory_gib)}
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(Path(tmp) / "db")
        try:
            sched = Scheduler(store, NoResults(), FailurePolicy(), lambda t, j: 60)
            for name in static:
                sched.places[name] = InstantPlace(name)  # type: ignore[assignment]
            sched.configure_ranking(Properties(static), policy)
            sched.load()
            spec = JobSpec(name="j", application="app", params={},
                           files=[InputFile("a.blend", "ab" * 32, 10)],
                           scheduling={"min_memory_mib": least_gib * 1024})
            job = store.add_job(spec, [TaskSpec(kind="render", label=f"f{n}",
                                                application="app", params={}, outputs=[],
                                                frames=1) for n in range(20)])
            sched.reload_job(job)
            given_to = {p.name for p, _ in sched._decide()}
        finally:
            store.close()
    able = {n for n, g in zip(static, memory_gib, strict=True)
            if g is not None and g >= least_gib}
    assert given_to == able
