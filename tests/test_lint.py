# SPDX-License-Identifier: MIT
"""ruff and mypy run as tests, so `make test` (and the package build) enforce them."""

import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _ruff() -> str:
    local = ROOT / ".tools" / "bin" / "ruff"
    found = str(local) if local.exists() else shutil.which("ruff")
    assert found, "ruff is not installed: run make deps-test"
    return found


def test_ruff_finds_nothing_to_fix() -> None:
    cp = subprocess.run([_ruff(), "check", "src", "tests", "benchmarks"], cwd=ROOT,
                        capture_output=True, text=True, check=False)
    assert cp.returncode == 0, cp.stdout + cp.stderr


def test_mypy_finds_no_type_errors() -> None:
    cp = subprocess.run(["mypy", "--config-file", "pyproject.toml", "src"], cwd=ROOT,
                        capture_output=True, text=True, check=False)
    assert cp.returncode == 0, cp.stdout + cp.stderr
