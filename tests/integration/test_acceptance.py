# SPDX-License-Identifier: MIT
"""Acceptance with a real master and local slaves: a fresh slave is tested and benchmarked
before its first task, a failing one is quarantined with the reason and takes no task
until `afarmctl slave test` passes it, and a restart with nothing changed benchmarks
nothing again."""

import json
import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest

from tests.farm import MasterProcess

ECHO = "kind = command\nexecutable = /bin/echo\nargv = {item},\n"


def events(m: MasterProcess) -> list[tuple[str, str, Any]]:
    with sqlite3.connect(m.state / "afarm.db") as db:
        return [(k, msg, json.loads(data).get("state")) for k, msg, data in db.execute(
            "SELECT kind, message, data FROM events ORDER BY id")]


def slave(m: MasterProcess, name: str) -> dict[str, Any]:
    cp = m.ctl("--json", "slaves")
    assert cp.returncode == 0, cp.stderr
    found: dict[str, Any] = next(s for s in json.loads(cp.stdout) if s["name"] == name)
    return found


@pytest.mark.slow
def test_a_fresh_slave_is_tested_and_benchmarked_before_its_first_task(
        tmp_path: Path) -> None:
    m = MasterProcess(tmp_path, slaves=1, apps={"echo": ECHO},
                      acceptance="benchmark_frames = 2\n").start()
    try:
        job = m.submit("--app", "echo", "--items", "a,b")
        assert m.wait(job)["status"] == "completed"
        ev = events(m)
        kinds = [(k, s) for k, _, s in ev]
        order = [kinds.index(("slave-state", "testing")),
                 kinds.index(("slave-benchmarked", None)),
                 kinds.index(("slave-state", "online")),
                 kinds.index(("task-active", None))]
        assert order == sorted(order), ev
        s = slave(m, "local-1")
        assert s["state"] == "online"
        assert s["benchmark"]["engine"] == "CYCLES" and s["benchmark"]["seconds_per_frame"] > 0
        checks = {c["name"]: c for c in s["info"]["acceptance"]["checks"]}
        assert {"rsync", "scratch", "sandbox", "disk", "memory", "gpus",
                "application blender", "application ffmpeg", "application echo"} <= set(checks)
        assert all(c["ok"] for c in checks.values())
        text = m.ctl("slaves").stdout
        assert "S/FRAME" in text and f"{s['benchmark']['seconds_per_frame']:.3g}" in text
        m.stop()
        # Restarted, nothing changed: no new test and no new benchmark.
        m.start()
        job = m.submit("--app", "echo", "--items", "c")
        assert m.wait(job)["status"] == "completed"
        again = events(m)[len(ev):]
        assert not [e for e in again if e[0] == "slave-benchmarked" or e[2] == "testing"]
    finally:
        m.stop()


def test_a_slave_whose_application_test_fails_is_quarantined_until_it_passes(
        tmp_path: Path) -> None:
    tool = "kind = command\nexecutable = /bin/echo\nargv = {item},\ntest = /bin/false,\n"
    apps = {"echo": ECHO, "tool": tool}
    # Blender and ffmpeg are not what this test is about: leave them out to keep it fast.
    m = MasterProcess(tmp_path, slaves=1, apps=apps)
    for name in ("blender", "ffmpeg"):
        (m.apps_dir / f"{name}.conf").unlink()
    m.start()
    try:
        s = slave(m, "local-1")
        assert s["state"] == "quarantined"
        assert s["last_error"] == "application tool: its test (/bin/false) exited 1"
        assert "quarantined" in m.ctl("slaves").stdout
        job = m.submit("--app", "echo", "--items", "a")
        time.sleep(1.5)
        status = m.client.get(f"/api/v1/jobs/{job}")
        assert status["status"] == "queued" and status["progress"]["completed"] == 0
        cp = m.ctl("slave", "test", "local-1")
        assert cp.returncode == 1 and "quarantined: application tool" in cp.stdout
        # The admin fixes the definition: its software changed, so it is tested again.
        m.stop()
        (m.apps_dir / "tool.conf").write_text(tool.replace("/bin/false", "/bin/true"))
        m.start()
        assert m.wait(job, timeout=60)["status"] == "completed"
        s = slave(m, "local-1")
        assert s["state"] == "online" and s["last_error"] == ""
        cp = m.ctl("slave", "test", "local-1")
        assert cp.returncode == 0, cp.stdout + cp.stderr
        assert "local-1: passed, online" in cp.stdout
        cp = m.ctl("slave", "test", "nobody")
        assert cp.returncode != 0 and "no slave 'nobody'" in cp.stderr
        assert m.ctl("slave", "test").returncode != 0
    finally:
        m.stop()


def test_a_slave_below_the_disk_threshold_is_quarantined(tmp_path: Path) -> None:
    m = MasterProcess(tmp_path, slaves=1, apps={"echo": ECHO},
                      acceptance="benchmark_frames = 0\nmin_disk_mib = 1000000000\n")
    for name in ("blender", "ffmpeg"):
        (m.apps_dir / f"{name}.conf").unlink()
    m.start()
    try:
        s = slave(m, "local-1")
        assert s["state"] == "quarantined" and "min_disk_mib = 1000000000" in s["last_error"]
    finally:
        m.stop()
