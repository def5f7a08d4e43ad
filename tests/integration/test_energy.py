# SPDX-License-Identifier: MIT
"""kWh and cost per job through a real master and local slaves: a job's figures are the sum
over its attempts, failed ones included, and afarmctl report totals them."""

import json
import sqlite3
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest

from afarm.cli.commands import figure
from tests.farm import MasterProcess

APPS = {
    "sleep": "kind = command\nexecutable = /bin/sleep\nargv = {item},\ncapture_stdout = false\n",
    "fail": "kind = command\nexecutable = /bin/false\nargv = {item},\n",
}
MACHINE_WATTS, PRICE = 300.0, 0.25
WATTS = MACHINE_WATTS / 2  # a task's share: two local slaves of one slot share the machine


@pytest.fixture(scope="module")
def farm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MasterProcess]:
    m = MasterProcess(tmp_path_factory.mktemp("energy"), slaves=2, apps=APPS,
                      extra_conf=f"[energy]\nprice_per_kwh = {PRICE}\ncurrency = EUR\n")
    # The local slaves' own draw (the master itself, [energy] watts_busy, stays unknown).
    m.conf.write_text(m.conf.read_text().replace(
        "[local_slaves]\n", f"[local_slaves]\nwatts_busy = {MACHINE_WATTS}\n"))
    m.start()
    yield m
    m.stop()


def attempts(farm: MasterProcess, job: int) -> list[tuple[str, float, float | None]]:
    with sqlite3.connect(farm.state / "afarm.db") as db:
        return db.execute("SELECT slave, seconds, watts FROM usage WHERE job_id=?"
                          " ORDER BY task_id, attempt", (job,)).fetchall()


def test_a_finished_job_costs_the_sum_of_its_attempts(farm: MasterProcess) -> None:
    job = farm.submit("--app", "sleep", "--items", "0.3,0.3,0.3")
    assert farm.wait(job)["status"] == "completed"
    rows = attempts(farm, job)
    assert len(rows) == 3 and all(s >= 0.3 and w == WATTS for _, s, w in rows), rows
    kwh = sum(s * WATTS for _, s, _ in rows) / 3.6e6
    energy = farm.client.get(f"/api/v1/jobs/{job}")["energy"]
    assert energy["kwh"] == pytest.approx(kwh, rel=1e-9)
    assert energy["cost"] == pytest.approx(kwh * PRICE, rel=1e-9)
    assert energy["currency"] == "EUR" and energy["estimated"] is True
    listed = [j for j in farm.client.get("/api/v1/jobs") if j["id"] == job][0]
    assert listed["energy"]["kwh"] == pytest.approx(kwh)

    status = farm.ctl("status", str(job))
    assert status.returncode == 0 and f"energy: {figure(kwh)} kWh, {figure(kwh * PRICE, 2)}" \
        " EUR (estimated)" in status.stdout, status.stdout
    jobs = farm.ctl("jobs")
    assert "KWH" in jobs.stdout and f" {figure(kwh)} " in jobs.stdout, jobs.stdout
    as_json = json.loads(farm.ctl("--json", "status", str(job)).stdout)
    assert as_json["energy"]["kwh"] == pytest.approx(kwh)


def test_failed_attempts_are_paid_for_too(farm: MasterProcess) -> None:
    job = farm.submit("--app", "fail", "--items", "x")
    result = farm.wait(job)
    assert result["status"] == "failed"
    task = farm.client.get(f"/api/v1/jobs/{job}")["tasks"][0]
    rows = attempts(farm, job)
    assert len(rows) == task["attempt"] >= 2  # one on each slave
    assert result["energy"]["attempts"] == len(rows)
    assert result["energy"]["kwh"] == pytest.approx(sum(s for _, s, _ in rows) * WATTS / 3.6e6)


def test_the_report_totals_every_attempt_per_job_and_per_slave(farm: MasterProcess) -> None:
    job = farm.submit("--app", "sleep", "--items", "0.2,0.2")
    farm.wait(job)
    cp = farm.ctl("--json", "report", "--since", "2000-01-01")
    assert cp.returncode == 0, cp.stderr
    rep = json.loads(cp.stdout)
    with sqlite3.connect(farm.state / "afarm.db") as db:
        n, seconds = db.execute("SELECT COUNT(*), SUM(seconds) FROM usage").fetchone()
        per_slave = dict(db.execute("SELECT slave, SUM(seconds) FROM usage GROUP BY slave"))
    assert rep["total"]["attempts"] == n
    assert rep["total"]["kwh"] == pytest.approx(seconds * WATTS / 3.6e6)
    assert rep["total"]["cost"] == pytest.approx(seconds * WATTS / 3.6e6 * PRICE)
    assert {s["slave"]: s["busy_hours"] * 3600 for s in rep["slaves"]} == pytest.approx(
        per_slave)
    mine = [j for j in rep["jobs"] if j["job"] == job][0]
    assert mine["tasks"] == 2 and mine["kwh"] == pytest.approx(
        farm.client.get(f"/api/v1/jobs/{job}")["energy"]["kwh"])

    text = farm.ctl("report", "--since", "2000-01-01")
    assert text.returncode == 0 and "per slave:" in text.stdout
    assert "local-1" in text.stdout and f" {figure(seconds * WATTS / 3.6e6)} " in text.stdout

    future = json.loads(farm.ctl("--json", "report", "--since", "2999-01-01",
                                 "--until", "2999-02-01").stdout)
    assert future["total"]["attempts"] == 0 and future["jobs"] == []


@pytest.mark.parametrize("query, says", [
    ("since=yesterday", "since 'yesterday' is not a date"),
    ("", "since is missing"),
    ("since=2026-12-01&until=2026-11-01", "until must be later than since"),
    ("since=2026-13-01", "is not a date"),
])
def test_a_report_with_bad_dates_is_refused_with_a_message(farm: MasterProcess, query: str,
                                                            says: str) -> None:
    cp = farm.ctl("report", "--since", "yesterday")
    assert cp.returncode != 0 and "not a date" in cp.stderr, cp
    url = f"http://127.0.0.1:{farm.results_port}/api/v1/report?{query}"
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {farm.local_token()}"})
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(req, timeout=10)
    assert err.value.code == 400
    assert says in json.loads(err.value.read())["error"]
