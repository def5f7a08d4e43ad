# SPDX-License-Identifier: MIT
"""afarmctl slave drain/undrain against a real master: a drained slave takes nothing, the
JSON says so in shown_state, undrain gives it work again; the endpoints need the token."""

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.farm import MasterProcess

APPS = {"echo": "kind = command\nexecutable = /bin/echo\nargv = {item},\n"}


@pytest.fixture
def farm(tmp_path: Path) -> Iterator[MasterProcess]:
    m = MasterProcess(tmp_path, slaves=2, apps=APPS).start()
    yield m
    m.stop()


def shown(farm: MasterProcess) -> dict[str, tuple[str, str, bool]]:
    return {s["name"]: (s["state"], s["shown_state"], s["drained"])
            for s in farm.client.get("/api/v1/slaves")}


def test_a_drained_slave_takes_no_task_until_undrained(farm: MasterProcess) -> None:
    assert shown(farm)["local-1"] == ("online", "idle", False)
    cp = farm.ctl("slave", "drain", "local-1")
    assert cp.returncode == 0 and "local-1: draining" in cp.stdout, cp.stderr
    assert shown(farm)["local-1"] == ("draining", "draining", True)
    job = farm.submit("--app", "echo", "--items", ",".join(str(i) for i in range(8)))
    assert farm.wait(job, timeout=60)["status"] == "completed"
    tasks = farm.client.get(f"/api/v1/jobs/{job}")["tasks"]
    assert {t["slave"] for t in tasks} == {"local-2"}
    cp = farm.ctl("slave", "undrain", "local-1")
    assert cp.returncode == 0 and "local-1: idle, takes tasks again" in cp.stdout
    assert shown(farm)["local-1"] == ("online", "idle", False)


def test_drain_needs_the_client_token_and_a_known_slave(farm: MasterProcess) -> None:
    req = urllib.request.Request(
        f"http://127.0.0.1:{farm.job_port}/api/v1/slaves/local-1/drain", data=b"{}",
        method="POST", headers={"Content-Type": "application/json"})
    with pytest.raises(urllib.error.HTTPError) as exc:
        urllib.request.urlopen(req, timeout=10)  # noqa: S310 (loopback)
    assert exc.value.code == 401
    assert shown(farm)["local-1"][2] is False
    cp = farm.ctl("slave", "drain", "nobody")
    assert cp.returncode != 0 and "afarmctl slaves lists them" in cp.stderr
    assert json.loads(farm.ctl("--json", "slave", "drain", "local-2").stdout)["drained"]
