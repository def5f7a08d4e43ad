# SPDX-License-Identifier: MIT
"""The daemon's start-up rules: config errors, tokens, and the event stream."""

import re
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from tests.farm import ENV, MasterProcess
from tests.platform import need_root

EX_CONFIG = 78


def run_master(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "afarm.master.daemon", *args],
                          capture_output=True, text=True, env=ENV, timeout=60, check=False)


def test_a_bad_config_exits_78_and_lists_every_problem(tmp_path: Path) -> None:
    conf = tmp_path / "master.conf"
    conf.write_text("[scheduler]\nslaves_per_task = many\n[job_port]\nlisten = nowhere\n"
                    "[local_slaves]\ncount = -1\n")
    cp = run_master("--config", str(conf))
    assert cp.returncode == EX_CONFIG
    assert "[scheduler] slaves_per_task" in cp.stderr
    assert "[local_slaves] count" in cp.stderr


def test_a_missing_config_file_exits_78_naming_it(tmp_path: Path) -> None:
    cp = run_master("--config", str(tmp_path / "absent.conf"))
    assert cp.returncode == EX_CONFIG and "absent.conf" in cp.stderr


def test_a_broken_application_definition_exits_78(tmp_path: Path) -> None:
    farm = MasterProcess(tmp_path, slaves=0, apps={"bad": "kind = blender\n"})
    cp = run_master("--config", str(farm.conf))
    assert cp.returncode == EX_CONFIG
    assert "bad.conf: executable" in cp.stderr


def test_a_job_port_off_loopback_without_tokens_refuses_to_start(tmp_path: Path) -> None:
    farm = MasterProcess(tmp_path, slaves=0)
    text = farm.conf.read_text().replace(f"listen = 127.0.0.1:{farm.job_port}",
                                         f"listen = 0.0.0.0:{farm.job_port}")
    farm.conf.write_text(text)
    cp = run_master("--config", str(farm.conf))
    assert cp.returncode == EX_CONFIG
    assert "new-token" in cp.stderr


def test_with_a_token_the_job_port_refuses_requests_without_it(tmp_path: Path) -> None:
    farm = MasterProcess(tmp_path, slaves=1, apps={
        "factor": "kind = command\nexecutable = /usr/bin/factor\nargv = {item},\n"})
    text = farm.conf.read_text().replace(f"listen = 127.0.0.1:{farm.job_port}",
                                         f"listen = 0.0.0.0:{farm.job_port}")
    farm.conf.write_text(text)
    cp = run_master("--config", str(farm.conf), "new-token")
    assert cp.returncode == 0, cp.stderr
    token = cp.stdout.strip()
    assert token not in (tmp_path / "tokens").read_text()  # only its digest is kept
    token_file = tmp_path / "token"
    token_file.write_text(token + "\n")
    farm.client.token = token  # the results port wants it too once tokens exist
    farm.start(wait_slaves=False)
    try:
        refused = farm.ctl("submit", "--app", "factor", "--items", "6", token=False)
        assert refused.returncode == 1 and "token" in refused.stderr
        wrong = farm.ctl("--token-file", str(tmp_path / "tokens"), "jobs")
        assert wrong.returncode == 1
        ok = farm.ctl("--token-file", str(token_file), "--json", "submit", "--app", "factor",
                      "--items", "6")
        assert ok.returncode == 0, ok.stderr
        env_ok = subprocess.run(
            [sys.executable, "-m", "afarm.cli.main", *farm.master_arg, "jobs"],
            capture_output=True, text=True, env={**ENV, "AFARM_TOKEN": token}, check=False)
        assert env_ok.returncode == 0, env_ok.stderr
    finally:
        farm.stop()


def test_events_stream_task_changes_as_server_sent_events(tmp_path: Path) -> None:
    farm = MasterProcess(tmp_path, slaves=1, apps={
        "factor": "kind = command\nexecutable = /usr/bin/factor\nargv = {item},\n"}).start()
    try:
        job = farm.submit("--app", "factor", "--items", "6")
        farm.wait(job)
        url = f"{farm.client.results_url}/api/v1/events?job={job}"
        seen = []
        with urllib.request.urlopen(url, timeout=10) as resp:  # noqa: S310 (loopback)
            assert resp.headers["Content-Type"].startswith("text/event-stream")
            for raw in resp:
                line = raw.decode().strip()
                if line.startswith("event: "):
                    seen.append(line[7:])
                if "job-completed" in seen:
                    break
        assert seen[:4] == ["job-accepted", "task-active", "job-active", "task-completed"]
    finally:
        farm.stop()


@pytest.mark.parametrize("verb", ["status", "wait", "fetch", "cancel", "logs"])
def test_verbs_on_an_unknown_job_exit_2_naming_it(tmp_path: Path, verb: str) -> None:
    farm = MasterProcess(tmp_path, slaves=0).start(wait_slaves=False)
    try:
        cp = farm.ctl(verb, "42")
        assert cp.returncode == 2 and "no job 42" in cp.stderr, cp.stderr
    finally:
        farm.stop()


def test_started_as_root_the_daemon_refuses_and_says_how_to_run_it(tmp_path: Path) -> None:
    need_root("this test starts the master as root")
    farm = MasterProcess(tmp_path, slaves=0)
    farm.conf.write_text(farm.conf.read_text().replace("allow_root = yes\n", ""))
    cp = run_master("--config", str(farm.conf))
    assert cp.returncode == 77
    assert "runuser -u afarm-master" in cp.stderr and "--allow-root" in cp.stderr
    assert not (tmp_path / "state").exists()  # it wrote nothing as root


def test_the_masters_log_lines_carry_timestamps(tmp_path: Path) -> None:
    farm = MasterProcess(tmp_path, slaves=0).start(wait_slaves=False)
    farm.stop()
    lines = [ln for ln in farm.logtext().splitlines() if "afarm.master" in ln]
    assert lines and all(re.match(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} afarm", ln)
                         for ln in lines), lines


def test_config_errors_name_the_section_and_the_allowed_values(tmp_path: Path) -> None:
    conf = tmp_path / "master.conf"
    conf.write_text("[master]\nlog_level = loud\n[job_port]\nmax_upload_mib = 0\n")
    cp = run_master("--config", str(conf), "check-config")
    assert cp.returncode == EX_CONFIG
    assert "[master] log_level = 'loud' is not allowed; give one of debug, info, warning," \
           " error" in cp.stderr
    assert "[job_port] max_upload_mib = '0' is not allowed; give a whole number from 1 to" \
        in cp.stderr
    assert "unacceptable" not in cp.stderr and "(None)" not in cp.stderr
