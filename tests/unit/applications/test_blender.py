# SPDX-License-Identifier: MIT
from pathlib import Path

import pytest

from afarm.applications.base import RunContext
from afarm.applications.blender import BlenderApp
from afarm.errors import UsageError
from afarm.model.job import InputFile

APP = BlenderApp("blender", {"executable": "/usr/bin/blender", "engine": "CYCLES",
                             "format": "PNG", "followup_application": "ffmpeg"})
BLEND = [InputFile("my shot; $(rm -rf ~).blend", "0" * 64, 1)]


def ctx(tmp: Path) -> RunContext:
    return RunContext(inputs=[tmp / "in" / BLEND[0].name], out_dir=tmp / "out",
                      scratch=tmp, outputs=[])


def test_chunks_become_render_tasks_with_their_frame_outputs() -> None:
    params = APP.validate({"frames": "1-5", "chunk": 2}, BLEND)
    plan = APP.plan("shot", params, BLEND)
    assert [t.params["frames"] for t in plan] == [[1, 2], [3, 4], [5]]
    assert plan[0].outputs == ["out/frame_0001.png", "out/frame_0002.png"]
    assert sum(t.frames for t in plan) == 5


def test_encode_depends_on_every_frame_task_and_runs_on_the_master() -> None:
    params = APP.validate({"frames": "1,3,5", "encode": "mp4"}, BLEND)
    plan = APP.plan("my shot", params, BLEND)
    enc = plan[-1]
    assert enc.kind == "encode" and enc.runs_on == "master" and enc.application == "ffmpeg"
    assert enc.depends == [0, 1, 2]
    assert enc.inputs == ["out/frame_0001.png", "out/frame_0003.png", "out/frame_0005.png"]
    assert enc.outputs == ["out/my_shot.mp4"]


def test_tiles_make_one_task_per_tile_and_a_stitch_per_frame() -> None:
    params = APP.validate({"frames": "7", "tiles": "2x2"}, BLEND)
    plan = APP.plan("t", params, BLEND)
    assert [t.kind for t in plan] == ["render"] * 4 + ["stitch"]
    assert plan[4].depends == [0, 1, 2, 3]
    assert plan[4].inputs == [f"tiles/frame_0007_r{r}c{c}.png" for r in (0, 1) for c in (0, 1)]
    assert plan[4].outputs == ["out/frame_0007.png"] and plan[4].frames == 1


def test_argv_disables_autoexec_and_sets_output_before_frames(tmp_path: Path) -> None:
    params = APP.validate({"frames": "1-3"}, BLEND)
    argv = APP.argv("render", APP.plan("x", params, BLEND)[0].params, ctx(tmp_path))
    blend = str(tmp_path / "in" / BLEND[0].name)
    assert argv[:3] == ["/usr/bin/blender", "-b", "-Y"]
    assert "-y" not in argv
    assert argv.index("-E") < argv.index("-f")
    assert argv.index("-o") < argv.index("-f") and argv.index("-F") < argv.index("-f")
    assert argv[argv.index("-f") + 1] == "1"
    assert argv.index(blend) < argv.index("-o")


def test_render_prep_runs_before_the_file_loads_and_again_after_it(tmp_path: Path) -> None:
    params = APP.validate({"frames": "1", "scene": "Shot"}, BLEND)
    argv = APP.argv("render", params, ctx(tmp_path))
    blend = argv.index(str(tmp_path / "in" / BLEND[0].name))
    preps = [i for i, a in enumerate(argv) if a == "--python"
             and argv[i + 1].endswith("/render_prep.py")]
    # Before the file: checks it the moment it is read. After it (and after -S): proves
    # the check ran. A failing script must fail Blender, which exits 0 otherwise.
    assert len(preps) == 2 and preps[0] < blend < argv.index("-S") < preps[1] < argv.index("-f")
    assert argv.index("--python-exit-code") < preps[0]
    assert argv[argv.index("--python-exit-code") + 1] != "0"


def test_render_prep_is_told_the_jobs_directories_after_the_double_dash(tmp_path: Path) -> None:
    context = RunContext(inputs=[tmp_path / "in" / "shot.blend", tmp_path / "in" / "tex" / "a.png"],
                         out_dir=tmp_path / "out", scratch=tmp_path / "scratch", outputs=[])
    argv = APP.argv("render", APP.validate({"frames": "1"}, BLEND), context)
    assert argv[argv.index("--"):] == ["--", "--job-dirs", str(tmp_path / "in"),
                                       str(tmp_path / "out"), str(tmp_path / "scratch")]


