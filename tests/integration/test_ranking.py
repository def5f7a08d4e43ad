# SPDX-License-Identifier: MIT
"""The ranking through a real master with two local slaves whose definitions differ: the
order `afarmctl slaves --rank` shows is the order in which they get the first tasks."""

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.farm import MasterProcess

APPS = {"sleep": "kind = command\nexecutable = /bin/sleep\nargv = {item},\n"
                 "capture_stdout = false\n"}
# local-1: slow but frugal (50 W at 1 frame/s: 50 J a frame); local-2: fast but hungry
# (400 W at 5 frames/s: 80 J a frame).
PROPERTIES = ("[[local-1]]\nspeed = 1\nwatts_busy = 50\nvram_gib = 8\n"
              "[[local-2]]\nspeed = 5\nwatts_busy = 400\nvram_gib = 24\n")


@pytest.fixture
def farm(tmp_path: Path) -> Iterator[MasterProcess]:
    m = MasterProcess(tmp_path, slaves=2, apps=APPS, extra_conf=PROPERTIES).start()
    yield m
    m.stop()


def first_slave(farm: MasterProcess, job: int) -> str:
    assert farm.wait(job, timeout=60)["status"] == "completed"
    tasks = farm.client.get(f"/api/v1/jobs/{job}")["tasks"]
    return str(tasks[0]["slave"])


def test_slaves_rank_shows_the_order_and_the_fastest_takes_the_first_task(
        farm: MasterProcess) -> None:
    cp = farm.ctl("--json", "slaves", "--rank")
    assert cp.returncode == 0, cp.stderr
    ranking = json.loads(cp.stdout)
    assert ranking["policy"] == "fastest"
    rows = ranking["slaves"]
    assert [r["slave"] for r in rows] == ["local-2", "local-1"]
    assert rows[0]["properties"]["speed"] == 5.0
    assert rows[0]["properties"]["vram_gib"] == 24.0  # a definition's own property
    assert "speed" in rows[0]["why"]
    text = farm.ctl("slaves", "--rank").stdout
    assert "policy: fastest" in text
    assert text.splitlines()[2].startswith("1st  local-2") and "+speed = 5" in text
    assert text.splitlines()[3].startswith("2nd  local-1")
    job = farm.submit("--app", "sleep", "--items", "0.2")
    assert first_slave(farm, job) == "local-2"


def test_a_jobs_policy_puts_the_frugal_slave_first(farm: MasterProcess) -> None:
    cp = farm.ctl("--json", "slaves", "--rank", "--policy", "greenest")
    assert [r["slave"] for r in json.loads(cp.stdout)["slaves"]] == ["local-1", "local-2"]
    job = farm.submit("--app", "sleep", "--items", "0.2", "--policy", "greenest")
    assert first_slave(farm, job) == "local-1"
    shown = json.loads(farm.ctl("--json", "slaves", "--rank", "--job", str(job)).stdout)
    assert {r["slave"] for r in shown["slaves"]} == {"local-1", "local-2"}


def test_a_job_no_slave_has_the_memory_for_waits_and_the_ranking_says_why(
        farm: MasterProcess) -> None:
    job = farm.submit("--app", "sleep", "--items", "0.1", "--min-memory", str(1 << 30))
    cp = farm.ctl("--json", "slaves", "--rank", "--job", str(job))
    rows = json.loads(cp.stdout)["slaves"]
    assert all(r["position"] is None and "memory" in r["why"] for r in rows), rows
    assert farm.client.get(f"/api/v1/jobs/{job}")["status"] == "queued"
    status = farm.ctl("status", str(job)).stdout
    assert f"slaves: at least {1 << 30} MiB (afarmctl slaves --rank --job {job})" in status
    farm.ctl("cancel", str(job))


def test_an_unknown_policy_is_refused_with_the_ones_there_are(farm: MasterProcess) -> None:
    cp = farm.ctl("submit", "--app", "sleep", "--items", "0.1", "--policy", "nosuch")
    assert cp.returncode == 2 and "pareto" in cp.stderr, cp.stderr
    cp = farm.ctl("slaves", "--rank", "--policy", "nosuch")
    assert cp.returncode == 2 and "fastest" in cp.stderr, cp.stderr
