# SPDX-License-Identifier: MIT
"""The whole pipeline with the `command` kind: fast, no Blender, a real master and slaves."""

import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.farm import MasterProcess

APPS = {
    "factor": "kind = command\nexecutable = /usr/bin/factor\nargv = {item},\n",
    "sleep": "kind = command\nexecutable = /bin/sleep\nargv = {item},\ncapture_stdout = false\n",
    "echo": "kind = command\nexecutable = /bin/echo\nargv = {item},\n",
    "fail": "kind = command\nexecutable = /bin/false\nargv = {item},\n",
    "writer": "kind = command\nexecutable = /usr/bin/touch\nargv = {out}/{item},\n"
              "capture_stdout = false\n",
}


@pytest.fixture
def farm(tmp_path: Path) -> Iterator[MasterProcess]:
    m = MasterProcess(tmp_path, slaves=2, apps=APPS).start()
    yield m
    m.stop()


def test_a_command_job_runs_every_item_and_keeps_its_output(farm: MasterProcess) -> None:
    job = farm.submit("--app", "factor", "--items", "12,97,1001")
    assert farm.wait(job)["status"] == "completed"
    out = farm.job_dir(job) / "out"
    assert (out / "item_000001.out").read_text() == "12: 2 2 3\n"
    assert (out / "item_000003.out").read_text() == "1001: 7 11 13\n"
    assert not list((farm.job_dir(job) / ".partial").iterdir())


def test_items_with_shell_characters_are_single_arguments(farm: MasterProcess) -> None:
    items = ["a b;touch pwned", "$(touch pwned)", "`touch pwned`", "x|touch pwned&"]
    job = farm.submit("--app", "echo", "--items", ",".join(items))
    assert farm.wait(job)["status"] == "completed"
    out = farm.job_dir(job) / "out"
    assert [(out / f"item_{i:06d}.out").read_text() for i in range(1, 5)] == [
        f"{item}\n" for item in items]
    assert not [p for p in farm.base.rglob("pwned")]


def test_placeholders_inside_items_are_not_expanded(farm: MasterProcess) -> None:
    # Issue 9, hole 9: an item is put in as text, never expanded again.
    items = ["{out}", "{input}", "{index}", "x{item}"]
    job = farm.submit("--app", "echo", "--items", ",".join(items))
    assert farm.wait(job)["status"] == "completed"
    out = farm.job_dir(job) / "out"
    assert [(out / f"item_{i:06d}.out").read_text() for i in range(1, 5)] == [
        f"{item}\n" for item in items]


def test_a_program_writing_odd_file_names_fails_loudly(farm: MasterProcess) -> None:
    job = farm.submit("--app", "writer", "--items", "fine.txt,bad name;x")
    assert farm.wait(job)["status"] == "failed"
    errors = [t["error"] for t in farm.client.get(f"/api/v1/jobs/{job}")["tasks"]]
    assert any("'bad name;x'" in e and "letters, digits" in e for e in errors), errors


def test_a_failing_command_fails_the_job_after_every_slave_tried(farm: MasterProcess) -> None:
    job = farm.submit("--app", "fail", "--items", "x")
    result = farm.wait(job)
    assert result["status"] == "failed"
    task = farm.client.get(f"/api/v1/jobs/{job}")["tasks"][0]
    assert {f["slave"] for f in task["failures"]} == {"local-1", "local-2"}
    assert "exited 1" in task["error"]
    log = farm.ctl("logs", str(job)).stdout
    assert "false" in log and "exit code: 1" in log


def test_a_failed_job_does_not_affect_another_job(farm: MasterProcess) -> None:
    bad = farm.submit("--app", "fail", "--items", "x")
    good = farm.submit("--app", "factor", "--items", "6,10")
    assert farm.wait(bad)["status"] == "failed"
    assert farm.wait(good)["status"] == "completed"


def test_a_task_past_its_timeout_is_stopped_and_not_left_running(farm: MasterProcess) -> None:
    job = farm.submit("--app", "sleep", "--items", "30", "--timeout", "1")
    result = farm.wait(job, timeout=60)
    assert result["status"] == "failed"
    task = farm.client.get(f"/api/v1/jobs/{job}")["tasks"][0]
    assert "timed out" in task["error"]


def test_cancel_stops_running_tasks(farm: MasterProcess) -> None:
    job = farm.submit("--app", "sleep", "--items", "30,30,30")
    farm.client.get(f"/api/v1/jobs/{job}")
    cp = farm.ctl("cancel", str(job))
    assert cp.returncode == 0, cp.stderr
    assert farm.wait(job, timeout=20)["status"] == "canceled"
    slaves = farm.client.get("/api/v1/slaves")
    assert all(s["running"] == [] for s in slaves)


