# SPDX-License-Identifier: MIT
import http.server
import json
import subprocess
import threading
from pathlib import Path

import pytest

from afarm.cli import manpage
from afarm.cli.main import build_parser, main
from afarm.cli.verbs import VERBS

ROOT = Path(__file__).resolve().parents[3]


def test_the_shipped_man_page_is_generated_from_the_verb_table() -> None:
    assert (ROOT / "man" / "afarmctl.1").read_text() == manpage.render(), \
        "run: PYTHONPATH=src python3 -m afarm.cli.manpage man/afarmctl.1"


def test_every_verb_is_in_help_and_in_the_man_page() -> None:
    help_text = build_parser().format_help()
    page = manpage.render()
    for verb in VERBS:
        assert verb.name in help_text
        assert f".SS {verb.name}" in page


def test_the_man_page_renders_without_groff_warnings(tmp_path: Path) -> None:
    page = tmp_path / "afarmctl.1"
    page.write_text(manpage.render())
    cp = subprocess.run(["groff", "-ww", "-z", "-man", str(page)], capture_output=True,
                        text=True, check=False)
    assert cp.returncode == 0 and cp.stderr == "", cp.stderr


@pytest.mark.parametrize("argv", [[], ["frobnicate"], ["submit", "--bogus"],
                                  ["status", "notanumber"], ["submit", "x.blend", "--chunk",
                                                             "many"]])
def test_usage_errors_exit_2_with_a_message(argv: list[str],
                                            capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 2
    assert "error" in capsys.readouterr().err


def test_bad_frames_fail_before_contacting_the_master(tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    blend = tmp_path / "a.blend"
    blend.write_bytes(b"BLENDER-v304")
    # Port 9 (discard) has no master: a usage error must come first, without a connection.
    assert main(["--master", "127.0.0.1:9", "submit", str(blend), "--frames", "1-x"]) == 2
    assert "--frames" in capsys.readouterr().err


def test_an_unreachable_master_is_exit_1_and_says_how_to_fix_it(
        capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--master", "127.0.0.1:9", "jobs"]) == 1
    err = capsys.readouterr().err
    assert "cannot reach the master" in err and "--master" in err


@pytest.mark.parametrize("argv", [[], ["frobnicate"], ["submit", "--bogus"],
                                  ["status", "notanumber"]])
def test_usage_errors_say_afarmctl_error_once(argv: list[str],
                                             capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("afarmctl: error: ") and err.count("afarmctl: error:") == 1
    assert "afarmctl: error: afarmctl" not in err


def test_token_file_help_does_not_call_afarm_token_a_file() -> None:
    help_text = " ".join(build_parser().format_help().split())
    assert "default: $AFARM_TOKEN" not in help_text
    assert "client-token" in help_text


def test_a_submit_token_refused_an_admin_verb_shows_the_masters_message_and_exits_1(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    message = ("this token may submit and manage jobs only; ask the farm's admin or use an"
               " admin token (afarm-master new-token LABEL --scope admin)")

    class Refuse(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 (http.server's name)
            body = json.dumps({"error": message, "kind": "forbidden"}).encode()
            self.send_response(403)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Refuse)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    token = tmp_path / "token"
    token.write_text("submit-secret\n")
    try:
        code = main(["--master", f"127.0.0.1:{server.server_address[1]}",
                     "--token-file", str(token), "gc"])
    finally:
        server.shutdown()
        server.server_close()
    err = capsys.readouterr().err
    assert code == 1  # as a missing or wrong token (401): the master refused
    assert f"afarmctl: the master refused (403): {message}" in err
