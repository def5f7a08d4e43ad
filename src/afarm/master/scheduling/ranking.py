# SPDX-License-Identifier: MIT
"""Rank slaves by any number of properties: a slaves x n matrix, constraints, then a policy.

Properties are open-ended: the matrix has a column for every name any slave has (speed,
watts, cost_per_frame, ..., and whatever a slave definition adds); a slave without a value
has NaN there, which counts as the worst value seen. Every policy compares values only
through their order or their place within the column's range, never their raw size, so a
property given in W or kW, per kWh or per MWh ranks the same. Pure functions: the scheduler
and `afarmctl slaves --rank` call the same code.
"""

import math
from collections import Counter
from dataclasses import dataclass, field

import numpy as np

# Which way is better for the built-in properties: +1 higher, -1 lower. A property a slave
# definition adds is higher-is-better unless a policy key says "-NAME".
DIRECTION: dict[str, int] = {
    "speed": 1, "watts_idle": -1, "watts_busy": -1, "price": -1, "cost_per_frame": -1,
    "energy_per_frame": -1, "memory": 1, "cores": 1, "gpus": 1, "slots": 1,
    "reliability": 1, "load": -1, "locality": 1}
UNITS: dict[str, str] = {
    "speed": "frames/s", "watts_idle": "W", "watts_busy": "W", "price": "per kWh",
    "cost_per_frame": "per frame", "energy_per_frame": "Wh/frame", "memory": "bytes",
    "reliability": "ratio", "load": "ratio", "locality": "0/1"}
KINDS = ("lexicographic", "weighted", "pareto", "cheapest-within-deadline")
EPS = 1e-9  # normalised values closer than this are equal (float noise of a unit change)


@dataclass(frozen=True)
class Key:
    """One property a policy looks at: its name, which way is better, and how close to the
    best value (as a fraction of the column's range) still counts as a tie."""

    name: str
    direction: int = 1
    tolerance: float = 0.0

    @classmethod
    def parse(cls, text: str) -> "Key":
        """``[+|-]NAME[~TOLERANCE]``: ``-watts_busy``, ``speed~0.1``."""
        t = text.strip()
        sign = 0
        if t[:1] in "+-" and t:
            sign, t = (1 if t[0] == "+" else -1), t[1:]
        name, _, tol = t.partition("~")
        if not name or not all(c.isalnum() or c == "_" for c in name):
            raise ValueError(f"policy key {text!r}: give [+|-]NAME[~TOLERANCE], e.g."
                             " -watts_busy or speed~0.1")
        try:
            tolerance = float(tol) if tol else 0.0
        except ValueError:
            raise ValueError(f"policy key {text!r}: the tolerance after ~ must be a number"
                             " from 0 to 1") from None
        if not 0 <= tolerance <= 1:
            raise ValueError(f"policy key {text!r}: the tolerance must be from 0 to 1")
        return cls(name, sign or DIRECTION.get(name, 1), tolerance)

    def __str__(self) -> str:
        sign = "-" if self.direction < 0 else "+"
        return f"{sign}{self.name}" + (f"~{self.tolerance:g}" if self.tolerance else "")


@dataclass(frozen=True)
class Policy:
    name: str
    kind: str
    keys: tuple[Key, ...]
    weights: tuple[tuple[str, float], ...] = ()

    def weight(self, name: str) -> float:
        for n, w in self.weights:
            if n == name:
                return w
        return 0.0 if self.weights else 1.0

    def describe(self) -> str:
        text = f"{self.name} ({self.kind}: " + ", ".join(map(str, self.keys))
        if self.weights:
            text += "; weights " + ", ".join(f"{n} {w:g}" for n, w in self.weights)
        return text + ")"

    @property
    def columns(self) -> frozenset[str]:
        return frozenset(k.name for k in self.keys)


def _keys(*texts: str) -> tuple[Key, ...]:
    return tuple(Key.parse(t) for t in texts)


PRESETS: dict[str, Policy] = {p.name: p for p in (
    Policy("fastest", "lexicographic", _keys("speed", "reliability", "cost_per_frame")),
    # Without prices (none in master.conf) cost_per_frame is unknown everywhere and the
    # energy per frame decides: cheapest is then greenest.
    Policy("cheapest", "lexicographic", _keys("cost_per_frame", "energy_per_frame", "speed")),
    Policy("greenest", "lexicographic", _keys("energy_per_frame", "speed")),
    Policy("lexicographic", "lexicographic",
           _keys("reliability~0.1", "speed~0.1", "cost_per_frame")),
    Policy("weighted", "weighted", _keys("speed", "cost_per_frame", "reliability"),
           (("speed", 0.5), ("cost_per_frame", 0.3), ("reliability", 0.2))),
    Policy("pareto", "pareto", _keys("speed", "cost_per_frame", "reliability"),
           (("speed", 0.5), ("cost_per_frame", 0.3), ("reliability", 0.2))),
    Policy("cheapest-within-deadline", "cheapest-within-deadline",
           _keys("cost_per_frame", "energy_per_frame", "speed")),
)}


