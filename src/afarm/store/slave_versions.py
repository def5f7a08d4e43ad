# SPDX-License-Identifier: MIT
"""Which pool versions each slave holds and which it is quarantined for, in the store's
`slave_versions` table: `app list` shows holders that are not connected now, and a
version's quarantine outlives a master restart (cleared by removing or re-adding the
version, or by `afarmctl slave test NAME`)."""

import sqlite3
from collections.abc import Iterable


def _split(key: str) -> tuple[str, str]:
    package, _, version = key.partition("/")
    return package, version


def save(db: sqlite3.Connection, slave: str, installed: Iterable[str],
         quarantined: dict[str, str], at: float) -> None:
    """The slave's whole state now (what its link knows), replacing what was stored."""
    rows: dict[str, tuple[int, str]] = {k: (1, "") for k in installed}
    for key, why in quarantined.items():
        rows[key] = (rows.get(key, (0, ""))[0], why or "failed its acceptance test")
    db.execute("DELETE FROM slave_versions WHERE slave=?", (slave,))
    db.executemany(
        "INSERT INTO slave_versions(slave, package, version, installed, quarantine, at)"
        " VALUES (?,?,?,?,?,?)",
        [(slave, *_split(k), inst, why, at) for k, (inst, why) in sorted(rows.items())])


def quarantined(db: sqlite3.Connection, slave: str) -> dict[str, str]:
    """NAME/VERSION -> why, of one slave."""
    return {f"{r[0]}/{r[1]}": r[2] for r in db.execute(
        "SELECT package, version, quarantine FROM slave_versions WHERE slave=? AND"
        " quarantine != ''", (slave,))}


def holders(db: sqlite3.Connection) -> dict[str, dict[str, str]]:
    """NAME/VERSION -> {slave: '' (holds it) or why it is quarantined for it}."""
    out: dict[str, dict[str, str]] = {}
    for package, version, slave, installed, why in db.execute(
            "SELECT package, version, slave, installed, quarantine FROM slave_versions"
            " ORDER BY slave"):
        if installed or why:
            out.setdefault(f"{package}/{version}", {})[slave] = why
    return out


def forget_version(db: sqlite3.Connection, package: str, version: str) -> None:
    """A version removed or added again: nothing any slave knew of it still holds."""
    db.execute("DELETE FROM slave_versions WHERE package=? AND version=?", (package, version))


def clear_quarantine(db: sqlite3.Connection, slave: str) -> None:
    db.execute("DELETE FROM slave_versions WHERE slave=? AND installed=0", (slave,))
    db.execute("UPDATE slave_versions SET quarantine='' WHERE slave=?", (slave,))
