# SPDX-License-Identifier: MIT
"""Fonts, OpenVDB volumes, particle point caches, smoke caches and a symlinked texture
directory are not only traced: from a plain ``afarmctl submit FILE`` the farm renders them
exactly as Blender does locally, and a copy lacking any one of them renders a different
frame that the job reports as a task warning naming the file (issue 14)."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.farm import MasterProcess
from tests.fixtures.projects import render_local
from tests.fixtures.visible_kinds import FRAME, KINDS, make_visible_kinds

pytestmark = pytest.mark.slow

# What the task warning names for each missing kind (the path as the .blend stores it).
WARNED = {"font": "font 'DejaVu Sans Bold' reads '//../fonts/title.ttf'",
          "volume": "volume 'Smoke' reads '//../vdb/smoke.vdb'",
          "point cache": "blendcache_kinds",
          "smoke cache": "'//../cache_smoke/'",
          "symlinked texture": "image 'pic.png' reads '//tex/pic.png'"}


@pytest.fixture(scope="module")
def farm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MasterProcess]:
    m = MasterProcess(tmp_path_factory.mktemp("farm"), slaves=2).start()
    yield m
    m.stop()


@pytest.fixture(scope="module")
def kinds(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The pristine project (tests that delete files copy it first)."""
    return make_visible_kinds(tmp_path_factory.mktemp("kinds"))


@pytest.fixture(scope="module")
def local(kinds: Path, tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """The complete project's frame, rendered where it lies."""
    return pixels(render_local(kinds, tmp_path_factory.mktemp("local"), FRAME))


def top_of(blend: Path) -> Path:
    return blend.parent.parent.parent  # TOP/film/shots/kinds.blend


def copy_top(blend: Path, dst: Path) -> Path:
    """A copy of the project and its symlinked store under dst; returns the copied .blend."""
    shutil.copytree(top_of(blend), dst, symlinks=True)
    return dst / blend.relative_to(top_of(blend))


def pixels(png: Path) -> bytes:
    return subprocess.run(["ffmpeg", "-v", "error", "-i", str(png), "-f", "rawvideo",
                           "-pix_fmt", "rgba", "-"], capture_output=True, check=True).stdout


def farm_frame(farm: MasterProcess, blend: Path, *extra: str) -> tuple[dict, Path]:
    job = farm.submit(str(blend), "--frames", str(FRAME), *extra)
    done = farm.wait(job)
    assert done["status"].startswith("completed"), farm.ctl("logs", str(job)).stdout
    return done, farm.job_dir(job) / "out" / f"frame_{FRAME:04d}.png"


def test_fonts_volumes_point_and_smoke_caches_and_a_symlinked_dir_render_like_local(
        farm: MasterProcess, kinds: Path, local: bytes) -> None:
    job, frame = farm_frame(farm, kinds)
    assert job["status"] == "completed", job["task_warnings"]
    assert pixels(frame) == local
    names = {f["name"] for f in farm.client.get(f"/api/v1/jobs/{job['id']}")["files"]}
    assert {"shots/kinds.blend", "fonts/title.ttf", "vdb/smoke.vdb", "shots/tex/pic.png",
            "cache_smoke/data/fluid_data_0003.vdb"} <= names, names
    assert [n for n in names if n.startswith("shots/blendcache_kinds/")], names


@pytest.mark.parametrize("kind", list(KINDS))
def test_a_missing_kind_stops_the_submission_and_with_allow_missing_is_a_task_warning(
        farm: MasterProcess, kinds: Path, local: bytes, tmp_path: Path, kind: str) -> None:
    blend = copy_top(kinds, tmp_path / "top")
    gone = tmp_path / "top" / KINDS[kind]
    shutil.rmtree(gone) if gone.is_dir() else gone.unlink()
    # The frame really depends on it: Blender itself renders a different one without it.
    alone = pixels(render_local(blend, tmp_path / "local", FRAME))
    assert alone != local, kind
    cp = farm.ctl("submit", str(blend), "--frames", str(FRAME))
    assert cp.returncode == 1 and "--allow-missing" in cp.stderr, cp.stderr
    job, frame = farm_frame(farm, blend, "--allow-missing")
    assert job["status"] == "completed-with-warnings", farm.ctl("logs", str(job["id"])).stdout
    texts = [w["warning"] for w in job["task_warnings"]]
    assert any(WARNED[kind] in t for t in texts), texts
    assert pixels(frame) == alone