def test_a_refusal_by_render_prep_becomes_the_task_error_naming_the_datablock() -> None:
    lines = ["Blender 3.4.1", "Read blend: /w/in/x.blend",
             "afarm: refused: image 'Secret' reads 'concat:/a|/b': a path with ':' ...",
             "afarm: refused: font 'F' reads '/usr/share/fonts/x.ttf': outside the job's files"]
    error = APP.failure(3, lines)
    assert error is not None
    assert error.startswith("the .blend was refused: image 'Secret' reads 'concat:/a|/b'")
    assert error.endswith("(and 1 more; see the task log)")
    # The exit code decides; a look-alike line in a successful render fails nothing.
    assert APP.failure(0, lines) is None


def test_without_an_engine_the_files_own_is_used(tmp_path: Path) -> None:
    app = BlenderApp("blender", {"executable": "blender"})
    params = app.validate({"frames": "1"}, BLEND)
    assert "-E" not in app.argv("render", params, ctx(tmp_path))
    params = app.validate({"frames": "1", "engine": "cycles"}, BLEND)
    argv = app.argv("render", params, ctx(tmp_path))
    assert argv[argv.index("-E") + 1] == "CYCLES"


def test_tile_argv_runs_only_afarms_own_script(tmp_path: Path) -> None:
    params = APP.validate({"frames": "2", "tiles": "2x1"}, BLEND)
    argv = APP.argv("render", APP.plan("x", params, BLEND)[1].params, ctx(tmp_path))
    scripts = [argv[i + 1] for i, a in enumerate(argv) if a == "--python"]
    assert [Path(s).name for s in scripts] == ["render_prep.py", "render_prep.py",
                                              "tile_border.py"]
    assert all(s.endswith(f"afarm/applications/scripts/{Path(s).name}") for s in scripts)
    assert argv[-5:] == ["--tile", "1", "0", "2", "1"]
    assert argv[argv.index("--") + 1] == "--job-dirs"
    assert argv[argv.index("-o") + 1].endswith("frame_####_r0c1")


@pytest.mark.parametrize(("params", "needle"), [
    ({"frames": "1-x"}, "--frames"),
    ({"frames": "10-1"}, "--frames"),
    ({"frames": "1-3", "chunk": 0}, "--chunk"),
    ({"frames": "1", "engine": "POVRAY"}, "--engine"),
    ({"frames": "1", "format": "GIF"}, "--format"),
    ({"frames": "1", "encode": "avi"}, "--encode"),
    ({"frames": "1", "bogus": 1}, "'bogus'"),
    ({}, "--frames is required"),
])
def test_bad_parameters_are_usage_errors_naming_the_option(params: dict[str, object],
                                                           needle: str) -> None:
    with pytest.raises(UsageError, match=needle.replace("-", r"\-")):
        APP.validate(params, BLEND)


def test_a_file_that_is_not_a_blend_is_refused(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match=r"\.blend"):
        APP.validate({"frames": "1"}, [InputFile("scene.txt", "0" * 64, 1)])
    fake = tmp_path / "fake.blend"
    fake.write_bytes(b"#!/bin/sh\necho pwned\n")
    with pytest.raises(UsageError, match="not a .blend"):
        APP.check_inputs([fake])


@pytest.mark.parametrize("bad", [
    {"frames": ["1; rm -rf /"]}, {"frames": [-1]}, {"frames": [True]}, {"frames": []},
    {"engine": "CYCLES --python-expr x"}, {"format": "PNG -P evil.py"},
    {"scene": "-P"}, {"tile": [0, 0, 99, 1]}, {"tile": ["0", 0, 2, 2]},
])
def test_the_slave_side_argv_builder_refuses_malformed_parameters(tmp_path: Path,
                                                                  bad: dict[str, object]) -> None:
    params = {**APP.validate({"frames": "1"}, BLEND), **bad}
    with pytest.raises(UsageError, match="refused"):
        APP.argv("render", params, ctx(tmp_path))


def test_a_task_pinned_to_a_gpu_tells_render_prep_its_device(tmp_path: Path) -> None:
    params = APP.validate({"frames": "1"}, BLEND)
    assert "--gpu-device" not in APP.argv("render", params, ctx(tmp_path))
    argv = APP.argv("render", {**params, "gpu_device": 1}, ctx(tmp_path))
    assert argv[-2:] == ["--gpu-device", "1"] and argv.index("--") < len(argv) - 2


@pytest.mark.parametrize("bad", [-1, 64, "1", "1 --python-expr x", True])
def test_a_malformed_gpu_device_is_refused_on_the_slave(tmp_path: Path, bad: object) -> None:
    params = {**APP.validate({"frames": "1"}, BLEND), "gpu_device": bad}
    with pytest.raises(UsageError, match="refused"):
        APP.argv("render", params, ctx(tmp_path))
