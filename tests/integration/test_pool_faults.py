# SPDX-License-Identifier: MIT
"""Pool versions that go wrong: a corrupted archive is refused, a version that fails its
acceptance test quarantines the slave for that version only."""

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.farm import MasterProcess
from tests.fixtures.blends import make_scene
from tests.fixtures.pool_versions import system_blender_dir

pytestmark = pytest.mark.slow
BROKEN = """#!/usr/bin/python3 -I
import sys
print("this build is broken", file=sys.stderr)
sys.exit(1)
"""


@pytest.fixture(scope="module")
def scene(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_scene(tmp_path_factory.mktemp("scene"), frames=1, width=64, height=36)


@pytest.fixture(scope="module")
def farm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MasterProcess]:
    m = MasterProcess(tmp_path_factory.mktemp("pool-faults"), slaves=2).start()
    try:
        good = m.ctl("app", "add", "blender", "3.4.1", str(system_blender_dir(m.base / "src")))
        assert good.returncode == 0, good.stderr
        yield m
    finally:
        m.stop()


def apps_on_slaves(farm: MasterProcess, version: str) -> list[Path]:
    return [p for s in ("local-1", "local-2")
            for p in (farm.base / "slaves" / s / "apps" / "blender").glob(f"{version}*")]


def test_a_version_failing_its_acceptance_test_quarantines_the_slave_for_it_only(
        farm: MasterProcess, scene: Path) -> None:
    broken = farm.base / "broken"
    shutil.copytree(system_blender_dir(farm.base / "src2"), broken)
    (broken / "blender").write_text(BROKEN)
    assert farm.ctl("app", "add", "blender", "3.9.0", str(broken)).returncode == 0
    bad = farm.submit(str(scene), "--frames", "1", "--app", "blender (= 3.9.0)")
    job = farm.wait(bad)
    assert job["status"] == "failed"
    logs = farm.ctl("logs", str(bad)).stdout
    assert "3.9.0 failed its acceptance test" in logs and "this build is broken" in logs
    slaves = {s["name"]: s for s in farm.client.get("/api/v1/slaves")}
    for s in slaves.values():
        assert s["state"] in ("online", "busy")  # the slave as a whole is not quarantined
        assert "quarantined for blender 3.9.0" in s["last_error"]
    assert apps_on_slaves(farm, "3.9.0") == []  # the failed install was removed
    good = farm.submit(str(scene), "--frames", "1", "--app", "blender (<< 3.9)")
    assert farm.wait(good)["status"] == "completed", farm.ctl("logs", str(good)).stdout
    assert farm.client.get(f"/api/v1/jobs/{good}")["app_version"] == "3.4.1"


def test_an_archive_whose_sha256_does_not_match_is_refused_and_nothing_installed(
        farm: MasterProcess, scene: Path) -> None:
    assert farm.ctl("app", "add", "blender", "3.4.2",
                    str(system_blender_dir(farm.base / "src3"))).returncode == 0
    archive = farm.state / "pool" / "pool/main/b/blender/blender_3.4.2_amd64.tar.gz"
    with open(archive, "ab") as f:  # damaged on the master's disk after it was indexed
        f.write(b"\0garbage")
    job = farm.submit(str(scene), "--frames", "1", "--app", "blender (= 3.4.2)")
    assert farm.wait(job)["status"] == "failed"
    assert "arrived corrupted (sha256 mismatch)" in farm.ctl("logs", str(job)).stdout
    assert apps_on_slaves(farm, "3.4.2") == []
