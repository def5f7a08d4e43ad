# SPDX-License-Identifier: MIT
"""afarmctl slave accept: shows the fingerprint, asks, and sends exactly what was shown."""

from __future__ import annotations

import argparse
import io
from typing import Any, cast

import pytest

from afarm.cli.client import Client
from afarm.cli.commands import cmd_slave
from afarm.errors import OperationFailed, UsageError

FP = "SHA256:" + "A" * 43


class Master:
    def __init__(self, warning: str = "") -> None:
        self.posted: list[tuple[str, dict[str, Any]]] = []
        self.found = {"name": "render1", "state": "pending", "fingerprint": FP,
                      "address": "10.0.0.5", "macs": ["52:54:00:12:34:56"],
                      "version": "0.2.0", "warning": warning}

    def get(self, path: str) -> list[dict[str, Any]]:
        assert path == "/api/v1/slaves"
        return [{"name": "other", "state": "online"},
                {"name": "render1", "state": "pending", "discovered": self.found}]

    def post(self, path: str, data: dict[str, Any], timeout: float = 60) -> dict[str, Any]:
        self.posted.append((path, data))
        return {"name": "render1", "fingerprint": data.get("fingerprint"),
                "state": "enrolled"}


def args(name: str = "render1", yes: bool = False) -> argparse.Namespace:
    return argparse.Namespace(action="accept", name=name, yes=yes, json=False, ttl=3600,
                              replace=None)


def test_accept_with_yes_sends_the_fingerprint_it_showed(
        capsys: pytest.CaptureFixture[str]) -> None:
    m = Master()
    assert cmd_slave(args(yes=True), cast(Client, m)) == 0
    assert m.posted == [("/api/v1/slaves/render1/accept", {"fingerprint": FP})]
    out = capsys.readouterr().out
    assert FP in out and "10.0.0.5" in out and "ssh-keygen -lf" in out


def test_accept_asks_and_a_no_accepts_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    m = Master()
    monkeypatch.setattr("sys.stdin", io.StringIO("n\n"))
    monkeypatch.setattr("sys.stdin.isatty", lambda: True, raising=False)
    assert cmd_slave(args(), cast(Client, m)) == 1
    assert m.posted == []


def test_accept_without_a_terminal_needs_yes(monkeypatch: pytest.MonkeyPatch) -> None:
    m = Master()
    monkeypatch.setattr("sys.stdin", io.StringIO(""))
    with pytest.raises(UsageError, match="--yes"):
        cmd_slave(args(), cast(Client, m))
    assert m.posted == []


def test_a_slave_with_a_fingerprint_warning_is_not_accepted() -> None:
    m = Master(warning="render1 is announced from 10.0.0.66 with host key SHA256:B...")
    with pytest.raises(OperationFailed, match="not accepted: render1 is announced"):
        cmd_slave(args(yes=True), cast(Client, m))
    assert m.posted == []


def test_accept_of_an_unknown_name_says_where_pending_slaves_are_listed() -> None:
    with pytest.raises(UsageError, match="afarmctl slaves"):
        cmd_slave(args(name="nope", yes=True), cast(Client, Master()))