def make_policy(name: str, kind: str, keys: list[str],
                weights: dict[str, float] | None = None) -> Policy:
    """A policy from its configuration; raises ValueError naming what is wrong."""
    if kind not in KINDS:
        raise ValueError(f"policy {name}: kind {kind!r} is not one of " + ", ".join(KINDS))
    parsed = tuple(Key.parse(k) for k in keys)
    if not parsed and kind != "cheapest-within-deadline":
        raise ValueError(f"policy {name}: give at least one key (keys = speed, -watts_busy)")
    for n, w in (weights or {}).items():
        if not (w >= 0 and math.isfinite(w)):
            raise ValueError(f"policy {name}: weight of {n} must be 0 or more")
    if kind == "cheapest-within-deadline" and not parsed:
        parsed = PRESETS[kind].keys
    return Policy(name, kind, parsed, tuple(sorted((weights or {}).items())))


@dataclass
class Matrix:
    """Slaves x properties; NaN where a slave lacks a property."""

    slaves: list[str]
    columns: list[str]
    values: np.ndarray

    @classmethod
    def of(cls, rows: dict[str, dict[str, float]]) -> "Matrix":
        names = sorted(rows)
        cols = sorted({c for r in rows.values() for c in r})
        values = np.full((len(names), len(cols)), np.nan)
        where = {c: j for j, c in enumerate(cols)}
        for i, n in enumerate(names):
            for c, v in rows[n].items():
                values[i, where[c]] = v
        return cls(names, cols, values)

    def column(self, name: str) -> np.ndarray:
        if name in self.columns:
            col: np.ndarray = self.values[:, self.columns.index(name)]
            return col
        return np.full(len(self.slaves), np.nan)

    def value(self, i: int, name: str) -> float:
        return float(self.column(name)[i])


@dataclass(frozen=True)
class Constraints:
    """What a slave must have to be ranked at all: property minimums (memory in bytes,
    gpus), tags and the application."""

    minimum: tuple[tuple[str, float], ...] = ()
    tags: frozenset[str] = frozenset()
    application: str | None = None


def admitted(m: Matrix, c: Constraints, tags: dict[str, frozenset[str]],
             apps: dict[str, frozenset[str] | None]) -> dict[int, str]:
    """Rows that fail a constraint, with the reason; rows not listed pass."""
    out: dict[int, str] = {}
    for i, name in enumerate(m.slaves):
        for prop, least in c.minimum:
            v = m.value(i, prop)
            if not v >= least:  # NaN fails too: an unknown amount is not enough
                out[i] = f"{prop} {_fmt(v)} below the job's minimum {_fmt(least)}"
                break
        else:
            missing = c.tags - tags.get(name, frozenset())
            has = apps.get(name)
            if missing:
                out[i] = "lacks tag " + ", ".join(sorted(missing))
            elif c.application and has is not None and c.application not in has:
                out[i] = f"does not run {c.application}"
    return out


@dataclass
class Ranking:
    """The outcome: admitted rows best first, why each stands there, who was left out."""

    matrix: Matrix
    policy: Policy
    order: list[int]
    reasons: dict[int, str]
    excluded: dict[int, str] = field(default_factory=dict)
    held: set[int] = field(default_factory=set)  # ranked, but not needed for the job

    @property
    def names(self) -> list[str]:
        return [self.matrix.slaves[i] for i in self.order]

    def to_json(self) -> dict[str, object]:
        m = self.matrix
        rows = []
        for pos, i in enumerate(self.order, 1):
            rows.append({"slave": m.slaves[i], "position": pos, "why": self.reasons[i],
                         "held": i in self.held, "properties": _row(m, i)})
        for i, why in sorted(self.excluded.items(), key=lambda kv: m.slaves[kv[0]]):
            rows.append({"slave": m.slaves[i], "position": None, "why": why, "held": False,
                         "properties": _row(m, i)})
        return {"policy": self.policy.name, "kind": self.policy.kind,
                "description": self.policy.describe(), "columns": m.columns, "slaves": rows}


def _row(m: Matrix, i: int) -> dict[str, float | None]:
    return {c: (float(v) if math.isfinite(v) else None)  # JSON has no NaN or Infinity
            for c, v in zip(m.columns, m.values[i], strict=True)}


