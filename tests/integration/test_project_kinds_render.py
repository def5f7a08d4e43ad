# SPDX-License-Identifier: MIT
"""Fonts, OpenVDB volumes, particle point caches, smoke caches, a symlinked texture
directory and (with the bpy 4.2 pool version, Debian's 3.4 has no Alembic) an Alembic cache
are not only traced: from a plain ``afarmctl submit FILE`` the farm renders them exactly as
Blender does locally, and a copy lacking any one of them renders a different frame that the
job reports as a task warning naming the file (issue 14)."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from afarm.pool.archive import unpack
from tests.farm import MasterProcess
from tests.fixtures.blends import pixels, run_blender
from tests.fixtures.pool_versions import bpy_archive
from tests.fixtures.projects import render_local
from tests.fixtures.visible_kinds import FRAME, KINDS, PARTIAL, make_alembic, make_visible_kinds

pytestmark = pytest.mark.slow

# What the task warning names for each missing kind (the path as the .blend stores it).
WARNED = {"font": "font 'DejaVu Sans Bold' reads '//../fonts/title.ttf'",
          "volume": "volume 'Smoke' reads '//../vdb/smoke.vdb'",
          "point cache": "blendcache_kinds",
          "smoke cache": "'//../cache_smoke/'",
          "replay smoke cache": "fluid cache of modifier 'Fluid' of object 'ReplayDomain'"
                                " reads '//cache_replay/': no such directory in the job;"
                                " bake the simulation (Physics > Fluid > Bake All)",
          "volume sequence frame": "volume 'SmokeSeq' reads '//../vdb/seq/smoke_0001.vdb': the"
                                   " sequence's file 'smoke_0003.vdb' for the frames of this"
                                   " task is not in the job",
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
            "cache_smoke/data/fluid_data_0003.vdb", "vdb/seq/smoke_0001.vdb",
            "vdb/seq/smoke_0003.vdb", "shots/cache_replay/data/fluid_data_0003.vdb"} <= names, \
        names
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
    if kind in PARTIAL:  # the client sees a complete sequence; the slave sees the gap
        job, frame = farm_frame(farm, blend)
    else:
        cp = farm.ctl("submit", str(blend), "--frames", str(FRAME))
        assert cp.returncode == 1 and "--allow-missing" in cp.stderr, cp.stderr
        job, frame = farm_frame(farm, blend, "--allow-missing")
    assert job["status"] == "completed-with-warnings", farm.ctl("logs", str(job["id"])).stdout
    texts = [w["warning"] for w in job["task_warnings"]]
    assert any(WARNED[kind] in t for t in texts), texts
    assert pixels(frame) == alone



def test_a_missing_file_at_an_absolute_path_is_a_task_warning_not_a_refusal(
        farm: MasterProcess, kinds: Path, tmp_path: Path) -> None:
    # The slave refuses every path that leaves the job; a missing absolute path kept as it
    # was did, so --allow-missing failed the job instead of rendering it with a warning.
    blend = copy_top(kinds, tmp_path / "top")
    absolute = blend.with_name("absolute.blend")
    expr = ("import bpy\n"
            "bpy.ops.file.make_paths_absolute()\n"
            "bpy.context.preferences.filepaths.save_version = 0\n"
            f"bpy.ops.wm.save_as_mainfile(filepath={str(absolute)!r}, relative_remap=False)\n")
    cp = run_blender(["-b", "-Y", str(blend), "--python-expr", expr])
    assert cp.returncode == 0 and absolute.is_file(), cp.stdout
    font = tmp_path / "top" / KINDS["font"]
    font.unlink()
    job, _ = farm_frame(farm, absolute, "--allow-missing")
    assert job["status"] == "completed-with-warnings", farm.ctl("logs", str(job["id"])).stdout
    texts = [w["warning"] for w in job["task_warnings"]]
    # Named at its place in the job (the absolute path was under the project root).
    assert "font 'DejaVu Sans Bold' reads '//../fonts/title.ttf': no such file in the job" \
        in texts, texts
    # As Blender itself does, the copy saved under another name looks for its particles
    # in //blendcache_absolute/, which does not exist: said too.
    assert "baked point cache of particle system 'Particles' of object 'Emitter' reads" \
        " '//blendcache_absolute/456D6974746572_*': no such files in the job" in texts

# -- Alembic, with Blender 4.2 ------------------------------------------------------------

@pytest.fixture(scope="module")
def farm42(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MasterProcess]:
    """One slave holding the bpy 4.2 pool version (and Debian's Blender as the default)."""
    m = MasterProcess(tmp_path_factory.mktemp("farm42"), slaves=1).start()
    try:
        add = m.ctl("app", "add", "blender", "4.2.0", str(bpy_archive()))
        assert add.returncode == 0, add.stderr
        yield m
    finally:
        m.stop()


@pytest.fixture(scope="module")
def blender42(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The 4.2 pool version unpacked here, as a slave unpacks it: its `blender` launcher
    (slaves install a version only when a job first needs it)."""
    root = tmp_path_factory.mktemp("bpy42") / "root"
    unpack(bpy_archive(), root, 4 << 30)
    return root / "blender"


@pytest.fixture(scope="module")
def alembic(blender42: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_alembic(tmp_path_factory.mktemp("abc") / "film", blender42)


def render42(blender42: Path, blend: Path, out: Path) -> bytes:
    out.mkdir(parents=True, exist_ok=True)
    cp = subprocess.run([str(blender42), "-b", "-Y", str(blend), "-o", str(out / "frame_####"),
                         "-F", "PNG", "-x", "1", "-f", str(FRAME)], capture_output=True,
                        text=True, timeout=300, check=False)
    png = out / f"frame_{FRAME:04d}.png"
    assert cp.returncode == 0 and png.is_file(), cp.stdout[-3000:] + cp.stderr[-2000:]
    return pixels(png)


def test_an_alembic_cache_is_traced_and_renders_on_blender_4_2_like_local(
        farm42: MasterProcess, blender42: Path, alembic: Path, tmp_path: Path) -> None:
    from afarm.project.pack import pack

    with pack(alembic) as p:
        assert {f.name: f.wanted_by for f in p.files}["caches/anim.abc"] == (
            "cache file 'anim.abc' in abc.blend",)
        assert p.missing == []
    local = render42(blender42, alembic, tmp_path / "local")
    job = farm42.submit(str(alembic), "--frames", str(FRAME), "--app", "blender (>= 4.2)")
    done = farm42.wait(job)
    assert done["status"] == "completed", farm42.ctl("logs", str(job)).stdout
    assert done["app_version"] == "4.2.0"
    assert pixels(farm42.job_dir(job) / "out" / f"frame_{FRAME:04d}.png") == local


def test_a_missing_alembic_cache_changes_the_frame_and_is_a_task_warning(
        farm42: MasterProcess, blender42: Path, alembic: Path, tmp_path: Path) -> None:
    root = tmp_path / "film"
    shutil.copytree(alembic.parent.parent, root, symlinks=True)
    (root / "caches" / "anim.abc").unlink()
    blend = root / "shots" / alembic.name
    alone = render42(blender42, blend, tmp_path / "local")
    assert alone != render42(blender42, alembic, tmp_path / "full")
    cp = farm42.ctl("submit", str(blend), "--frames", str(FRAME), "--app", "blender (>= 4.2)")
    assert cp.returncode == 1 and "cache file 'anim.abc'" in cp.stderr, cp.stderr
    job = farm42.submit(str(blend), "--frames", str(FRAME), "--app", "blender (>= 4.2)",
                        "--allow-missing")
    done = farm42.wait(job)
    assert done["status"] == "completed-with-warnings", farm42.ctl("logs", str(job)).stdout
    assert [w["warning"] for w in done["task_warnings"]] == [
        "cache file 'anim.abc' reads '//../caches/anim.abc': no such file in the job"]
    assert pixels(farm42.job_dir(job) / "out" / f"frame_{FRAME:04d}.png") == alone
