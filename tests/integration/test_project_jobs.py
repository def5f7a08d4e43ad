# SPDX-License-Identifier: MIT
"""Projects spread over folders (shots/, assets/, plates/, caches/) render on the farm from a
plain ``afarmctl submit FILE`` exactly as they render locally: every dependency is traced,
carried and found (issue 14)."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.farm import MasterProcess
from tests.fixtures.blends import pixels, run_blender
from tests.fixtures.projects import make_project, render_local

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def farm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MasterProcess]:
    m = MasterProcess(tmp_path_factory.mktemp("farm"), slaves=2).start()
    yield m
    m.stop()


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The pristine project (tests that change files copy it first)."""
    return make_project(tmp_path_factory.mktemp("project") / "film")


def copy_project(project: Path, dst: Path) -> Path:
    """A copy of the project's root under dst; returns the copied shot."""
    root = project.parent.parent
    shutil.copytree(root, dst / root.name, symlinks=True)
    return dst / root.name / "shots" / project.name



def farm_frame(farm: MasterProcess, shot: Path, *extra: str) -> Path:
    job = farm.submit(str(shot), "--frames", "2", *extra)
    done = farm.wait(job)
    assert done["status"].startswith("completed"), farm.ctl("logs", str(job)).stdout
    return farm.job_dir(job) / "out" / "frame_0002.png"


def test_a_shot_linking_assets_plates_udim_tiles_and_a_mesh_cache_renders_like_local(
        farm: MasterProcess, project: Path, tmp_path: Path) -> None:
    local = render_local(project, tmp_path / "local")
    remote = farm_frame(farm, project)
    assert pixels(remote) == pixels(local)
    job = farm.client.get("/api/v1/jobs")[0]
    names = [f["name"] for f in farm.client.get(f"/api/v1/jobs/{job['id']}")["files"]]
    assert names[0] == "shots/shot.blend"
    assert {"assets/chars.blend", "assets/mats.blend", "assets/tex/brick.png",
            "plates/plate_0001.png", "plates/plate_0002.png", "plates/plate_0003.png",
            "shots/tex/skin.1001.png", "shots/tex/skin.1002.png",
            "caches/wave.pc2"} <= set(names)


def test_each_dependency_changes_the_frame_when_it_is_missing(project: Path,
                                                              tmp_path: Path) -> None:
    """The comparison above can fail: without any one of these files the local render
    itself differs."""
    full = pixels(render_local(project, tmp_path / "full"))
    for n, rel in enumerate(("assets/mats.blend", "plates/plate_0002.png",
                             "shots/tex/skin.1002.png", "caches/wave.pc2")):
        shot = copy_project(project, tmp_path / f"p{n}")
        (shot.parent.parent / rel).unlink()
        assert pixels(render_local(shot, tmp_path / f"out{n}")) != full, rel


def test_a_symlinked_library_and_a_symlinked_blend_render_like_local(
        farm: MasterProcess, project: Path, tmp_path: Path) -> None:
    shot = copy_project(project, tmp_path / "copy")
    root = shot.parent.parent
    # The character library lives elsewhere; the project holds a symlink to it.
    store = tmp_path / "store"
    store.mkdir()
    real = store / "chars-v3.blend"
    (root / "assets" / "chars.blend").rename(real)
    (root / "assets" / "chars.blend").symlink_to(real)
    # ...and the shot is opened through a symlink beside it.
    link = root / "shots" / "current.blend"
    link.symlink_to(shot)
    local = render_local(link, tmp_path / "local")
    assert pixels(local) == pixels(render_local(project, tmp_path / "pristine"))
    remote = farm_frame(farm, link)
    assert pixels(remote) == pixels(local)


def test_absolute_paths_are_mapped_into_the_job_tree(farm: MasterProcess, project: Path,
                                                     tmp_path: Path) -> None:
    shot = copy_project(project, tmp_path / "copy")
    absolute = shot.with_name("absolute.blend")
    expr = ("import bpy\n"
            "bpy.ops.file.make_paths_absolute()\n"
            "bpy.context.preferences.filepaths.save_version = 0\n"
            f"bpy.ops.wm.save_as_mainfile(filepath={str(absolute)!r}, relative_remap=False)\n")
    cp = run_blender(["-b", "-Y", str(shot), "--python-expr", expr])
    assert cp.returncode == 0 and absolute.is_file(), cp.stdout
    local = render_local(absolute, tmp_path / "local")
    remote = farm_frame(farm, absolute)
    assert pixels(remote) == pixels(local)


