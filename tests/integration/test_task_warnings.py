# SPDX-License-Identifier: MIT
"""A .blend whose files are missing on the slave renders, but never silently: each missing
file (and the denoiser this Blender lacks) is a task warning, the job ends
completed-with-warnings (or fails with --strict), and afarmctl says so."""

import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from afarm.cli import ops
from tests.farm import MasterProcess
from tests.fixtures.blends import make_png, make_scene, run_blender

pytestmark = pytest.mark.slow

_PROJECT = """
import sys, bpy
out, lib = sys.argv[sys.argv.index("--") + 1:]
bpy.context.preferences.filepaths.save_version = 0
bpy.ops.wm.read_factory_settings(use_empty=True)
bpy.ops.mesh.primitive_cube_add()
bpy.context.object.name = "LibCube"
bpy.ops.wm.save_as_mainfile(filepath=lib)
bpy.ops.wm.read_factory_settings(use_empty=False)
bpy.ops.wm.save_as_mainfile(filepath=out)
scene = bpy.context.scene
scene.render.engine = "CYCLES"
scene.cycles.samples = 1
scene.cycles.use_denoising = True
scene.render.resolution_x, scene.render.resolution_y = 32, 18
scene.render.resolution_percentage = 100
cube = bpy.data.objects["Cube"]
mat = bpy.data.materials.new("M")
mat.use_nodes = True
nodes = mat.node_tree.nodes
flat = nodes.new("ShaderNodeTexImage")
flat.image = bpy.data.images.load("//textures/red.png", check_existing=False)
udim = nodes.new("ShaderNodeTexImage")
img = bpy.data.images.new("Tiles", 8, 8, tiled=True)
img.tiles.new(1002)
img.source = "TILED"
img.filepath = "//textures/u.<UDIM>.png"
udim.image = img
seq = nodes.new("ShaderNodeTexImage")
seq.image = bpy.data.images.load("//plates/p_0001.png", check_existing=False)
seq.image.source = "SEQUENCE"
seq.image_user.frame_duration = 2
seq.image_user.frame_start = 1
mat.node_tree.links.new(flat.outputs["Color"], nodes["Principled BSDF"].inputs["Base Color"])
cube.data.materials.append(mat)
mod = cube.modifiers.new("Cache", "MESH_CACHE")
mod.cache_format = "MDD"
mod.filepath = "//caches/anim.mdd"
with bpy.data.libraries.load(lib, link=True, relative=True) as (src, dst):
    dst.objects = ["LibCube"]
scene.collection.objects.link(dst.objects[0])
bpy.ops.wm.save_as_mainfile(filepath=out, relative_remap=False)
"""

EXPECTED = [
    "image 'red.png' reads '//textures/red.png': no such file in the job",
    "library 'lib.blend' reads '//lib.blend': no such file in the job",
    "modifier 'Cache' of object 'Cube' reads '//caches/anim.mdd': no such file in the job",
    "image 'Tiles' reads '//textures/u.<UDIM>.png': its UDIM tile 1002 ('u.1002.png') is"
    " not in the job",
    "scene 'Scene' asks for denoising, but this Blender is built without OpenImageDenoise",
]
SEQUENCE = ("image 'p_0001.png' reads '//plates/p_0001.png': the sequence's file"
            " 'p_0002.png' for the frames of this task is not in the job")


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """shot.blend wanting a texture, UDIM tiles 1001 and 1002, a mesh cache and a linked
    library; of these only tile 1001 exists (the others were deleted after saving)."""
    top = tmp_path_factory.mktemp("project")
    make_png(top / "textures" / "red.png", "red")
    make_png(top / "plates" / "p_0001.png", "lime")
    script = top / ".make.py"
    script.write_text(_PROJECT)
    cp = run_blender(["-b", "--factory-startup", "--python-exit-code", "1", "--python",
                      str(script), "--", str(top / "shot.blend"), str(top / "lib.blend")])
    assert cp.returncode == 0, cp.stdout[-2000:] + cp.stderr[-2000:]
    (top / "lib.blend").unlink()
    (top / "textures" / "red.png").unlink()
    make_png(top / "textures" / "u.1001.png", "blue")
    return top


@pytest.fixture(scope="module")
def farm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MasterProcess]:
    m = MasterProcess(tmp_path_factory.mktemp("farm"), slaves=1).start()
    yield m
    m.stop()


def submit(farm: MasterProcess, project: Path, **extra: object) -> int:
    # Through the client API with the files named here: afarmctl's own dependency packing
    # would stop at the missing files before submitting (which is its job, not this test's).
    request = {"name": "shot.blend", "application": "blender",
               "params": {"frames": "1-2", "chunk": 1}, **extra}
    job = ops.submit(farm.client, request,
                     [("shot.blend", project / "shot.blend"),
                      ("textures/u.1001.png", project / "textures" / "u.1001.png"),
                      ("plates/p_0001.png", project / "plates" / "p_0001.png")])
    return int(job["id"])