def oriented(col: np.ndarray, direction: int) -> np.ndarray:
    """Min-max normalised, 1 the best and 0 the worst known value; NaN (unknown) is -1,
    below them all; a constant column is all 1."""
    v = col * direction
    finite = np.isfinite(v)
    if not finite.any():
        return np.zeros(len(col))
    lo, hi = v[finite].min(), v[finite].max()
    if hi == lo:
        out = np.ones(len(col))
    else:
        out = (v - lo) / (hi - lo)
    out[~finite] = -1.0  # below every known value, by more than any tolerance ties
    result: np.ndarray = out
    return result


def rank_normalised(col: np.ndarray, direction: int) -> np.ndarray:
    """Each value's place among the distinct values, 0 (worst) to 1 (best): depends only
    on the order of the values, so it is exactly the same in any unit."""
    v = np.where(np.isfinite(col), col * direction, -np.inf)
    distinct, inverse = np.unique(v, return_inverse=True)
    if len(distinct) == 1:
        return np.ones(len(col))
    out: np.ndarray = inverse / (len(distinct) - 1)
    return out


def rank(m: Matrix, policy: Policy, excluded: dict[int, str] | None = None, *,
         deadline: float | None = None, remaining: float = 0,
         per_task: float = 1.0) -> Ranking:
    """Rank the rows not in `excluded` under `policy`.

    `deadline`: seconds left until the job's deadline, `remaining` its frames left (speed
    is in frames/s) and `per_task` its frames per task, for cheapest-within-deadline
    (without a deadline it ranks as `fastest`).
    """
    excluded = excluded or {}
    rows = np.array([i for i in range(len(m.slaves)) if i not in excluded], dtype=int)
    kind = policy.kind
    if kind == "cheapest-within-deadline":
        if deadline is None:
            fastest = PRESETS["fastest"]
            r = _lexicographic(m, fastest, rows)
            for i in r.order:
                r.reasons[i] = "the job has no deadline, so ranked as fastest: " \
                    + r.reasons[i]
            r.policy = policy
            r.excluded = dict(excluded)
            return r
        r = _lexicographic(m, policy, rows)
        r.policy = policy
        _cut_at_deadline(r, deadline, remaining, per_task)
    elif kind == "weighted":
        r = _weighted(m, policy, rows)
    elif kind == "pareto":
        r = _pareto(m, policy, rows)
    else:
        r = _lexicographic(m, policy, rows)
    r.excluded = dict(excluded)
    return r


def _by_name(m: Matrix, rows: np.ndarray | list[int]) -> list[int]:
    return sorted((int(i) for i in rows), key=lambda i: m.slaves[i])


def _lexicographic(m: Matrix, policy: Policy, rows: np.ndarray) -> Ranking:
    norms = [oriented(m.column(k.name), k.direction) for k in policy.keys]
    reasons: dict[int, str] = {}

    def order(idx: list[int], level: int) -> list[int]:
        if len(idx) == 1 or level == len(policy.keys):
            tied = ", ".join(k.name for k in policy.keys[:level])
            for i in idx:
                if len(idx) > 1:
                    reasons[i] = f"tied with {len(idx) - 1} more on {tied}; by name"
                elif level == 0:
                    reasons[i] = "the only slave"
            return _by_name(m, idx)
        key = policy.keys[level]
        v = norms[level]
        ranked = sorted(idx, key=lambda i: (-v[i], m.slaves[i]))
        out: list[int] = []
        start = 0
        while start < len(ranked):
            best = v[ranked[start]]
            end = start + 1
            while end < len(ranked) and best - v[ranked[end]] <= key.tolerance + EPS:
                end += 1
            group = ranked[start:end]
            before = ", ".join(k.name for k in policy.keys[:level])
            if len(group) == 1:
                i = group[0]
                within = f" (ties within {key.tolerance:.0%} of the range)" \
                    if key.tolerance else ""
                reasons[i] = (f"{'tied on ' + before + ', then ' if before else ''}"
                              f"{key} = {_fmt(m.value(i, key.name))}{within}")
                out.append(i)
            else:
                out += order(group, level + 1)
            start = end
        return out

    ordered = order([int(i) for i in rows], 0)
    return Ranking(m, policy, ordered, reasons)


def scores(m: Matrix, policy: Policy, rows: np.ndarray | list[int]) -> dict[int, float]:
    """Weighted sum of each key's normalised rank (0 worst, 1 best)."""
    total = np.zeros(len(m.slaves))
    weight_sum = 0.0
    for k in policy.keys:
        w = policy.weight(k.name)
        total += w * rank_normalised(m.column(k.name), k.direction)
        weight_sum += w
    if weight_sum > 0:
        total /= weight_sum
    return {int(i): float(total[i]) for i in rows}


def _terms(m: Matrix, policy: Policy, i: int) -> str:
    return " + ".join(f"{k.name} {policy.weight(k.name):g}x{_fmt(m.value(i, k.name))}"
                      for k in policy.keys if policy.weight(k.name))