def test_a_compressed_blend_with_absolute_paths_is_rewritten_and_renders_like_local(
        farm: MasterProcess, project: Path, tmp_path: Path) -> None:
    shot = copy_project(project, tmp_path / "copy")
    packed = shot.with_name("packed.blend")
    expr = ("import bpy\n"
            "bpy.ops.file.make_paths_absolute()\n"
            "bpy.context.preferences.filepaths.save_version = 0\n"
            f"bpy.ops.wm.save_as_mainfile(filepath={str(packed)!r}, relative_remap=False,"
            " compress=True)\n")
    cp = run_blender(["-b", "-Y", str(shot), "--python-expr", expr])
    assert cp.returncode == 0 and packed.read_bytes()[:4] == b"\x28\xb5\x2f\xfd", cp.stdout
    local = render_local(packed, tmp_path / "local")
    assert pixels(farm_frame(farm, packed)) == pixels(local)


def test_files_outside_a_given_project_root_are_carried_under_outside(
        farm: MasterProcess, project: Path, tmp_path: Path) -> None:
    shot = copy_project(project, tmp_path / "copy")
    local = render_local(shot, tmp_path / "local")
    job = farm.submit(str(shot), "--frames", "2", "--project-root", str(shot.parent))
    assert farm.wait(job)["status"].startswith("completed"), farm.ctl("logs", str(job)).stdout
    names = [f["name"] for f in farm.client.get(f"/api/v1/jobs/{job}")["files"]]
    assert names[0] == "shot.blend"
    outside = "_outside" + str(shot.parent.parent)
    assert f"{outside}/assets/chars.blend" in names and f"{outside}/caches/wave.pc2" in names
    assert pixels(farm.job_dir(job) / "out" / "frame_0002.png") == pixels(local)


def test_a_missing_dependency_stops_the_submission_naming_its_datablock(
        farm: MasterProcess, project: Path, tmp_path: Path) -> None:
    shot = copy_project(project, tmp_path / "copy")
    (shot.parent.parent / "caches" / "wave.pc2").unlink()
    before = len(farm.client.get("/api/v1/jobs"))
    cp = farm.ctl("submit", str(shot), "--frames", "2")
    assert cp.returncode == 1, cp.stderr
    assert "wave.pc2" in cp.stderr and "object 'Wave" in cp.stderr, cp.stderr
    assert "--allow-missing" in cp.stderr
    assert len(farm.client.get("/api/v1/jobs")) == before  # nothing was submitted
    job = farm.submit(str(shot), "--frames", "2", "--allow-missing")
    assert farm.wait(job)["status"].startswith("completed")


def test_dry_run_lists_the_files_their_sizes_and_which_the_master_lacks(
        farm: MasterProcess, project: Path, tmp_path: Path) -> None:
    shot = copy_project(project, tmp_path / "copy")
    (shot.parent.parent / "plates" / "plate_0004.png").write_bytes(
        (shot.parent.parent / "plates" / "plate_0003.png").read_bytes() + b"new")
    cp = farm.ctl("--json", "submit", str(shot), "--frames", "2", "--dry-run")
    assert cp.returncode == 0, cp.stderr
    listing = json.loads(cp.stdout)
    by_name = {f["name"]: f for f in listing["files"]}
    assert by_name["plates/plate_0004.png"]["new"] is True
    assert by_name["plates/plate_0004.png"]["size"] == os.path.getsize(
        shot.parent.parent / "plates" / "plate_0004.png")
    text = farm.ctl("submit", str(shot), "--frames", "2", "--dry-run").stdout
    assert "plates/plate_0004.png" in text and "new to the master" in text


