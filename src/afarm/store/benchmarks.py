# SPDX-License-Identifier: MIT
"""Slaves' benchmarks in the store's `benchmarks` table: every run is kept (the history),
the newest fingerprint of a slave says whether it must run again, and the ranking reads
the latest seconds per frame."""

import sqlite3
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Benchmark:
    slave: str
    application: str
    version: str
    engine: str
    device: str
    seconds_per_frame: float | None  # None: the run failed (error says why)
    fingerprint: str  # the hardware and software it ran on (master/slaves/acceptance.py)
    at: float
    error: str = ""

    def as_json(self) -> dict[str, Any]:
        return {"application": self.application, "version": self.version,
                "engine": self.engine, "device": self.device,
                "seconds_per_frame": self.seconds_per_frame, "at": self.at,
                "error": self.error}


def record(db: sqlite3.Connection, b: Benchmark) -> None:
    db.execute("INSERT INTO benchmarks(slave, application, version, engine, device,"
               " seconds_per_frame, fingerprint, at, error) VALUES (?,?,?,?,?,?,?,?,?)",
               (b.slave, b.application, b.version, b.engine, b.device, b.seconds_per_frame,
                b.fingerprint, b.at, b.error))


def _of(row: sqlite3.Row) -> Benchmark:
    return Benchmark(row["slave"], row["application"], row["version"], row["engine"],
                     row["device"], row["seconds_per_frame"], row["fingerprint"], row["at"],
                     row["error"])


def history(db: sqlite3.Connection, slave: str, limit: int = 100) -> list[Benchmark]:
    """Newest first."""
    rows = db.execute("SELECT * FROM benchmarks WHERE slave=? ORDER BY id DESC LIMIT ?",
                      (slave, limit)).fetchall()
    return [_of(r) for r in rows]


def last_fingerprint(db: sqlite3.Connection, slave: str) -> str | None:
    """The fingerprint of the slave's newest benchmark run, failed ones included: a failed
    run is not repeated until something changes."""
    row = db.execute("SELECT fingerprint FROM benchmarks WHERE slave=? ORDER BY id DESC"
                     " LIMIT 1", (slave,)).fetchone()
    return row[0] if row else None


def latest(db: sqlite3.Connection) -> dict[str, Benchmark]:
    """Each slave's newest successful run (the fastest engine/device of that run)."""
    rows = db.execute(
        "SELECT b.* FROM benchmarks b JOIN (SELECT slave, MAX(at) AS at FROM benchmarks"
        " WHERE seconds_per_frame IS NOT NULL GROUP BY slave) n"
        " ON b.slave = n.slave AND b.at = n.at WHERE b.seconds_per_frame IS NOT NULL"
        " ORDER BY b.seconds_per_frame DESC").fetchall()
    return {r["slave"]: _of(r) for r in rows}  # the fastest row of a run is written last
