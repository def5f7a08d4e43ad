# SPDX-License-Identifier: MIT
"""A pool version built from PyPI's bpy runs through afarm's launcher, not Blender's own
command line: a submitted .blend must not run its scripts there either (a registered text
block, a Python driver), as -Y guarantees with Debian's Blender."""

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from afarm.pool.archive import unpack
from tests.fixtures.blends import make_autorun_blend, run_blender
from tests.fixtures.pool_versions import bpy_archive

DRIVER = """
import bpy, sys
marker, out = sys.argv[sys.argv.index("--") + 1:]
ob = bpy.data.objects[0]
fc = ob.driver_add("location", 2)
fc.driver.type = "SCRIPTED"
fc.driver.expression = f"__import__('pathlib').Path({marker!r}).write_text('x') and 0"
bpy.context.preferences.filepaths.save_version = 0
bpy.ops.wm.save_as_mainfile(filepath=out, check_existing=False)
"""


@pytest.fixture(scope="module")
def bpy_blender(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    root = tmp_path_factory.mktemp("bpy") / "root"
    unpack(bpy_archive(), root, 4 << 30)
    yield root / "blender"


def hostile(tmp_path: Path) -> tuple[Path, Path, Path]:
    """A .blend with a registered text block and a Python driver, each writing a marker."""
    text_marker, driver_marker = tmp_path / "text-ran", tmp_path / "driver-ran"
    autorun = make_autorun_blend(tmp_path, text_marker)
    script = tmp_path / "driver.py"
    script.write_text(DRIVER)
    blend = tmp_path / "hostile.blend"
    cp = run_blender(["-b", "-Y", str(autorun), "--python", str(script), "--",
                      str(driver_marker), str(blend)])
    assert cp.returncode == 0 and blend.is_file(), cp.stdout[-2000:]
    return blend, text_marker, driver_marker


@pytest.mark.slow
def test_the_payloads_run_where_blender_is_told_to_trust_the_file(tmp_path: Path) -> None:
    # Without this proof the test below would pass for a file that never runs anything.
    blend, text_marker, driver_marker = hostile(tmp_path)
    cp = run_blender(["-b", "-y", str(blend), "-o", str(tmp_path / "f_####"), "-F", "PNG",
                      "-f", "1"])
    assert cp.returncode == 0, cp.stdout[-2000:]
    assert text_marker.exists() and driver_marker.exists()


@pytest.mark.slow
def test_the_bpy_launcher_renders_a_hostile_blend_without_running_its_scripts(
        tmp_path: Path, bpy_blender: Path) -> None:
    blend, text_marker, driver_marker = hostile(tmp_path)
    cp = subprocess.run([str(bpy_blender), "-b", "-Y", str(blend),  # noqa: S603
                         "-o", str(tmp_path / "f_####"), "-F", "PNG", "-f", "1"],
                        capture_output=True, text=True, timeout=300, cwd=tmp_path,
                        check=False)
    assert cp.returncode == 0, (cp.stdout + cp.stderr)[-2000:]
    assert (tmp_path / "f_0001.png").is_file()
    assert not text_marker.exists(), "the registered text block ran under bpy"
    assert not driver_marker.exists(), "the Python driver ran under bpy"
