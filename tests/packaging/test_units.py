# SPDX-License-Identifier: MIT
"""The systemd units: valid (systemd-analyze verify), hardened (exposure 3.0 or less),
and saying what the packages and the daemons expect. Neither check needs systemd as PID 1."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
UNITS = ("afarm-master", "afarm-slave")
MAX_EXPOSURE = 3.0
# What each unit must say: (key, value) pairs.
EXPECTED = {
    "afarm-master": [("User", "afarm-master"), ("Type", "notify"),
                     ("ExecStart", "/usr/bin/afarm-master --config /etc/afarm/master.conf"),
                     ("StateDirectory", "afarm-master"), ("Restart", "on-failure"),
                     ("RestartPreventExitStatus", "78")],
    "afarm-slave": [("User", "afarm"), ("Type", "notify"),
                    ("ExecStart", "/usr/bin/afarm-slave --config /etc/afarm/slave.conf run"),
                    ("Restart", "on-failure"), ("RestartPreventExitStatus", "78")],
}
HARDENING = [("ProtectSystem", "strict"), ("NoNewPrivileges", "yes"),
             ("CapabilityBoundingSet", ""), ("SystemCallFilter", "@system-service"),
             ("PrivateTmp", "yes"), ("ProtectHome", "yes"), ("PrivateDevices", "yes"),
             ("ProtectKernelTunables", "yes"), ("RestrictSUIDSGID", "yes")]
# Settings that open the sandbox up; each must have a comment right above it saying why.
RELAXATIONS = ("ReadWritePaths", "RestrictAddressFamilies", "SupplementaryGroups",
               "DeviceAllow", "PrivateNetwork=no", "MemoryDenyWriteExecute=no")

pytestmark = pytest.mark.skipif(shutil.which("systemd-analyze") is None,
                                reason="needs systemd-analyze (apt-get install systemd)")


def unit_path(name: str) -> Path:
    return ROOT / "systemd" / f"{name}.service"


def settings(name: str) -> list[tuple[str, str]]:
    out = []
    for line in unit_path(name).read_text().splitlines():
        if "=" in line and not line.startswith(("#", ";", "[")):
            key, _, value = line.partition("=")
            out.append((key.strip(), value.strip()))
    return out


def _stub_root(tmp_path: Path) -> Path:
    """Executable stand-ins for the commands the units start, for verify to find."""
    stubs = tmp_path / "bin"
    stubs.mkdir()
    for prog in ("afarm-master", "afarm-slave"):
        (stubs / prog).write_text("#!/bin/sh\nexit 0\n")
        (stubs / prog).chmod(0o755)
    return stubs


@pytest.mark.parametrize("name", UNITS)
def test_the_unit_passes_systemd_analyze_verify(name: str, tmp_path: Path) -> None:
    # The programs are installed only by the packages, so the copy verified here points
    # at stubs; test_debian_packages verifies the installed units against the real ones
    # and their man pages.
    stubs = _stub_root(tmp_path)
    copy = tmp_path / f"{name}.service"
    copy.write_text(unit_path(name).read_text().replace("/usr/bin/", f"{stubs}/"))
    cp = subprocess.run(["systemd-analyze", "verify", "--man=no", str(copy)],
                        capture_output=True, text=True, check=False, cwd=tmp_path)
    assert cp.returncode == 0 and not cp.stderr.strip(), cp.stdout + cp.stderr


@pytest.mark.parametrize("name", UNITS)
def test_the_unit_is_exposed_at_most_3_0_by_systemd_analyze_security(name: str) -> None:
    cp = subprocess.run(["systemd-analyze", "security", "--offline=yes", "--no-pager",
                         str(unit_path(name))], capture_output=True, text=True, check=False)
    m = re.search(r"Overall exposure level for \S+: (\d+\.\d)", cp.stdout)
    assert m, cp.stdout + cp.stderr
    assert float(m.group(1)) <= MAX_EXPOSURE, cp.stdout


@pytest.mark.parametrize("name", UNITS)
def test_the_unit_runs_the_daemon_as_the_packages_expect(name: str) -> None:
    have = settings(name)
    for pair in EXPECTED[name] + HARDENING:
        assert pair in have, f"{name}.service lacks {pair[0]}={pair[1]}"


@pytest.mark.parametrize("name", UNITS)
def test_every_relaxation_of_the_sandbox_is_commented(name: str) -> None:
    lines = unit_path(name).read_text().splitlines()
    for i, line in enumerate(lines):
        if line.startswith(RELAXATIONS):
            above = lines[i - 1] if i else ""
            assert above.startswith("#"), f"{name}.service: say why above {line!r}"


@pytest.mark.parametrize("name", UNITS)
def test_the_units_documentation_names_pages_the_packages_ship(name: str) -> None:
    docs = dict(settings(name))["Documentation"].split()
    for doc in docs:
        m = re.fullmatch(r"man:([\w.-]+)\((\d)\)", doc)
        assert m, doc
        assert (ROOT / "man" / f"{m.group(1)}.{m.group(2)}").is_file(), doc