def test_a_truncated_blend_is_refused_at_submit_and_by_the_master(
        farm: MasterProcess, project: Path, tmp_path: Path) -> None:
    cut = tmp_path / "cut.blend"
    data = project.read_bytes()
    cut.write_bytes(data[:len(data) // 2])
    cp = farm.ctl("submit", str(cut), "--frames", "1")
    assert cp.returncode == 2 and "truncated" in cp.stderr, cp.stderr
    # A client that skips the check: the master refuses the upload and keeps nothing.
    from afarm.errors import UsageError

    with pytest.raises(UsageError, match="truncated"):
        farm.client.upload(cut, blend=True)
    from afarm.digest import sha256_file

    sha = sha256_file(cut)
    assert not farm.client.has_file(sha)
    assert not list((farm.state / "files" / "tmp").iterdir())


@pytest.fixture(scope="module")
def kinds(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests.fixtures.kinds import make_kinds

    return make_kinds(tmp_path_factory.mktemp("kinds") / "film")


def test_clips_sounds_fonts_volumes_mesh_and_point_caches_and_strips_are_traced(
        kinds: Path) -> None:
    from afarm.project.pack import pack

    with pack(kinds) as p:
        owners = {f.name: f.wanted_by for f in p.files}
        assert p.missing == []
        assert owners["media/clip.mp4"] == ("movie clip 'clip.mp4' in kinds.blend",)
        assert "sound 'tone.wav' in kinds.blend" in owners["media/tone.wav"]
        assert "sequencer strip in kinds.blend" in owners["media/tone.wav"]
        assert owners["fonts/title.ttf"] == ("font 'DejaVu Sans Book' in kinds.blend",)
        assert owners["vdb/smoke.vdb"] == ("volume 'Smoke' in kinds.blend",)
        assert owners["caches/wave.mdd"] == ("object 'Plane.modifiers[0]' in kinds.blend",)
        assert [n for n in owners if n.startswith("media/strip/")] == [
            f"media/strip/s_{n:04d}.png" for n in (1, 2, 3)]
        assert [n for n in owners if n.startswith("media/track/")] == [
            f"media/track/t_{n:04d}.png" for n in (1, 2, 3)]
        cache = [n for n in owners if n.startswith("shots/blendcache_kinds/")]
        assert len(cache) == 3 and all(n.endswith(".bphys") for n in cache)
        # The font's and the strip's absolute paths were rewritten in a copy.
        assert p.files[0].name == "shots/kinds.blend" and p.files[0].rewritten
        assert p.files[0].source != kinds
        assert p.files[0].source.read_bytes() != kinds.read_bytes()


def test_a_sequencer_strip_with_an_absolute_directory_renders_like_local(
        farm: MasterProcess, kinds: Path, tmp_path: Path) -> None:
    local = render_local(kinds, tmp_path / "local")
    remote = farm_frame(farm, kinds)
    assert pixels(remote) == pixels(local)
    # ... and the strip is what shows: orange in the middle, not black.
    raw = pixels(remote)
    i = (9 * 32 + 16) * 4
    r, g, b = raw[i], raw[i + 1], raw[i + 2]
    assert r > 200 and 100 < g < 200 and b < 40, (r, g, b)


def test_a_dependency_leading_to_a_system_file_is_never_uploaded(
        farm: MasterProcess, project: Path, tmp_path: Path) -> None:
    shot = copy_project(project, tmp_path / "copy")
    plate = shot.parent.parent / "plates" / "plate_0002.png"
    plate.unlink()
    plate.symlink_to("/etc/hostname")
    cp = farm.ctl("submit", str(shot), "--frames", "2")
    assert cp.returncode == 1, cp.stderr
    assert f"not carried: a system file: {plate}" in cp.stderr, cp.stderr
    listing = json.loads(farm.ctl("--json", "submit", str(shot), "--frames", "2",
                                  "--dry-run").stdout)
    assert "plates/plate_0002.png" not in {f["name"] for f in listing["files"]}


def test_a_broken_blend_sent_without_the_kind_is_refused_at_submit_and_dropped(
        farm: MasterProcess, project: Path, tmp_path: Path) -> None:
    from afarm.digest import sha256_file
    from afarm.errors import UsageError

    cut = tmp_path / "old-client.blend"
    cut.write_bytes(project.read_bytes()[:5000])
    sha = farm.client.upload(cut)  # no ?kind=blend: stored as any file
    assert farm.client.has_file(sha) and sha == sha256_file(cut)
    with pytest.raises(UsageError, match="truncated"):
        farm.client.post("/api/v1/jobs", {"name": "x", "application": "blender",
                                          "params": {"frames": "1"},
                                          "files": [{"name": "x.blend", "sha256": sha}]})
    assert not farm.client.has_file(sha)


def test_a_dangling_symlink_is_refused_naming_where_it_leads(farm: MasterProcess,
                                                             tmp_path: Path) -> None:
    link = tmp_path / "shot.blend"
    link.symlink_to(tmp_path / "moved" / "shot.blend")
    cp = farm.ctl("submit", str(link), "--frames", "1")
    assert cp.returncode == 2, cp.stderr
    assert f"a symlink to {tmp_path / 'moved' / 'shot.blend'}, which does not exist" \
        in cp.stderr, cp.stderr
