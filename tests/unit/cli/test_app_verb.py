# SPDX-License-Identifier: MIT
"""afarmctl's side of pool versions: --app with a constraint, and the app verb's usage."""

from pathlib import Path

import pytest

from afarm.cli.commands import submission
from afarm.cli.main import build_parser, main


def test_an_app_constraint_names_the_application_and_travels_whole(tmp_path: Path) -> None:
    blend = tmp_path / "a.blend"
    blend.write_bytes(b"BLENDER")
    args = build_parser().parse_args(["submit", str(blend), "--frames", "1",
                                      "--app", "blender (>= 4.2), blender (<< 5)"])
    request, _ = submission(args)
    assert request["application"] == "blender"
    assert request["app"] == "blender (>= 4.2), blender (<< 5)"
    args = build_parser().parse_args(["submit", str(blend), "--frames", "1"])
    assert "app" not in submission(args)[0]


@pytest.mark.parametrize("argv,needle", [
    (["app", "add", "blender"], "needs NAME VERSION"),
    (["app", "add", "blender", "4.2"], "needs NAME VERSION ARCHIVE|DIR"),
    (["app", "remove", "blender"], "needs NAME VERSION"),
    (["app", "list", "blender"], "takes no NAME"),
    (["app", "add", "blender", "4.2", "/nonexistent/blender.tar.xz"], "no such file"),
])
def test_app_usage_errors_exit_2_before_contacting_the_master(
        argv: list[str], needle: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--master", "127.0.0.1:9", *argv]) == 2
    assert needle in capsys.readouterr().err


def test_a_definition_file_that_cannot_be_sent_is_refused_before_contacting_the_master(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "v").mkdir()
    long = tmp_path / "long.conf"
    long.write_text("kind = command\nexecutable = tool\nargv = {item},\n"
                    f"description = \"{'é' * 3000}\"\n")
    assert main(["--master", "127.0.0.1:9", "app", "add", "tool", "1.0", str(tmp_path / "v"),
                 "--definition", str(long)]) == 2
    assert "too long to send" in capsys.readouterr().err
    assert main(["--master", "127.0.0.1:9", "app", "add", "tool", "1.0", str(tmp_path / "v"),
                 "--definition", str(tmp_path / "missing.conf")]) == 2
    assert "cannot read it" in capsys.readouterr().err
