# SPDX-License-Identifier: MIT
"""Slaves found by Avahi, in the store's ``discovered`` table (facts only; what to do with
an announcement is decided in afarm.discovery.pending)."""

from __future__ import annotations

import json
import sqlite3
from dataclasses import asdict, dataclass
from typing import Any

PENDING, ACCEPTED, KNOWN = "pending", "accepted", "known"
GONE = "gone"  # was pending, then its announcement was withdrawn (it left the network)
WAITING = (PENDING, GONE)  # rows nobody decided on: bounded, and forgotten when stale


@dataclass(frozen=True)
class Discovered:
    name: str
    state: str  # pending (waits for afarmctl slave accept), gone, accepted, known (enrolled)
    fingerprint: str  # the one first seen (pending) or the enrolled host key's (known)
    address: str
    ssh_port: int
    claim_port: int
    macs: tuple[str, ...]
    version: str
    first_seen: float
    last_seen: float
    warning: str = ""  # e.g. another fingerprint announced under this name

    def as_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["macs"] = list(self.macs)
        return d


def _of(r: sqlite3.Row) -> Discovered:
    return Discovered(r["name"], r["state"], r["fingerprint"], r["address"], r["ssh_port"],
                      r["claim_port"], tuple(json.loads(r["macs"])), r["version"],
                      r["first_seen"], r["last_seen"], r["warning"])


def get(db: sqlite3.Connection, name: str) -> Discovered | None:
    r = db.execute("SELECT * FROM discovered WHERE name=?", (name,)).fetchone()
    return _of(r) if r is not None else None


def all_rows(db: sqlite3.Connection) -> list[Discovered]:
    return [_of(r) for r in db.execute("SELECT * FROM discovered ORDER BY name")]


def count(db: sqlite3.Connection, state: str) -> int:
    return int(db.execute("SELECT COUNT(*) FROM discovered WHERE state=?",
                          (state,)).fetchone()[0])


def put(db: sqlite3.Connection, d: Discovered) -> None:
    db.execute("INSERT OR REPLACE INTO discovered(name, state, fingerprint, address, ssh_port,"
               " claim_port, macs, version, first_seen, last_seen, warning)"
               " VALUES (?,?,?,?,?,?,?,?,?,?,?)",
               (d.name, d.state, d.fingerprint, d.address, d.ssh_port, d.claim_port,
                json.dumps(list(d.macs)), d.version, d.first_seen, d.last_seen, d.warning))


def forget(db: sqlite3.Connection, name: str) -> bool:
    return db.execute("DELETE FROM discovered WHERE name=?", (name,)).rowcount > 0


def count_waiting(db: sqlite3.Connection) -> int:
    """Rows nobody decided on yet (pending and gone): what the pending bound counts."""
    return int(db.execute("SELECT COUNT(*) FROM discovered WHERE state IN (?,?)",
                          WAITING).fetchone()[0])


def expire(db: sqlite3.Connection, before: float, keep: frozenset[str] = frozenset()
           ) -> list[str]:
    """Forget pending and gone rows last seen before `before`, except the names in `keep`
    (announced right now); returns the names forgotten."""
    names = [r[0] for r in db.execute(
        "SELECT name FROM discovered WHERE state IN (?,?) AND last_seen < ?",
        (*WAITING, before)) if r[0] not in keep]
    for name in names:
        db.execute("DELETE FROM discovered WHERE name=?", (name,))
    return names
