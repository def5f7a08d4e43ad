# SPDX-License-Identifier: MIT
"""The energy counters of the CPU packages (Intel/AMD RAPL in /sys/class/powercap), read
before and after a task where this user may read them (Linux restricts them to root since
CVE-2020-8694), so a slave can report what a task measurably used."""

from dataclasses import dataclass
from pathlib import Path

POWERCAP = Path("/sys/class/powercap")


@dataclass(frozen=True)
class Zone:
    energy: Path
    wrap_uj: int  # the counter returns to 0 after this many microjoules


@dataclass(frozen=True)
class Reading:
    microjoules: tuple[int, ...]


def zones(root: Path = POWERCAP) -> list[Zone]:
    """Top-level package zones only: their sub-zones (core, uncore, dram) and psys overlap
    them, and summing those would count the same joules twice."""
    found = []
    try:
        candidates = sorted(root.glob("*/energy_uj"))
    except OSError:
        return []
    for energy in candidates:
        zone = energy.parent
        try:
            if not (zone / "name").read_text().strip().startswith("package"):
                continue
            wrap = int((zone / "max_energy_range_uj").read_text())
            int(energy.read_text())  # readable by us, or not worth listing
        except (OSError, ValueError):
            continue
        found.append(Zone(energy, wrap))
    return found


def read(found: list[Zone]) -> Reading | None:
    if not found:
        return None
    try:
        return Reading(tuple(int(z.energy.read_text()) for z in found))
    except (OSError, ValueError):
        return None


def joules_between(found: list[Zone], before: Reading | None,
                   after: Reading | None) -> float | None:
    """Energy the packages used between two readings (each counter may wrap once)."""
    if before is None or after is None or len(before.microjoules) != len(found) or \
            len(after.microjoules) != len(found):
        return None
    total = 0
    for z, a, b in zip(found, before.microjoules, after.microjoules, strict=True):
        total += b - a if b >= a else b + z.wrap_uj - a
    return total / 1e6
