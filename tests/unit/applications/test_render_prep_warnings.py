# SPDX-License-Identifier: MIT
"""render_prep.py's missing-file warnings, without Blender: the rule for one reference and
the files of UDIM tiles."""

import importlib.util
from pathlib import Path
from types import ModuleType

from afarm.applications.base import script_path


def load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("render_prep_warnings_under_test",
                                                  script_path("render_prep.py"))
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


rp = load()


def dirs(tmp_path: Path) -> object:
    for d in ("in", "out", "scratch"):
        (tmp_path / d).mkdir(exist_ok=True)
    return rp.JobDirs(str(tmp_path / "in"), str(tmp_path / "out"), str(tmp_path / "scratch"))


def test_udim_and_uvtile_tokens_name_each_tiles_file() -> None:
    assert rp.tile_path("/j/in/wood.<UDIM>.png", 1012) == "/j/in/wood.1012.png"
    assert rp.tile_path("/j/in/wood_<UVTILE>.png", 1012) == "/j/in/wood_u2_v2.png"
    assert rp.tile_path("/j/in/wood.1001.png", 1002) is None


def test_a_missing_file_or_directory_inside_the_job_is_a_warning(tmp_path: Path) -> None:
    d = dirs(tmp_path)
    cwd = str(tmp_path / "scratch")
    base = str(tmp_path / "in")
    ref = rp.Ref("modifier 'Cache' of object 'Cube'", "//caches/a.mdd", base, rp.FILE)
    assert rp.check_ref(ref, d, cwd) == ([], [
        "modifier 'Cache' of object 'Cube' reads '//caches/a.mdd': no such file in the job"])
    cache = rp.Ref("fluid cache of x", "//cache_fluid", base, rp.DIR)
    assert rp.check_ref(cache, d, cwd)[1] == [
        "fluid cache of x reads '//cache_fluid': no such directory in the job"]


def test_an_unbaked_cache_directory_that_is_missing_is_no_warning(tmp_path: Path) -> None:
    ref = rp.Ref("point cache of x", "//blendcache", str(tmp_path / "in"), rp.OPTDIR)
    assert rp.check_ref(ref, dirs(tmp_path), str(tmp_path / "scratch")) == ([], [])
    outside = rp.Ref("point cache of x", "/etc", str(tmp_path / "in"), rp.OPTDIR)
    assert rp.check_ref(outside, dirs(tmp_path), str(tmp_path / "scratch"))[0]


def test_the_frames_a_task_renders_are_read_from_blenders_f_option() -> None:
    argv = ["blender", "-b", "-Y", "x.blend", "-o", "/o/frame_####", "-f", "3,4,9", "--",
            "--job-dirs", "/a", "/b", "/c", "-f", "7"]
    assert rp.parse_frames(argv) == [3, 4, 9]
    assert rp.parse_frames(["blender", "-b"]) == []


def test_a_sequence_frame_is_computed_as_blender_computes_it() -> None:
    assert rp.image_frame(1, 1, 10, 0, False) == 1
    assert rp.image_frame(15, 1, 10, 0, False) == 10  # held on its last frame
    assert rp.image_frame(15, 1, 10, 0, True) == 5  # cyclic: wraps
    assert rp.image_frame(10, 1, 10, 0, True) == 10
    assert rp.image_frame(5, 3, 10, 100, False) == 103  # start and offset
    assert rp.image_frame(5, 1, 0, 0, False) is None  # no duration: no frame


def test_a_sequence_file_keeps_the_digits_width_of_its_name() -> None:
    assert rp.sequence_file("/j/in/plates/p_v2_0001.png", 17) == "/j/in/plates/p_v2_0017.png"
    assert rp.sequence_file("/j/in/p1.exr", 123) == "/j/in/p123.exr"
    assert rp.sequence_file("/j/in2/plate.png", 3) is None
