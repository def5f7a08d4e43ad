# SPDX-License-Identifier: MIT
"""Text afarmctl prints that others wrote (a .blend's paths, a task's error, a log, a
warning) cannot drive the user's terminal: escape sequences set the window title, write
the clipboard (OSC 52), hide lines, or on some terminals answer back as typed input."""

import argparse
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from afarm.cli import commands, main

EVIL = "a\x1b]52;c;ZWNobyBwd25lZAo=\x07b\x1b[2J\r\x9b31mc\x00d\x7f"


def clean(text: str) -> None:
    for c in ("\x1b", "\x07", "\r", "\x9b", "\x00", "\x7f"):
        assert c not in text, repr(text)


def test_printed_text_keeps_its_lines_but_no_control_characters(
        capsys: pytest.CaptureFixture[str]) -> None:
    commands._print(argparse.Namespace(json=False), {}, f"line one {EVIL}\n\tline two")
    out = capsys.readouterr().out
    clean(out)
    assert out.startswith("line one a") and "\n\tline two" in out


def test_json_output_escapes_them_as_json_does(capsys: pytest.CaptureFixture[str]) -> None:
    commands._print(argparse.Namespace(json=True), {"log": EVIL}, "")
    clean(capsys.readouterr().out)


def test_a_failed_tasks_error_is_shown_without_them(
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    failed = {"id": 4, "status": "failed", "tasks": [
        {"id": 1, "index": 0, "label": "frame 1", "status": "failed",
         "error": f"blender exited 1 (last log line: {EVIL})", "failures": []}]}
    monkeypatch.setattr(commands.ops, "wait", lambda client, job, update: failed)
    assert commands.wait_for(None, 4) == 1  # type: ignore[arg-type]
    err = capsys.readouterr().err
    clean(err)
    assert "last log line: a" in err


def test_a_blends_missing_paths_are_shown_without_them(
        capsys: pytest.CaptureFixture[str]) -> None:
    m = SimpleNamespace(reason="missing", path=Path(f"/x/{EVIL}.png"),
                        wanted_by=f"image '{EVIL}'", blend=Path("/x/shot.blend"))
    for line in commands.missing_text(SimpleNamespace(missing=[m])):
        clean(line)


def test_an_error_message_is_shown_without_them(
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    def run(argv: Any) -> int:
        raise commands.UsageError(f"{EVIL}.blend: cannot be read")
    monkeypatch.setattr(main, "run", run)
    assert main.main(["status", "1"]) != 0
    clean(capsys.readouterr().err)
