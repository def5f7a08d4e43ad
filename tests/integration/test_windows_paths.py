# SPDX-License-Identifier: MIT
"""A .blend made on Windows names its textures C:\\...: Blender on Linux looks for them in
/c/..., which no task can see. afarmctl says which file is missing and under which Windows
path; with --allow-missing the farm renders what Blender renders locally and the job says
the file was missing, instead of refusing the path as an escape (issue 14)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.farm import MasterProcess
from tests.fixtures.blends import make_png, pixels, run_blender
from tests.fixtures.projects import render_local

pytestmark = pytest.mark.slow

WINDOWS = "C:\\Users\\artist\\textures\\wood.png"

_SCRIPT = r'''
import sys, bpy
blend, windows, local = sys.argv[sys.argv.index("--") + 1:]
bpy.ops.wm.read_factory_settings(use_empty=True)
scene = bpy.context.scene
scene.render.engine = "CYCLES"
scene.cycles.samples = 1
scene.cycles.seed = 0
scene.cycles.use_denoising = False
scene.render.resolution_x, scene.render.resolution_y = 32, 18
scene.render.resolution_percentage = 100
bpy.ops.object.camera_add(location=(0, 0, 3))
scene.camera = bpy.context.object
for x, path in ((-0.9, windows), (0.9, local)):
    bpy.ops.mesh.primitive_plane_add(size=1.6, location=(x, 0, 0))
    mat = bpy.data.materials.new(path)
    mat.use_nodes = True
    nodes = mat.node_tree.nodes
    tex = nodes.new("ShaderNodeTexImage")
    tex.image = bpy.data.images.load(local)
    tex.image.filepath = path
    emit = nodes.new("ShaderNodeEmission")
    mat.node_tree.links.new(tex.outputs["Color"], emit.inputs["Color"])
    mat.node_tree.links.new(emit.outputs["Emission"], nodes["Material Output"].inputs[0])
    bpy.context.object.data.materials.append(mat)
bpy.context.preferences.filepaths.save_version = 0
bpy.ops.wm.save_as_mainfile(filepath=blend, relative_remap=False)
'''


@pytest.fixture(scope="module")
def farm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MasterProcess]:
    m = MasterProcess(tmp_path_factory.mktemp("farm"), slaves=1).start()
    yield m
    m.stop()


@pytest.fixture(scope="module")
def windows_made(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """shot.blend: one plane textured from C:\\..., one from //tex/brick.png beside it."""
    root = tmp_path_factory.mktemp("windows")
    brick = make_png(root / "tex" / "brick.png", "orange")
    script = root / "make.py"
    script.write_text(_SCRIPT)
    blend = root / "shot.blend"
    cp = run_blender(["-b", "--factory-startup", "--python-exit-code", "1", "--python",
                      str(script), "--", str(blend), WINDOWS, str(brick)])
    assert cp.returncode == 0 and blend.is_file(), cp.stdout[-3000:] + cp.stderr[-2000:]
    script.unlink()
    return blend



def test_a_missing_windows_path_stops_the_submission_naming_it(farm: MasterProcess,
                                                               windows_made: Path) -> None:
    cp = farm.ctl("submit", str(windows_made), "--frames", "1")
    assert cp.returncode == 1, cp.stdout + cp.stderr
    assert "missing (the Windows path C:" in cp.stderr and "wood.png" in cp.stderr
    assert "/c/Users/artist/textures/wood.png" in cp.stderr  # where Blender here looks
    assert "--allow-missing" in cp.stderr


def test_with_allow_missing_it_renders_like_local_with_a_warning(
        farm: MasterProcess, windows_made: Path, tmp_path: Path) -> None:
    job_id = farm.submit(str(windows_made), "--frames", "1", "--allow-missing")
    job = farm.wait(job_id)
    assert job["status"] == "completed-with-warnings", farm.ctl("logs", str(job_id)).stdout
    texts = [w["warning"] for w in job["task_warnings"]]
    assert any("reads 'C:/Users/artist/textures/wood.png': a Windows path; no such file in"
               " the job" in t for t in texts), texts
    frame = farm.job_dir(job_id) / "out" / "frame_0001.png"
    local = render_local(windows_made, tmp_path / "local", 1)
    assert pixels(frame) == pixels(local)
