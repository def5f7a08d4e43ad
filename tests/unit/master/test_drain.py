# SPDX-License-Identifier: MIT
"""afarmctl slave drain/undrain on the farm: the link's state, and kept across restarts."""

from pathlib import Path

import pytest

from afarm.errors import UsageError
from afarm.master.farm import Farm


def farm_with(path: Path, *names: str) -> Farm:
    farm = Farm(path, {})
    for name in names:
        farm.add_slave(farm.link(name, object(), 1))
    return farm


def test_a_drained_slave_stays_drained_when_the_master_restarts(tmp_path: Path) -> None:
    farm = farm_with(tmp_path, "a", "b")
    got = farm.drain_slave("a", True)
    assert got == {"name": "a", "state": "offline", "drained": True, "running": 0}
    farm.store.close()
    again = farm_with(tmp_path, "a", "b")
    again._load_drained()
    assert [n for n, p in again.dispatchers.items() if p.drained] == ["a"]
    assert again.drain_slave("a", False)["drained"] is False
    assert (tmp_path / "drained").read_text() == ""
    again.store.close()


def test_a_drained_slave_that_enrols_again_stays_drained(tmp_path: Path) -> None:
    farm = farm_with(tmp_path, "a", "b")
    farm.drain_slave("a", True)
    farm.add_slave(farm.link("a", object(), 2))  # what a re-enrolment does
    farm.add_slave(farm.link("b", object(), 2))
    assert {n: p.drained for n, p in farm.dispatchers.items()} == {"a": True, "b": False}
    farm.store.close()


def test_draining_an_unknown_slave_names_how_to_list_them(tmp_path: Path) -> None:
    farm = farm_with(tmp_path)
    with pytest.raises(UsageError, match="afarmctl slaves lists them"):
        farm.drain_slave("nobody", True)
    farm.store.close()
