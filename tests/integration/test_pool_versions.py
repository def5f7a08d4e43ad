# SPDX-License-Identifier: MIT
"""Jobs render on the pool version they name: Blender 4.2 (PyPI's bpy wheel behind afarm's
launcher) and Debian's 3.4.1, on the same local slaves, each frame bit-identical to that
version's own render outside the farm."""

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.farm import MasterProcess
from tests.fixtures.blends import make_scene, pixels
from tests.fixtures.pool_versions import bpy_archive, system_blender_dir

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def scene(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_scene(tmp_path_factory.mktemp("scene"), frames=2, width=64, height=36)


@pytest.fixture(scope="module")
def farm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MasterProcess]:
    base = tmp_path_factory.mktemp("pool-farm")
    m = MasterProcess(base, slaves=2).start()
    try:
        add = m.ctl("app", "add", "blender", "4.2.0", str(bpy_archive()))
        assert add.returncode == 0, add.stderr
        add = m.ctl("app", "add", "blender", "3.4.1", str(system_blender_dir(base / "src")))
        assert add.returncode == 0, add.stderr
        yield m
    finally:
        m.stop()



def local_render(program: str, scene: Path, out: Path, frame: int) -> Path:
    """The frame as this Blender renders it outside the farm."""
    out.mkdir(parents=True, exist_ok=True)
    subprocess.run([program, "-b", "-Y", str(scene), "-o", str(out / "frame_####"), "-F",
                    "PNG", "-x", "1", "-f", str(frame)], check=True, capture_output=True,
                   timeout=300)
    return out / f"frame_{frame:04d}.png"


def installed(farm: MasterProcess, slave: str, version: str) -> Path:
    return farm.base / "slaves" / slave / "apps" / "blender" / version / "root" / "blender"


def test_jobs_render_with_the_version_their_constraint_names(farm: MasterProcess,
                                                              scene: Path,
                                                              tmp_path: Path) -> None:
    new = farm.submit(str(scene), "--frames", "1-2", "--app", "blender (>= 4.2)")
    old = farm.submit(str(scene), "--frames", "1-2", "--app", "blender (<< 4)")
    for job in (new, old):
        assert farm.wait(job)["status"] == "completed", farm.ctl("logs", str(job)).stdout
    jobs = {v: farm.client.get(f"/api/v1/jobs/{j}") for v, j in (("4.2.0", new),
                                                                  ("3.4.1", old))}
    assert {v: j["app_version"] for v, j in jobs.items()} == {"4.2.0": "4.2.0",
                                                              "3.4.1": "3.4.1"}
    status = farm.ctl("status", str(new))
    assert "(blender 4.2.0)" in status.stdout
    logs = {v: farm.ctl("logs", str(j)).stdout for v, j in (("4.2.0", new), ("3.4.1", old))}
    assert "/apps/blender/4.2.0/root/blender" in logs["4.2.0"]
    assert "/apps/blender/3.4.1/root/blender" in logs["3.4.1"]
    # Each version's frames are bit-identical to that version's own render, and the two
    # versions' frames differ (so the comparison tells them apart).
    slave = next(s for s in ("local-1", "local-2")
                 if installed(farm, s, "4.2.0").exists())
    for frame in (1, 2):
        ref_new = local_render(str(installed(farm, slave, "4.2.0")), scene,
                               tmp_path / "new", frame)
        ref_old = local_render("/usr/bin/blender", scene, tmp_path / "old", frame)
        got_new = farm.job_dir(new) / "out" / f"frame_{frame:04d}.png"
        got_old = farm.job_dir(old) / "out" / f"frame_{frame:04d}.png"
        assert pixels(got_new) == pixels(ref_new)
        assert pixels(got_old) == pixels(ref_old)
        assert pixels(got_new) != pixels(got_old)


def test_app_list_shows_versions_sizes_and_the_slaves_holding_them(farm: MasterProcess,
                                                                   scene: Path) -> None:
    job = farm.submit(str(scene), "--frames", "1", "--app", "blender (= 4.2.0)")
    assert farm.wait(job)["status"] == "completed"
    cp = farm.ctl("--json", "app", "list")
    assert cp.returncode == 0, cp.stderr
    versions = {v["version"]: v for v in json.loads(cp.stdout)["versions"]}
    assert set(versions) == {"4.2.0", "3.4.1"}
    assert versions["4.2.0"]["size"] > 500_000_000
    assert versions["4.2.0"]["slaves"]
    assert (farm.state / "pool" / "pool" / "main" / "b" / "blender"
            / "blender_4.2.0_amd64.zip").is_file()
    text = farm.ctl("app", "list").stdout
    assert "4.2.0" in text and "3.4.1" in text


def test_a_constraint_nothing_satisfies_is_refused_listing_the_versions(
        farm: MasterProcess, scene: Path) -> None:
    cp = farm.ctl("submit", str(scene), "--frames", "1", "--app", "blender (>= 9)")
    assert cp.returncode == 2
    assert "4.2.0, 3.4.1" in cp.stderr


def test_without_a_constraint_a_job_runs_the_newest_version(farm: MasterProcess,
                                                            scene: Path) -> None:
    job = farm.submit(str(scene), "--frames", "1")
    assert farm.wait(job)["status"] == "completed"
    assert farm.client.get(f"/api/v1/jobs/{job}")["app_version"] == "4.2.0"


def test_a_version_an_unfinished_job_needs_cannot_be_removed(farm: MasterProcess,
                                                             scene: Path) -> None:
    job = farm.submit(str(scene), "--frames", "1-2", "--app", "blender (= 3.4.1)")
    farm.ctl("pause", str(job))
    cp = farm.ctl("app", "remove", "blender", "3.4.1")
    assert cp.returncode == 2 and f"unfinished job {job}" in cp.stderr, cp.stderr
    assert farm.ctl("cancel", str(job)).returncode == 0
    cp = farm.ctl("app", "remove", "blender", "3.4.1")
    assert cp.returncode == 0, cp.stderr
    cp = farm.ctl("app", "add", "blender", "3.4.1", str(system_blender_dir(farm.base / "src")))
    assert cp.returncode == 0, cp.stderr
