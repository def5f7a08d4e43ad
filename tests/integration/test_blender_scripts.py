# SPDX-License-Identifier: MIT
"""The Blender-side scripts with the real Blender: the demo scene, tiles, -Y, broken files.

The tile arithmetic is also tested without Blender (fast), against a model of how Blender
turns border fractions into pixels: float32 fractions, multiplied and truncated.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from afarm.applications.stitch import stitch_argv
from afarm.runner.verify import image_size, verify_output
from tests.fixtures.blends import (
    DEMO_SCENE,
    TILE_BORDER,
    make_autorun_blend,
    make_broken_blend,
    make_scene,
    run_blender,
)
from tests.fixtures.scripts import load_script

FFMPEG = shutil.which("ffmpeg") or "ffmpeg"
# An odd size on purpose: 65x37 does not divide into 2 or 3 columns or 2 rows evenly.
WIDTH, HEIGHT = 65, 37
FRAME = 2


tb = load_script("tile_border.py")


def _blender_pixel(fraction: float, size: int) -> int:
    # What Blender 3.4 does in render_init_from_main() and in Cycles' buffer params:
    # `(int)(border.xmin * winx)` with the border stored as a float32.
    return int(np.float32(fraction) * np.float32(size))


def _sizes() -> list[int]:
    return [*range(1, 700), 1080, 1920, 2160, 3840, 4096, 4320, 7680, 8192, 16384]


# -- the tile arithmetic, without Blender --------------------------------------------------

def test_tile_spans_cover_every_pixel_exactly_once_also_for_uneven_sizes() -> None:
    for size in _sizes():
        for count in range(1, min(size, tb.MAX_TILES_PER_AXIS) + 1):
            spans = [tb.pixel_span(i, count, size) for i in range(count)]
            assert spans[0][0] == 0 and spans[-1][1] == size
            assert all(a[1] == b[0] for a, b in zip(spans, spans[1:], strict=False))
            widths = {end - start for start, end in spans}
            assert min(widths) >= 1 and max(widths) - min(widths) <= 1


def test_border_fractions_land_on_the_intended_pixels_in_blenders_float32_math() -> None:
    for size in _sizes():
        for count in range(1, min(size, tb.MAX_TILES_PER_AXIS) + 1):
            for index in range(count):
                tile = tb.Tile(index, index, count, count)
                border = tb.border_for(tile, size, size)
                x0, x1 = tb.pixel_span(index, count, size)
                assert _blender_pixel(border.min_x, size) == x0
                assert _blender_pixel(border.max_x, size) == x1
                # Rounding to nearest would land on the same pixels.
                assert round(float(np.float32(border.min_x) * size)) == x0
                # Row `index` from the top is this span from the bottom.
                top, bottom = tb.pixel_span(index, count, size)
                assert _blender_pixel(border.min_y, size) == size - bottom
                assert _blender_pixel(border.max_y, size) == size - top


def test_exact_fractions_would_miss_pixels_which_is_why_the_border_is_nudged() -> None:
    misses = [(p, size) for size in range(2, 200) for p in range(1, size)
              if _blender_pixel(p / size, size) != p]
    assert misses, "float32 p/size*size always truncates to p: the nudge would be unneeded"


@pytest.mark.parametrize("args", [
    [],
    ["--tile", "0", "0", "1"],
    ["--tile", "0", "0", "1", "1", "extra"],
    ["--tiles", "0", "0", "1", "1"],
    ["--tile", "a", "0", "1", "1"],
    ["--tile", "-1", "0", "1", "1"],
    ["--tile", "+1", "0", "2", "1"],
    ["--tile", "2", "0", "2", "1"],
    ["--tile", "0", "3", "1", "3"],
    ["--tile", "0", "0", "0", "1"],
    ["--tile", "0", "0", "17", "1"],
])
def test_tile_arguments_are_validated(args: list[str]) -> None:
    with pytest.raises(tb.TileError, match="tile_border.py"):
        tb.parse_tile(["blender", "-b", "--python", "tile_border.py", "--", *args])


def test_tile_arguments_must_follow_the_double_dash() -> None:
    with pytest.raises(tb.TileError, match="'--'"):
        tb.parse_tile(["blender", "--tile", "0", "0", "1", "1"])


def test_more_tiles_than_pixels_are_refused() -> None:
    with pytest.raises(tb.TileError, match="at least one pixel"):
        tb.border_for(tb.Tile(0, 0, 16, 1), 15, 10)


def test_the_effective_size_uses_blenders_integer_percentage() -> None:
    assert tb.effective_size(1920, 1080, 50) == (960, 540)
    assert tb.effective_size(65, 37, 33) == (21, 12)


# -- with the real Blender ------------------------------------------------------------------

def _decode_rgb(path: Path) -> bytes:
    cp = subprocess.run(  # noqa: S603 - argv list
        [FFMPEG, "-nostdin", "-loglevel", "error", "-i", str(path), "-f", "rawvideo",
         "-pix_fmt", "rgb24", "-"], capture_output=True, check=True)
    return cp.stdout


def _assert_ok(cp: subprocess.CompletedProcess[str]) -> None:
    assert cp.returncode == 0, f"blender exited {cp.returncode}:\n{cp.stdout}\n{cp.stderr}"


def _render_argv(blend: Path, out: str, frames: str) -> list[str]:
    # The order the product uses: engine, output and format before the frame option.
    return ["-b", "-Y", str(blend), "-E", "CYCLES", "-o", out, "-F", "PNG", "-x", "1",
            "-f", frames]


def _tile_argv(blend: Path, out_dir: Path, frame: int, col: int, row: int, cols: int,
               rows: int) -> list[str]:
    # Exactly what the slave runs for a tile (see afarm.applications.blender).
    return ["-b", "-Y", str(blend), "-E", "CYCLES", "--python-exit-code", "1",
            "--python", str(TILE_BORDER), "-o", str(out_dir / f"frame_####_r{row}c{col}"),
            "-F", "PNG", "-x", "1", "-f", str(frame),
            "--", "--tile", str(col), str(row), str(cols), str(rows)]


@pytest.fixture(scope="module")
def scene(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_scene(tmp_path_factory.mktemp("scene"), frames=3, width=WIDTH, height=HEIGHT,
                      samples=2)


@pytest.fixture(scope="module")
def full_frame(scene: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("full")
    _assert_ok(run_blender(_render_argv(scene, str(out / "frame_####"), str(FRAME))))
    return out / f"frame_{FRAME:04d}.png"


@pytest.mark.slow
def test_demo_scene_has_the_settings_tiles_and_benchmarks_rely_on(scene: Path) -> None:
    probe = (
        "import bpy, json\n"
        "s = bpy.context.scene\n"
        "r = s.render\n"
        "print('SETTINGS=' + json.dumps({'engine': r.engine, 'device': s.cycles.device,"
        " 'size': [r.resolution_x, r.resolution_y, r.resolution_percentage],"
        " 'samples': s.cycles.samples, 'denoise': s.cycles.use_denoising,"
        " 'adaptive': s.cycles.use_adaptive_sampling, 'dither': r.dither_intensity,"
        " 'frames': [s.frame_start, s.frame_end], 'border': r.use_border,"
        " 'camera': s.camera is not None}))\n"
    )
    cp = run_blender(["-b", "-Y", str(scene), "--python-exit-code", "1", "--python-expr", probe])
    _assert_ok(cp)
    line = next(ln for ln in cp.stdout.splitlines() if ln.startswith("SETTINGS="))
    assert json.loads(line.removeprefix("SETTINGS=")) == {
        "engine": "CYCLES", "device": "CPU", "size": [WIDTH, HEIGHT, 100], "samples": 2,
        "denoise": False, "adaptive": False, "dither": 0.0, "frames": [1, 3], "border": False,
        "camera": True,
    }


@pytest.mark.slow
def test_demo_scene_renders_every_frame_and_the_frames_differ(scene: Path,
                                                              tmp_path: Path) -> None:
    cp = run_blender(["-b", "-Y", str(scene), "-E", "CYCLES", "-o", str(tmp_path / "f_####"),
                      "-F", "PNG", "-x", "1", "-a"])
    _assert_ok(cp)
    frames = sorted(tmp_path.glob("f_*.png"))
    assert [p.name for p in frames] == ["f_0001.png", "f_0002.png", "f_0003.png"]
    for frame in frames:
        verify_output(frame)
        assert image_size(frame) == (WIDTH, HEIGHT)
    pixels = [_decode_rgb(p) for p in frames]
    assert len(set(pixels)) == 3, "the scene is not animated"


@pytest.mark.slow
@pytest.mark.parametrize(("cols", "rows"), [(2, 2), (3, 2)])
def test_tiles_stitch_bit_identical_to_full_frame(scene: Path, full_frame: Path,
                                                  tmp_path: Path, cols: int,
                                                  rows: int) -> None:
    cells = [(col, row) for row in range(rows) for col in range(cols)]

    def render(cell: tuple[int, int]) -> subprocess.CompletedProcess[str]:
        return run_blender(_tile_argv(scene, tmp_path, FRAME, cell[0], cell[1], cols, rows))

    # Two Blenders at a time: most of each run is single-threaded start-up and loading.
    with ThreadPoolExecutor(max_workers=2) as pool:
        runs = list(pool.map(render, cells))
    tiles = []
    for (col, row), cp in zip(cells, runs, strict=True):
        _assert_ok(cp)
        tile = tmp_path / f"frame_{FRAME:04d}_r{row}c{col}.png"
        verify_output(tile)
        x0, x1 = tb.pixel_span(col, cols, WIDTH)
        y0, y1 = tb.pixel_span(row, rows, HEIGHT)
        assert image_size(tile) == (x1 - x0, y1 - y0), f"tile r{row}c{col}"
        tiles.append(str(tile))
    stitched = tmp_path / "stitched.png"
    subprocess.run(stitch_argv(FFMPEG, tiles, cols, rows, str(stitched)),  # noqa: S603
                   check=True)
    assert image_size(stitched) == (WIDTH, HEIGHT)
    assert _decode_rgb(stitched) == _decode_rgb(full_frame)


@pytest.mark.slow
def test_tile_script_refuses_bad_arguments_with_exit_code_2_and_renders_nothing(
        scene: Path, tmp_path: Path) -> None:
    argv = _tile_argv(scene, tmp_path, 1, 3, 0, 3, 1)
    cp = run_blender(argv)
    assert cp.returncode == 2
    assert "tile_border.py: COL must be in 0..2, got 3" in cp.stderr
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
@pytest.mark.parametrize(("args", "message"), [
    (["--frames", "0"], "--frames must be in 1..100000, got 0"),
    (["--width", "wide"], "--width must be an integer"),
    (["--colour", "red"], "unrecognized arguments: --colour red"),
])
def test_demo_scene_script_refuses_bad_arguments(tmp_path: Path, args: list[str],
                                                  message: str) -> None:
    out = tmp_path / "scene.blend"
    cp = run_blender(["-b", "-Y", "--factory-startup", "--python-exit-code", "1",
                      "--python", str(DEMO_SCENE), "--", "--output", str(out), *args])
    assert cp.returncode == 2
    assert message in cp.stderr
    assert not out.exists()


@pytest.mark.slow
def test_autorun_blend_does_not_run_its_script_with_disable_autoexec(tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    blend = make_autorun_blend(tmp_path, marker)
    cp = run_blender(_render_argv(blend, str(tmp_path / "out_####"), "1"))
    _assert_ok(cp)
    verify_output(tmp_path / "out_0001.png")
    assert "scripts disabled" in cp.stdout
    assert not marker.exists()


@pytest.mark.slow
def test_autorun_blend_does_run_its_script_when_autoexec_is_allowed(tmp_path: Path) -> None:
    # The only place afarm lets Blender auto-execute (-y): without this proof that the
    # payload works, the test above would pass for a fixture that never runs anything.
    marker = tmp_path / "marker"
    blend = make_autorun_blend(tmp_path, marker)
    _assert_ok(run_blender(["-b", "-y", str(blend), "--python-expr", "pass"]))
    assert marker.read_text() == "autorun ran\n"


@pytest.mark.slow
@pytest.mark.parametrize(("content", "error"), [
    (None, "Error: Failed to read blend file '{path}': Missing DNA block"),
    (b"\x00garbage" * 20, "Error: File format is not supported in file '{path}'"),
    (b"", "Error: File format is not supported in file '{path}'"),
    ("missing", "Error: Cannot read file '{path}': No such file or directory"),
])
def test_a_blend_blender_cannot_open_fails_with_exit_code_1_and_an_error_on_stdout(
        tmp_path: Path, content: bytes | str | None, error: str) -> None:
    if content is None:
        blend = make_broken_blend(tmp_path)
    else:
        blend = tmp_path / "bad.blend"
        if isinstance(content, bytes):
            blend.write_bytes(content)
    cp = run_blender(_render_argv(blend, str(tmp_path / "out_####"), "1"))
    assert cp.returncode == 1
    # Blender prints the reason on stdout, not stderr; nothing is rendered.
    assert error.format(path=blend) in cp.stdout.splitlines()
    assert not list(tmp_path.glob("out_*"))