def test_pause_holds_tasks_and_resume_releases_them(farm: MasterProcess) -> None:
    job = farm.submit("--app", "sleep", "--items", ",".join(["0.2"] * 6))
    assert farm.ctl("pause", str(job)).returncode == 0
    paused = farm.client.get(f"/api/v1/jobs/{job}")
    assert paused["status"] == "paused"
    assert farm.ctl("resume", str(job)).returncode == 0
    assert farm.wait(job)["status"] == "completed"


@pytest.mark.parametrize(("args", "needle"), [
    (["--app", "nope", "--items", "1"], "unknown application 'nope'"),
    (["--app", "factor"], "--items"),
    (["--app", "factor", "--items", "1", "--frames", "1"], "no option 'frames'"),
    (["--app", "factor", "--items", "1", "--priority", "500"], "--priority"),
    (["/no/such/file.blend", "--frames", "1"], "no such file"),
    # Issue 9, hole 9: an item that the program would read as an option.
    (["--app", "factor", "--items=--version"], "item 1 ('--version') starts with '-'"),
    (["--app", "factor", "--items=12,-h"], "item 2 ('-h') starts with '-'"),
])
def test_bad_submissions_exit_2_and_store_nothing(farm: MasterProcess, args: list[str],
                                                  needle: str) -> None:
    cp = farm.ctl("submit", *args)
    assert cp.returncode == 2, cp.stderr
    assert needle in cp.stderr
    assert farm.client.get("/api/v1/jobs") == []


def test_json_output_is_machine_readable(farm: MasterProcess) -> None:
    job = farm.submit("--app", "factor", "--items", "4")
    farm.wait(job)
    jobs = json.loads(farm.ctl("--json", "jobs").stdout)
    assert [j["id"] for j in jobs] == [job]
    slaves = json.loads(farm.ctl("--json", "slaves").stdout)
    assert {s["name"] for s in slaves} == {"local-1", "local-2"}


def test_fetch_downloads_every_output(farm: MasterProcess, tmp_path: Path) -> None:
    job = farm.submit("--app", "factor", "--items", "8,9")
    farm.wait(job)
    cp = farm.ctl("fetch", str(job), "-o", str(tmp_path / "got"))
    assert cp.returncode == 0, cp.stderr
    assert (tmp_path / "got" / "item_000002.out").read_text() == "9: 3 3\n"


def test_the_store_is_real_sqlite_with_every_task(farm: MasterProcess) -> None:
    job = farm.submit("--app", "factor", "--items", ",".join(map(str, range(2, 52))))
    farm.wait(job)
    db = sqlite3.connect(farm.state / "afarm.db")
    rows = db.execute("SELECT status, COUNT(*) FROM tasks WHERE job_id=? GROUP BY status",
                      (job,)).fetchall()
    assert rows == [("completed", 50)]


def test_actions_that_do_not_apply_to_a_job_are_refused_with_its_status(
        farm: MasterProcess) -> None:
    job = farm.submit("--app", "factor", "--items", "6")
    farm.wait(job)
    for verb in ("cancel", "pause", "resume", "requeue"):
        cp = farm.ctl(verb, str(job))
        assert cp.returncode == 1 and f"job {job} is completed" in cp.stderr, cp.stderr
    assert farm.client.get(f"/api/v1/jobs/{job}")["status"] == "completed"


def test_a_failed_job_can_be_requeued_and_runs_again(farm: MasterProcess) -> None:
    job = farm.submit("--app", "fail", "--items", "x")
    assert farm.wait(job)["status"] == "failed"
    assert farm.ctl("requeue", str(job)).returncode == 0
    assert farm.wait(job)["status"] == "failed"
    task = farm.client.get(f"/api/v1/jobs/{job}")["tasks"][0]
    assert task["attempt"] == 4  # two slaves tried it before and again after the requeue


def test_an_output_larger_than_the_master_takes_fails_the_task_and_is_not_stored(
        tmp_path: Path) -> None:
    apps = {"big": "kind = command\nexecutable = /usr/bin/head\nargv = -c, {item}, /dev/zero\n"}
    farm = MasterProcess(tmp_path, slaves=1, apps=apps,
                         extra_conf="[scheduler]\nmax_output_mib = 1\n").start()
    try:
        job = farm.submit("--app", "big", "--items", "2000000")
        done = farm.wait(job)
        assert done["status"] == "failed"
        assert "larger than 1048576 bytes" in done["tasks"][0]["error"]
        assert not list((farm.job_dir(job) / "out").iterdir())
        assert not list((farm.job_dir(job) / ".partial").iterdir())
    finally:
        farm.stop()
