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
