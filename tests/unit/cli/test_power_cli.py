# SPDX-License-Identifier: MIT
"""afarmctl's power views: states with time in state, slave wake, kWh per day."""

import argparse
from typing import Any, cast

import pytest

from afarm.cli import commands
from afarm.cli.client import Client
from afarm.errors import UsageError


class Master:
    def __init__(self, answers: dict[str, Any]) -> None:
        self.answers = answers
        self.posted: list[str] = []

    def get(self, path: str, **_: Any) -> Any:
        return self.answers[path.split("?")[0]]

    def post(self, path: str, body: dict[str, Any], **_: Any) -> Any:
        self.posted.append(path)
        return self.answers[path]


def args(**kw: Any) -> argparse.Namespace:
    return argparse.Namespace(json=False, **kw)


@pytest.mark.parametrize(("seconds", "shown"), [(None, "-"), (5.2, "5s"), (125, "2m"),
                                                (7300, "2h"), (200000, "2d")])
def test_time_in_state_is_short(seconds: float | None, shown: str) -> None:
    assert commands.duration(seconds) == shown


def test_slaves_shows_power_states_and_how_long(capsys: pytest.CaptureFixture[str]) -> None:
    m = Master({"/api/v1/slaves": [
        {"name": "a", "state": "online", "seconds_in_state": 90, "running": []},
        {"name": "b", "state": "asleep", "seconds_in_state": 7200, "running": []}]})
    commands.cmd_slaves(args(rank=False, job=None, policy=None), cast(Client, m))
    out = capsys.readouterr().out.splitlines()
    assert out[1].split()[:3] == ["a", "idle", "1m"]
    assert out[2].split()[:3] == ["b", "asleep", "2h"]


def test_slave_wake_posts_to_the_slaves_wake_endpoint(
        capsys: pytest.CaptureFixture[str]) -> None:
    m = Master({"/api/v1/slaves/box/wake": {"name": "box", "state": "waking",
                                            "mac": "52:54:00:12:34:56"}})
    assert commands.cmd_slave(args(action="wake", name="box"), cast(Client, m)) == 0
    assert m.posted == ["/api/v1/slaves/box/wake"]
    assert "52:54:00:12:34:56" in capsys.readouterr().out
    with pytest.raises(UsageError, match="slave wake NAME"):
        commands.cmd_slave(args(action="wake", name=""), cast(Client, m))


def test_report_adds_kwh_per_day_awake_and_asleep(capsys: pytest.CaptureFixture[str]) -> None:
    total = {"kwh": 1.5, "cost": 0.3, "busy_hours": 2.0, "tasks": 3, "attempts": 3,
             "kwh_known": 1.5, "cost_known": 0.3, "warnings": []}
    m = Master({"/api/v1/report": {"currency": "EUR", "jobs": [], "slaves": [],
                                   "total": total, "days": [
                                       {"day": "2026-12-01", "kwh_awake": 1.25,
                                        "kwh_asleep": 0.048, "awake_hours": 6.0,
                                        "asleep_hours": 18.0}]}})
    commands.cmd_report(args(since="2026-12-01", until=None), cast(Client, m))
    out = capsys.readouterr().out
    day = next(ln for ln in out.splitlines() if ln.startswith("2026-12-01"))
    assert day.split()[1:3] == ["1.250", "0.048"]


def test_slave_drain_and_undrain_post_to_their_endpoints(
        capsys: pytest.CaptureFixture[str]) -> None:
    m = Master({"/api/v1/slaves/box/drain": {"name": "box", "state": "draining",
                                             "drained": True, "running": 2},
                "/api/v1/slaves/box/undrain": {"name": "box", "state": "online",
                                               "drained": False, "running": 0}})
    assert commands.cmd_slave(args(action="drain", name="box"), cast(Client, m)) == 0
    assert "box: draining, takes no new task; 2 running finish first" in \
        capsys.readouterr().out
    assert commands.cmd_slave(args(action="undrain", name="box"), cast(Client, m)) == 0
    assert "box: idle, takes tasks again" in capsys.readouterr().out
    assert m.posted == ["/api/v1/slaves/box/drain", "/api/v1/slaves/box/undrain"]
    with pytest.raises(UsageError, match="slave undrain NAME"):
        commands.cmd_slave(args(action="undrain", name=""), cast(Client, m))


def test_slaves_shows_the_shown_state_the_master_sends(
        capsys: pytest.CaptureFixture[str]) -> None:
    m = Master({"/api/v1/slaves": [
        {"name": "a", "state": "online", "shown_state": "idle", "seconds_in_state": 90,
         "running": []}]})
    commands.cmd_slaves(args(rank=False, job=None, policy=None), cast(Client, m))
    assert capsys.readouterr().out.splitlines()[1].split()[:2] == ["a", "idle"]