def _weighted(m: Matrix, policy: Policy, rows: np.ndarray) -> Ranking:
    s = scores(m, policy, rows)
    ordered = sorted(s, key=lambda i: (-s[i], m.slaves[i]))
    reasons = {i: f"score {s[i]:.3f} ({_terms(m, policy, i)}; each normalised by rank)"
               for i in ordered}
    return Ranking(m, policy, ordered, reasons)


def pareto_fronts(m: Matrix, keys: tuple[Key, ...], rows: np.ndarray) -> dict[int, int]:
    """Front number (1 = non-dominated) of each row; a NaN is worse than any value."""
    if len(rows) == 0:
        return {}
    cols = [m.column(k.name)[rows] * k.direction for k in keys]
    o = np.stack([np.where(np.isfinite(c), c, -np.inf) for c in cols], axis=1)
    n = len(rows)
    ge = np.ones((n, n), dtype=bool)
    gt = np.zeros((n, n), dtype=bool)
    for k in range(o.shape[1]):  # column by column: n x n, never n x n x keys
        col = o[:, k]
        ge &= col[:, None] >= col[None, :]
        gt |= col[:, None] > col[None, :]
    dom = ge & gt  # dom[a, b]: a dominates b
    left = np.ones(len(rows), dtype=bool)
    count = dom.sum(axis=0)
    fronts: dict[int, int] = {}
    front = 0
    while left.any():
        front += 1
        now = left & (count == 0)
        for a in np.flatnonzero(now):
            fronts[int(rows[a])] = front
        left &= ~now
        count = count - dom[now].sum(axis=0)
    return fronts


def _pareto(m: Matrix, policy: Policy, rows: np.ndarray) -> Ranking:
    fronts = pareto_fronts(m, policy.keys, rows)
    s = scores(m, policy, rows)
    ordered = sorted(fronts, key=lambda i: (fronts[i], -s[i], m.slaves[i]))
    heavy = max(policy.keys, key=lambda k: policy.weight(k.name))
    reasons = {}
    size = Counter(fronts.values())
    for i in ordered:
        peers = size[fronts[i]] - 1
        tie = (f", tie with {peers} more broken by weights (score {s[i]:.3f},"
               f" heaviest {heavy.name} {policy.weight(heavy.name):g})") if peers else ""
        reasons[i] = f"pareto front {fronts[i]}{tie}"
    return Ranking(m, policy, ordered, reasons)


def _cut_at_deadline(r: Ranking, deadline: float, remaining: float,
                     per_task: float = 1.0) -> None:
    """Mark as held the slaves the job does not need: the cheaper ones before them finish
    its remaining frames by the deadline at their speed, counting whole tasks only (a
    slave that cannot finish a task in time adds nothing)."""
    m = r.matrix
    speed = np.nan_to_num(m.column("speed"), nan=0.0)
    slots = np.nan_to_num(m.column("slots"), nan=1.0)
    done = 0.0
    enough = False
    for pos, i in enumerate(r.order, 1):
        why = f"{ordinal(pos)} cheapest ({r.reasons.get(i, '')})"
        if enough:
            r.held.add(i)
            r.reasons[i] = (f"{why}; not needed: the cheaper slaves finish the"
                            f" {remaining:.0f} frames left within {deadline:.0f} s")
            continue
        tasks = math.floor(speed[i] * max(deadline, 0.0) / max(per_task, 1e-9))
        done += tasks * per_task * max(slots[i], 1.0)  # frames
        enough = done >= remaining
        r.reasons[i] = (f"{why}; needed to finish the {remaining:.0f} frames left within"
                        f" {deadline:.0f} s")


def ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def _fmt(v: float) -> str:
    if isinstance(v, float) and math.isnan(v):
        return "unknown"
    return f"{v:.4g}"


TAIL_RATIO = 1.5


def tail_defers(speed: float, left: int, busy: np.ndarray) -> bool:
    """Tail avoidance: should a slave of `speed` leave a job's last `left` tasks alone?

    `busy` holds the speeds of the busy slots, ascending. A running task is on average
    half done, so a busy slot of speed f frees up in about 0.5/f and then does a task in
    1/f: within the 1/speed this slave needs for one task it takes floor(f/speed - 0.5)
    of them, at least one when it is TAIL_RATIO (1.5) times faster. When those slots
    together can take every task the job has left, the slow slave waits and the tasks go
    to them as they free up. An unknown speed never defers.
    """
    if not (math.isfinite(speed) and speed > 0) or len(busy) == 0:
        return False
    if left > len(busy) * (busy[-1] / speed):
        return False  # even the fastest busy slot everywhere could not take them all
    faster = busy[busy >= speed * TAIL_RATIO]
    return bool(np.floor(faster / speed - 0.5).sum() >= left)