def test_missing_files_and_the_denoiser_become_task_warnings_of_a_job_that_renders(
        farm: MasterProcess, project: Path, tmp_path: Path) -> None:
    job_id = submit(farm, project)
    job = farm.wait(job_id)
    assert job["status"] == "completed-with-warnings", farm.ctl("logs", str(job_id)).stdout
    assert job["warned_tasks"] == 2
    texts = [w["warning"] for w in job["task_warnings"]]
    for want in EXPECTED:
        assert any(t.startswith(want) for t in texts), (want, texts)
    # Frame 2 reads the plate's second file, which is missing; frame 1 has its own.
    seq = [w for w in job["task_warnings"] if w["warning"] == SEQUENCE]
    assert len(seq) == 1 and seq[0]["tasks"] == 1
    assert seq[0]["first_task"] == job["tasks"][1]["id"]
    assert all(w["tasks"] == 2 for w in job["task_warnings"] if w["warning"] != SEQUENCE)
    assert sorted(p.name for p in (farm.job_dir(job_id) / "out").iterdir()) == [
        "frame_0001.png", "frame_0002.png"]

    wait = farm.ctl("wait", str(job_id))
    assert wait.returncode == 3, wait.stderr
    assert "completed with warnings" in wait.stderr
    assert "'//caches/anim.mdd': no such file in the job  [2 tasks]" in wait.stderr
    assert wait.stdout.strip() == f"job {job_id} completed-with-warnings"

    status = farm.ctl("status", str(job_id))
    assert status.returncode == 0
    assert "task warnings (2 tasks; their frames may be wrong):" in status.stdout
    assert "library 'lib.blend' reads '//lib.blend'" in status.stdout
    first, second = (t["warnings"] for t in job["tasks"])
    assert second == first + 1 >= len(EXPECTED) + 1  # frame 2 also lacks its plate
    assert f"({second} warnings)" in status.stdout
    as_json = json.loads(farm.ctl("--json", "status", str(job_id)).stdout)
    assert as_json["status"] == "completed-with-warnings" and as_json["warned_tasks"] == 2

    jobs = farm.ctl("jobs").stdout.splitlines()
    row = next(ln for ln in jobs if ln.split()[0].rstrip("!") == str(job_id))
    assert row.split()[0] == f"{job_id}!" and "completed-with-warnings" in row
    assert any(ln.startswith("!: the job has task warnings") for ln in jobs)

    out = tmp_path / "fetched"
    first = farm.ctl("fetch", str(job_id), "-o", str(out))
    assert first.returncode == 0 and "completed with warnings" in first.stderr
    assert "warnings" in farm.ctl("logs", str(job_id)).stdout


def test_with_strict_a_task_warning_fails_the_job_and_wait_says_why(
        farm: MasterProcess, project: Path, tmp_path: Path) -> None:
    job_id = submit(farm, project, strict=True)
    job = farm.wait(job_id)
    assert job["status"] == "failed"
    failed = [t for t in job["tasks"] if t["status"] == "failed"]
    assert failed and failed[0]["error"].startswith("--strict: the task had warnings: ")
    assert len(failed[0]["failures"]) == 0  # the file's fault, not the slave's
    assert farm.client.get("/api/v1/slaves")[0]["state"] in ("online", "busy")

    wait = farm.ctl("wait", str(job_id))
    assert wait.returncode == 1
    t = failed[0]
    assert (f"job {job_id} failed: task {t['id']} ({t['label']}) failed: --strict: the task"
            " had warnings: ") in wait.stderr
    assert f"see afarmctl logs {job_id} --task {t['id']} for the task's output" in wait.stderr

    fetched = farm.ctl("fetch", str(job_id), "-o", str(tmp_path / "f"))
    assert fetched.returncode == 1 and f"job {job_id} failed" in fetched.stderr


def test_an_eevee_job_with_its_files_completes_without_warnings_or_egl_error_lines(
        farm: MasterProcess, tmp_path: Path) -> None:
    scene = make_scene(tmp_path, frames=1, width=32, height=18)
    job_id = farm.submit(str(scene), "--frames", "1", "--engine", "BLENDER_EEVEE")
    job = farm.wait(job_id)
    assert job["status"] == "completed" and job["warned_tasks"] == 0
    log = farm.ctl("logs", str(job_id)).stdout
    assert "EGL Error" in log  # Blender printed them ...
    assert "--- error lines ---" not in log  # ... and they are not taken for errors
    assert farm.ctl("wait", str(job_id)).returncode == 0


def test_fetch_keeps_existing_files_unless_forced(farm: MasterProcess, tmp_path: Path) -> None:
    scene = make_scene(tmp_path, frames=1, width=32, height=18)
    job_id = farm.submit(str(scene), "--frames", "1")
    assert farm.wait(job_id)["status"] == "completed"
    out = tmp_path / "out"
    assert farm.ctl("fetch", str(job_id), "-o", str(out)).returncode == 0
    frame = next(out.rglob("frame_0001.png"))
    frame.write_bytes(b"mine")
    again = farm.ctl("fetch", str(job_id), "-o", str(out))
    assert again.returncode == 2 and "--force" in again.stderr and str(frame) in again.stderr
    assert frame.read_bytes() == b"mine"
    forced = farm.ctl("fetch", str(job_id), "-o", str(out), "--force")
    assert forced.returncode == 0 and frame.read_bytes().startswith(b"\x89PNG")


def test_an_mp4_keeps_the_users_non_ascii_job_name(farm: MasterProcess,
                                                  tmp_path: Path) -> None:
    scene = make_scene(tmp_path, frames=2, width=32, height=18)
    job_id = farm.submit(str(scene), "--frames", "1-2", "--encode", "mp4",
                         "--name", "ñøn-äscii ☃")
    job = farm.wait(job_id)
    assert job["status"] == "completed", farm.ctl("logs", str(job_id)).stdout
    assert (farm.job_dir(job_id) / "out" / "ñøn-äscii_☃.mp4").is_file()
    out = tmp_path / "fetched"
    assert farm.ctl("fetch", str(job_id), "-o", str(out)).returncode == 0
    assert [p.name for p in out.rglob("*.mp4")] == ["ñøn-äscii_☃.mp4"]
    assert shutil.which("ffprobe") and subprocess.run(
        ["ffprobe", "-v", "error", str(next(out.rglob("*.mp4")))], check=False).returncode == 0
