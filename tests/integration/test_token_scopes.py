# SPDX-License-Identifier: MIT
"""Token scopes on a real master: an artist's submit token submits and manages jobs, and is
refused (403, with the way out) what only the farm's admin may do."""

import http.client
import io
import json
import subprocess
import sys
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.farm import ENV, MasterProcess

APPS = {"factor": "kind = command\nexecutable = /usr/bin/factor\nargv = {item},\n"}
REFUSAL = ("this token may submit and manage jobs only; ask the farm's admin or use an admin"
           " token (afarm-master new-token LABEL --scope admin)")


def new_token(farm: MasterProcess, *args: str) -> str:
    cp = subprocess.run([sys.executable, "-m", "afarm.master.daemon", "--config",
                         str(farm.conf), "new-token", *args],
                        capture_output=True, text=True, env=ENV, timeout=60, check=False)
    assert cp.returncode == 0, cp.stderr
    return cp.stdout.strip()


@pytest.fixture(scope="module")
def farm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[MasterProcess, Path,
                                                                      Path]]:
    base = tmp_path_factory.mktemp("scopes")
    m = MasterProcess(base, slaves=1, apps=APPS)
    artist, admin = base / "artist.token", base / "admin.token"
    artist.write_text(new_token(m, "alice") + "\n")  # submit: the default
    admin.write_text(new_token(m, "ops", "--scope", "admin") + "\n")
    m.client.token = artist.read_text().strip()  # reading: any token
    m.start(wait_slaves=False)
    yield m, artist, admin
    m.stop()


def test_new_token_writes_the_scope_beside_the_digest(
        farm: tuple[MasterProcess, Path, Path]) -> None:
    m, _, _ = farm
    lines = (m.base / "tokens").read_text().splitlines()
    assert [ln.split()[1:] for ln in lines] == [["scope=submit", "alice"],
                                                ["scope=admin", "ops"]]


def test_a_submit_token_submits_and_manages_its_job_with_afarmctl(
        farm: tuple[MasterProcess, Path, Path]) -> None:
    m, artist, _ = farm
    cp = m.ctl("--token-file", str(artist), "--json", "submit", "--app", "factor",
               "--items", "6,28", "--require-tag", "no-slave-has-it")  # stays queued
    assert cp.returncode == 0, cp.stderr
    job = json.loads(cp.stdout)["id"]
    for verb in (["pause", str(job)], ["resume", str(job)], ["cancel", str(job)]):
        done = m.ctl("--token-file", str(artist), *verb)
        assert done.returncode == 0, (verb, done.stderr)
    listed = m.ctl("--token-file", str(artist), "--json", "jobs")
    assert listed.returncode == 0 and job in [j["id"] for j in json.loads(listed.stdout)]


def test_a_submit_token_cannot_add_an_application_to_the_pool(
        farm: tuple[MasterProcess, Path, Path], tmp_path: Path) -> None:
    m, artist, _ = farm
    archive = tmp_path / "evil.tar.xz"
    with tarfile.open(archive, "w:xz") as tar:
        data = b"#!/bin/sh\necho owned\n"
        info = tarfile.TarInfo("evil/blender")
        info.size, info.mode = len(data), 0o755
        tar.addfile(info, io.BytesIO(data))
    cp = m.ctl("--token-file", str(artist), "app", "add", "blender", "9.9", str(archive))
    assert cp.returncode == 1
    assert f"afarmctl: the master refused (403): {REFUSAL}" in cp.stderr
    assert "refused PUT /api/v1/apps/blender/9.9 from 127.0.0.1: token 'alice' is" \
           " submit-only" in m.logtext()
    pool = m.ctl("--token-file", str(artist), "--json", "app", "list")
    assert pool.returncode == 0 and json.loads(pool.stdout)["versions"] == []


def test_an_admin_token_makes_an_enrolment_token_a_submit_token_may_not(
        farm: tuple[MasterProcess, Path, Path]) -> None:
    m, artist, admin = farm
    refused = m.ctl("--token-file", str(artist), "slave", "token")
    assert refused.returncode == 1 and REFUSAL in refused.stderr
    made = m.ctl("--token-file", str(admin), "--json", "slave", "token")
    assert made.returncode == 0, made.stderr
    assert json.loads(made.stdout)["token"]


def test_the_web_page_can_read_the_403_of_a_submit_token(
        farm: tuple[MasterProcess, Path, Path]) -> None:
    """The page's drain button with an artist's token: its message, not "Failed to fetch"."""
    m, artist, _ = farm
    origin = f"http://127.0.0.1:{m.results_port}"
    conn = http.client.HTTPConnection("127.0.0.1", m.job_port, timeout=10)
    conn.request("POST", "/api/v1/slaves/local-1/drain", b"{}", {
        "Origin": origin, "Content-Type": "application/json",
        "Authorization": f"Bearer {artist.read_text().strip()}"})
    resp = conn.getresponse()
    body = json.loads(resp.read())
    conn.close()
    assert resp.status == 403 and body == {"error": REFUSAL, "kind": "forbidden"}
    assert resp.getheader("Access-Control-Allow-Origin") == origin
    slaves = m.client.get("/api/v1/slaves")
    assert not any(s.get("drained") for s in slaves)


@pytest.mark.parametrize(("args", "code", "said"), [
    (["a\tb"], 64, "token label 'a\\tb'"),
    (["alice", "--scope", "root"], 2, "invalid choice: 'root'"),
])
def test_new_token_refuses_a_bad_label_or_scope_and_writes_nothing(
        tmp_path: Path, args: list[str], code: int, said: str) -> None:
    m = MasterProcess(tmp_path, slaves=0)
    cp = subprocess.run([sys.executable, "-m", "afarm.master.daemon", "--config",
                         str(m.conf), "new-token", *args],
                        capture_output=True, text=True, env=ENV, timeout=60, check=False)
    assert (cp.returncode, cp.stdout) == (code, "")
    assert said in cp.stderr
    assert not (tmp_path / "tokens").exists()
