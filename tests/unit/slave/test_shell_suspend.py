# SPDX-License-Identifier: MIT
"""afarm-slave-shell suspend: logind is asked only when no task runs, with no arguments."""

from typing import Any

import pytest

from afarm.slave import power
from tests.unit.slave.test_shell import _main
from tests.unit.slave.test_shell import slave as slave  # noqa: F401 (the fixture)


@pytest.fixture
def asked(monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    calls: list[bool] = []
    monkeypatch.setattr(power, "suspend_now", lambda: calls.append(True))
    return calls


def test_suspend_asks_logind_when_no_task_runs(slave: dict[str, Any],
                                                asked: list[bool]) -> None:
    assert _main(slave, "suspend") == 0
    assert asked == [True]


def test_suspend_is_refused_while_a_task_runs(slave: dict[str, Any], asked: list[bool],
                                              capsys: pytest.CaptureFixture[str]) -> None:
    guard = power.TaskGuard(slave["work"], use_logind=False)
    fd = guard.begin(4, 2)
    try:
        assert _main(slave, "suspend") == 1
    finally:
        guard.end(4, 2, fd)
    assert asked == []
    assert "a task is running (4-2)" in capsys.readouterr().err
    assert _main(slave, "suspend") == 0


def test_suspend_takes_no_arguments(slave: dict[str, Any], asked: list[bool]) -> None:
    assert _main(slave, "suspend now") == 1
    assert asked == []


def test_a_logind_refusal_is_exit_1_with_the_reason(slave: dict[str, Any],
                                                    monkeypatch: pytest.MonkeyPatch,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    def refuse() -> None:
        raise power.PowerError("logind refused Suspend: Access denied")

    monkeypatch.setattr(power, "suspend_now", refuse)
    assert _main(slave, "suspend") == 1
    assert "Access denied" in capsys.readouterr().err
