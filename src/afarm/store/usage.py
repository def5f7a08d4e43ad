# SPDX-License-Identifier: MIT
"""What attempts cost, in the store's `usage` table: one row per attempt, written in the
transaction that applies its outcome, and the totals per job and per slave read from it.

Unknown is NULL, never 0: a row without watts has no joules and no cost, and the totals
count such rows apart so nobody reads a partial sum as the whole.
"""

import json
import sqlite3
from dataclasses import dataclass, field
from typing import Any

J_PER_KWH = 3.6e6  # 1 kWh = 3.6 MJ



@dataclass(frozen=True)
class Usage:
    """One attempt's record."""

    task_id: int
    attempt: int
    job_id: int
    slave: str
    started: float | None
    ended: float
    seconds: float
    watts: float | None  # None: nobody knows the slave's draw
    joules: float | None
    price: float | None  # per kWh (the mean over a tariff); None: no price known
    cost: float | None
    measured: bool = False


@dataclass
class Totals:
    """Sums over attempts; `unknown_energy`/`unknown_cost` count attempts left out."""

    attempts: int = 0
    tasks: int = 0
    seconds: float = 0.0
    joules: float = 0.0
    cost: float = 0.0
    unknown_energy: int = 0
    unknown_cost: int = 0
    measured: int = 0
    unknown_slaves: list[str] = field(default_factory=list)

    @property
    def kwh(self) -> float:
        return self.joules / J_PER_KWH

    def as_json(self) -> dict[str, Any]:
        return {"attempts": self.attempts, "tasks": self.tasks,
                "busy_hours": self.seconds / 3600, "kwh": self.kwh, "cost": self.cost,
                "unknown_energy": self.unknown_energy, "unknown_cost": self.unknown_cost,
                "measured": self.measured}


def record(db: sqlite3.Connection, u: Usage) -> bool:
    """Store one attempt's usage (once: a second record of the same attempt is ignored)."""
    cur = db.execute(
        "INSERT OR IGNORE INTO usage(task_id, attempt, job_id, slave, started, ended,"
        " seconds, watts, joules, price, cost, measured) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
        (u.task_id, u.attempt, u.job_id, u.slave, u.started, u.ended, u.seconds, u.watts,
         u.joules, u.price, u.cost, int(u.measured)))
    return cur.rowcount == 1


def of_task(db: sqlite3.Connection, task_id: int) -> list[Usage]:
    rows = db.execute("SELECT task_id, attempt, job_id, slave, started, ended, seconds, watts,"
                      " joules, price, cost, measured FROM usage WHERE task_id=?"
                      " ORDER BY attempt", (task_id,))
    return [Usage(r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7], r[8], r[9], r[10],
                  bool(r[11])) for r in rows]


_SUMS = ("COUNT(*), COUNT(DISTINCT task_id), COALESCE(SUM(seconds), 0),"
         " COALESCE(SUM(joules), 0), COALESCE(SUM(cost), 0), SUM(joules IS NULL),"
         " SUM(cost IS NULL), SUM(measured)")


def _totals(row: Any) -> Totals:
    return Totals(int(row[0]), int(row[1]), float(row[2]), float(row[3]), float(row[4]),
                  int(row[5] or 0), int(row[6] or 0), int(row[7] or 0))


def of_jobs(db: sqlite3.Connection, job_ids: list[int]) -> dict[int, Totals]:
    """Totals of each of these jobs (jobs without attempts yet are left out)."""
    out: dict[int, Totals] = {}
    for i in range(0, len(job_ids), 500):
        part = job_ids[i:i + 500]
        marks = ",".join("?" * len(part))
        for r in db.execute(f"SELECT job_id, {_SUMS} FROM usage WHERE job_id IN ({marks})"
                            " GROUP BY job_id", part):
            out[int(r[0])] = _totals(r[1:])
        for r in db.execute(f"SELECT DISTINCT job_id, slave FROM usage WHERE job_id IN"
                            f" ({marks}) AND watts IS NULL ORDER BY slave", part):
            out[int(r[0])].unknown_slaves.append(r[1])
    return out


def report(db: sqlite3.Connection, since: float, until: float
           ) -> tuple[Totals, dict[int, Totals], dict[str, Totals]]:
    """Totals of attempts that ended in [since, until): all, per job, per slave."""
    where = "FROM usage WHERE ended >= ? AND ended < ?"
    args = (since, until)
    total = _totals(db.execute(f"SELECT {_SUMS} {where}", args).fetchone())
    jobs = {int(r[0]): _totals(r[1:]) for r in db.execute(
        f"SELECT job_id, {_SUMS} {where} GROUP BY job_id ORDER BY job_id", args)}
    slaves = {str(r[0]): _totals(r[1:]) for r in db.execute(
        f"SELECT slave, {_SUMS} {where} GROUP BY slave ORDER BY slave", args)}
    for r in db.execute(f"SELECT DISTINCT slave {where} AND watts IS NULL ORDER BY slave",
                        args):
        total.unknown_slaves.append(r[0])
    return total, jobs, slaves


def job_names(db: sqlite3.Connection, job_ids: list[int]) -> dict[int, str]:
    out: dict[int, str] = {}
    for i in range(0, len(job_ids), 500):
        part = job_ids[i:i + 500]
        marks = ",".join("?" * len(part))
        out.update((int(r[0]), str(r[1])) for r in db.execute(
            f"SELECT id, name FROM jobs WHERE id IN ({marks})", part))
    return out


def state_spans(db: sqlite3.Connection, since: float, until: float
                ) -> list[tuple[str, str, float, float]]:
    """(slave, state, start, end) of every slave's states within [since, until), from the
    slave-state events (the state a slave had at `since` included)."""
    last: dict[str, tuple[str, float]] = {}
    spans = []
    for slave, at, data in db.execute(
            "SELECT slave, at, data FROM events WHERE kind='slave-state' AND at < ?"
            " ORDER BY id", (until,)):
        try:
            state = str(json.loads(data).get("state", ""))
        except ValueError:
            continue
        if slave in last:
            old, start = last[slave]
            if at > since:
                spans.append((slave, old, max(start, since), at))
        last[slave] = (state, at)
    for slave, (state, start) in last.items():
        spans.append((slave, state, max(start, since), until))
    return [s for s in spans if s[3] > s[2]]


def busy_seconds_by_day(db: sqlite3.Connection, since: float, until: float,
                        day_of: Any) -> dict[str, tuple[float, float]]:
    """Per day (day_of(ended) -> label): the attempts' busy seconds and joules."""
    out: dict[str, tuple[float, float]] = {}
    for ended, seconds, joules in db.execute(
            "SELECT ended, seconds, COALESCE(joules, 0) FROM usage WHERE ended >= ? AND"
            " ended < ?", (since, until)):
        day = day_of(ended)
        s, j = out.get(day, (0.0, 0.0))
        out[day] = (s + seconds, j + joules)
    return out
