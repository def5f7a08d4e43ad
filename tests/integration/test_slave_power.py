# SPDX-License-Identifier: MIT
"""The slave's suspend verb and sleep inhibitor against a stand-in logind on a private bus."""

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import afarm
from afarm.slave import power
from tests.logind import FakeLogind, LogindOnPrivateBus, PrivateBus

SRC = str(Path(afarm.__file__).resolve().parents[1])


@pytest.fixture
def logind(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
           ) -> Iterator[tuple[PrivateBus, FakeLogind]]:
    with LogindOnPrivateBus(tmp_path / "bus") as (bus, fake):
        monkeypatch.setenv("DBUS_SYSTEM_BUS_ADDRESS", bus.address)
        yield bus, fake


def test_suspend_asks_logind_to_suspend_without_asking_the_user(
        logind: tuple[PrivateBus, FakeLogind], tmp_path: Path) -> None:
    _, fake = logind
    assert power.suspend(tmp_path) == ""
    assert [c["interactive"] for c in fake.calls("Suspend")] == [False]


def test_a_running_task_holds_an_inhibitor_and_blocks_suspend_until_it_ends(
        logind: tuple[PrivateBus, FakeLogind], tmp_path: Path) -> None:
    _, fake = logind
    guard = power.TaskGuard(tmp_path)
    held = guard.begin(7, 1)
    inhibit = fake.calls("Inhibit")
    assert [(c["what"], c["who"], c["why"], c["mode"]) for c in inhibit] == \
        [("sleep", "afarm", "rendering", "block")]
    second = guard.begin(8, 1)  # one inhibitor for all the agent's tasks
    assert len(fake.calls("Inhibit")) == 1
    assert "a task is running" in power.suspend(tmp_path)
    guard.end(7, 1, held)
    assert "8-1" in power.suspend(tmp_path)
    assert fake.calls("Released") == []
    guard.end(8, 1, second)
    fake.wait_for(lambda calls: any(c["call"] == "Released" for c in calls))
    assert power.suspend(tmp_path) == ""
    assert len(fake.calls("Suspend")) == 1


def test_the_lock_of_a_crashed_agent_does_not_keep_the_machine_awake(
        logind: tuple[PrivateBus, FakeLogind], tmp_path: Path) -> None:
    _, fake = logind
    code = ("import sys, time; from pathlib import Path; from afarm.slave.power import"
            " TaskGuard; TaskGuard(Path(sys.argv[1]), use_logind=False).begin(3, 1);"
            " print('held', flush=True); time.sleep(60)")
    child = subprocess.Popen([sys.executable, "-c", code, str(tmp_path)],
                             stdout=subprocess.PIPE,
                             env={**os.environ, "PYTHONPATH": SRC})
    try:
        assert child.stdout is not None and child.stdout.readline() == b"held\n"
        assert "3-1" in power.suspend(tmp_path)
    finally:
        child.kill()
        child.wait()
    assert power.suspend(tmp_path) == ""
    assert not (tmp_path / "active" / "3-1").exists()
    assert len(fake.calls("Suspend")) == 1


def test_without_logind_suspend_fails_with_the_reason(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DBUS_SYSTEM_BUS_ADDRESS", f"unix:path={tmp_path}/nobus")
    with pytest.raises(power.PowerError, match="cannot reach logind"):
        power.suspend(tmp_path)
