# SPDX-License-Identifier: MIT
"""Both ports against their own OpenAPI description, fuzzed by schemathesis on a live master:
no server error, and every refusal is JSON with an error message."""

import json
import os
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.farm import ROOT, MasterProcess

PYLIB = ROOT / ".tools" / "pylib"  # `make deps-test`: pip install --target (no venv)
APPS = {"factor": "kind = command\nexecutable = /usr/bin/factor\nargv = {item},\n"}
# Endpoints whose answers do not end: the event stream.
EXCLUDE = "^/api/v1/events$"


@pytest.fixture(scope="module")
def farm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MasterProcess]:
    m = MasterProcess(tmp_path_factory.mktemp("openapi"), slaves=1, apps=APPS).start()
    yield m
    m.stop()


@pytest.mark.parametrize("port", ["job_port", "results_port"])
def test_each_port_serves_its_openapi_description(farm: MasterProcess, port: str) -> None:
    url = f"http://127.0.0.1:{getattr(farm, port)}/api/v1/openapi.json"
    with urllib.request.urlopen(url, timeout=10) as resp:  # noqa: S310 (loopback)
        doc = json.loads(resp.read())
    assert doc["openapi"].startswith("3.")
    assert "/api/v1/jobs" in doc["paths"]


@pytest.mark.slow
@pytest.mark.parametrize("port", ["job_port", "results_port"])
def test_schemathesis_finds_no_server_error_and_no_refusal_without_a_message(
        farm: MasterProcess, port: str, tmp_path: Path) -> None:
    if not (PYLIB / "schemathesis").is_dir():
        pytest.fail(f"schemathesis is not installed in {PYLIB}; run: make deps-test")
    farm.submit("--app", "factor", "--items", "6,28")  # something to read and act on
    base = f"http://127.0.0.1:{getattr(farm, port)}"
    argv = [sys.executable, "-m", "schemathesis.cli", "run", f"{base}/api/v1/openapi.json",
            "--base-url", base, "-H", f"Authorization: Bearer {farm.local_token()}",
            "--checks", "not_a_server_error,status_code_conformance,"
                        "content_type_conformance,response_schema_conformance",
            "--data-generation-method", "all", "--hypothesis-max-examples", "60",
            "--hypothesis-seed", "7731", "--hypothesis-database", "none",
            "--request-timeout", "10000", "--exclude-path-regex", EXCLUDE,
            "--hypothesis-suppress-health-check", "all",
            "--schemathesis-io-telemetry", "false", "--hosts-file", str(tmp_path / "hosts")]
    env = {**os.environ, "PYTHONPATH": str(PYLIB), "SCHEMATHESIS_HOSTS_PATH":
           str(tmp_path / "hosts")}
    cp = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=240,
                        check=False, cwd=tmp_path)
    assert cp.returncode == 0, cp.stdout[-6000:] + cp.stderr[-2000:]
    assert farm.proc is not None and farm.proc.poll() is None
    assert "Traceback" not in farm.logtext(), farm.logtext()[-4000:]
