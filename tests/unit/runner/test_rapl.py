# SPDX-License-Identifier: MIT
"""Reading the CPU packages' energy counters from a stand-in /sys/class/powercap tree."""

from pathlib import Path

import pytest

from afarm.runner import rapl


def zone(root: Path, name: str, label: str, uj: int, wrap: int = 1_000_000) -> Path:
    d = root / name
    d.mkdir(parents=True)
    (d / "name").write_text(label + "\n")
    (d / "energy_uj").write_text(f"{uj}\n")
    (d / "max_energy_range_uj").write_text(f"{wrap}\n")
    return d / "energy_uj"


def test_only_package_zones_count_so_sub_zones_are_not_counted_twice(tmp_path: Path) -> None:
    p0 = zone(tmp_path, "intel-rapl:0", "package-0", 100)
    zone(tmp_path, "intel-rapl:0:0", "core", 50)
    zone(tmp_path, "intel-rapl:1", "psys", 900)
    p1 = zone(tmp_path, "intel-rapl:2", "package-1", 10)
    found = rapl.zones(tmp_path)
    assert [z.energy for z in found] == [p0, p1]
    before = rapl.read(found)
    p0.write_text("600100\n")  # +0.6 J
    p1.write_text("400010\n")  # +0.4 J
    assert rapl.joules_between(found, before, rapl.read(found)) == pytest.approx(1.0)


def test_a_counter_that_wrapped_during_the_task_still_adds_up(tmp_path: Path) -> None:
    p0 = zone(tmp_path, "intel-rapl:0", "package-0", 900_000, wrap=1_000_000)
    found = rapl.zones(tmp_path)
    before = rapl.read(found)
    p0.write_text("300000\n")
    assert rapl.joules_between(found, before, rapl.read(found)) == pytest.approx(0.4)


def test_no_readable_counter_means_no_measurement(tmp_path: Path) -> None:
    assert rapl.zones(tmp_path / "missing") == []
    d = tmp_path / "intel-rapl:0"
    d.mkdir()
    (d / "name").write_text("package-0\n")
    (d / "max_energy_range_uj").write_text("1000\n")
    (d / "energy_uj").mkdir()  # unreadable, even for root
    found = rapl.zones(tmp_path)
    assert found == [] and rapl.read(found) is None
    assert rapl.joules_between(found, rapl.read(found), rapl.read(found)) is None


def test_a_counter_that_vanishes_mid_task_gives_no_figure(tmp_path: Path) -> None:
    p0 = zone(tmp_path, "intel-rapl:0", "package-0", 5)
    found = rapl.zones(tmp_path)
    before = rapl.read(found)
    p0.unlink()
    assert rapl.joules_between(found, before, rapl.read(found)) is None
