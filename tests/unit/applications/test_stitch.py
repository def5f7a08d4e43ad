# SPDX-License-Identifier: MIT
"""stitch_argv and encode_argv: the argv they build, and that ffmpeg really gives exact pixels."""

from __future__ import annotations

import random
import shutil
import struct
import subprocess
import zlib
from pathlib import Path

import pytest

from afarm.applications.stitch import encode_argv, stitch_argv, xstack_layout
from afarm.runner.verify import image_size, verify_output

FFMPEG = shutil.which("ffmpeg") or "ffmpeg"

# PNG colour types and the ffmpeg pixel format each decodes to, per bit depth.
_FORMATS = {
    ("rgb24", 8): 2, ("rgba", 8): 6, ("rgb48be", 16): 2, ("rgba64be", 16): 6,
}
_CHANNELS = {2: 3, 6: 4}


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def write_png(path: Path, width: int, height: int, pixels: bytes, color_type: int,
              depth: int) -> None:
    """A PNG of raw big-endian rows (filter 0), so the expected pixels are known exactly."""
    stride = width * _CHANNELS[color_type] * depth // 8
    assert len(pixels) == stride * height
    raw = b"".join(b"\0" + pixels[y * stride:(y + 1) * stride] for y in range(height))
    ihdr = struct.pack(">IIBBBBB", width, height, depth, color_type, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr)
                     + _chunk(b"IDAT", zlib.compress(raw)) + _chunk(b"IEND", b""))


def run(argv: list[str]) -> bytes:
    """Run an argv list (never a shell); its stdout, or CalledProcessError with its stderr."""
    cp = subprocess.run(argv, capture_output=True, check=False)  # noqa: S603 - argv list
    if cp.returncode != 0:
        raise AssertionError(f"{argv} exited {cp.returncode}: {cp.stderr.decode()}")
    return cp.stdout


def decode(path: Path, pix_fmt: str) -> bytes:
    return run([FFMPEG, "-nostdin", "-loglevel", "error", "-i", str(path),
                "-f", "rawvideo", "-pix_fmt", pix_fmt, "-"])


def probe(path: Path, entries: str, *extra: str) -> str:
    return run(["ffprobe", "-v", "error", "-select_streams", "v:0", *extra,
                "-show_entries", f"stream={entries}", "-of", "csv=p=0",
                str(path)]).decode().strip()


def split_into_tiles(tmp: Path, width: int, height: int, pixels: bytes, cols: int, rows: int,
                     color_type: int, depth: int) -> list[str]:
    """Cut an image the way tile_border.py does: floor(i*W/COLS) edges, row 0 on top."""
    bpp = _CHANNELS[color_type] * depth // 8
    stride = width * bpp
    paths = []
    for row in range(rows):
        y0, y1 = row * height // rows, (row + 1) * height // rows
        for col in range(cols):
            x0, x1 = col * width // cols, (col + 1) * width // cols
            part = b"".join(pixels[y * stride + x0 * bpp:y * stride + x1 * bpp]
                            for y in range(y0, y1))
            path = tmp / f"tile_r{row}c{col}.png"
            write_png(path, x1 - x0, y1 - y0, part, color_type, depth)
            paths.append(str(path))
    return paths


def test_layout_offsets_are_sums_of_real_tile_sizes() -> None:
    assert xstack_layout(2, 2) == "0_0|w0_0|0_h0|w0_h0"
    assert xstack_layout(3, 2) == "0_0|w0_0|w0+w1_0|0_h0|w0_h0|w0+w1_h0"
    # y offsets sum the heights of column 0's tiles: inputs 0, 3, 6 in a 3-column grid.
    assert xstack_layout(3, 3).split("|")[6:] == ["0_h0+h3", "w0_h0+h3", "w0+w1_h0+h3"]
    assert xstack_layout(1, 3) == "0_0|0_h0|0_h0+h1"
    assert xstack_layout(4, 1) == "0_0|w0_0|w0+w1_0|w0+w1+w2_0"


def test_stitch_argv_lists_inputs_in_order_and_one_xstack_filter() -> None:
    tiles = [f"/scratch/t{i}.png" for i in range(6)]
    argv = stitch_argv("/usr/bin/ffmpeg", tiles, 3, 2, "/scratch/out.png")
    assert argv[0] == "/usr/bin/ffmpeg"
    inputs = [argv[i + 1] for i, a in enumerate(argv) if a == "-i"]
    assert inputs == [f"file:{t}" for t in tiles]
    # each tile read as an image by its name, never by a demuxer its content picks
    for i, a in enumerate(argv):
        if a == "-i":
            assert argv[i - 6:i] == ["-protocol_whitelist", "file", "-f", "image2",
                                     "-pattern_type", "none"]
    assert argv[argv.index("-filter_complex") + 1] == (
        "xstack=inputs=6:layout=0_0|w0_0|w0+w1_0|0_h0|w0_h0|w0+w1_h0")
    assert argv[argv.index("-frames:v") + 1] == "1"
    assert argv[argv.index("-loglevel") + 1] == "error"
    assert "-nostdin" in argv and "-y" not in argv
    assert "-pix_fmt" not in argv
    assert argv[-1] == "/scratch/out.png"
    assert all(isinstance(a, str) for a in argv)


def test_stitch_argv_of_one_tile_has_no_filter() -> None:
    argv = stitch_argv("ffmpeg", ["/s/t.png"], 1, 1, "/s/out.png")
    assert "-filter_complex" not in argv
    assert argv.count("-i") == 1 and argv[-1] == "/s/out.png"


def test_stitch_argv_passes_an_explicit_pixel_format_before_the_output() -> None:
    argv = stitch_argv("ffmpeg", ["/a.png", "/b.png"], 2, 1, "/o.png", pix_fmt="rgba")
    assert argv[argv.index("-pix_fmt") + 1] == "rgba"
    assert argv.index("-pix_fmt") < argv.index("/o.png")


def test_paths_with_shell_characters_stay_single_arguments() -> None:
    odd = "/s/a b;rm -rf ~ $(x) `y` 'q'.png"
    argv = stitch_argv("ffmpeg", [odd, "/s/b.png"], 2, 1, "/s/o ut.png")
    assert f"file:{odd}" in argv and "/s/o ut.png" in argv
    argv = encode_argv("ffmpeg", "/s/in dir/f_%06d.png", 1, 24, "/s/o ut.mp4")
    assert "/s/in dir/f_%06d.png" in argv and "/s/o ut.mp4" in argv


@pytest.mark.parametrize(("tiles", "cols", "rows"), [
    (["/a.png"] * 3, 2, 2),
    (["/a.png"] * 4, 4, 4),
    ([], 0, 1),
    (["/a.png"], 1, 0),
])
def test_stitch_argv_rejects_a_tile_count_that_does_not_match_the_grid(
        tiles: list[str], cols: int, rows: int) -> None:
    with pytest.raises(ValueError):
        stitch_argv("ffmpeg", tiles, cols, rows, "/o.png")


@pytest.mark.parametrize("bad", ["-filter_complex", "", "/s/frame_%04d.png", "/s/a\nb.png"])
def test_stitch_argv_rejects_tile_paths_ffmpeg_would_misread(bad: str) -> None:
    with pytest.raises(ValueError):
        stitch_argv("ffmpeg", [bad, "/s/b.png"], 2, 1, "/s/o.png")


@pytest.mark.parametrize("bad", ["-o.png", "", "/s/a\nb.png"])
def test_stitch_argv_rejects_output_paths_ffmpeg_would_misread(bad: str) -> None:
    with pytest.raises(ValueError):
        stitch_argv("ffmpeg", ["/s/a.png", "/s/b.png"], 2, 1, bad)


def test_encode_argv_makes_h264_mp4_with_even_size_and_faststart() -> None:
    argv = encode_argv("/usr/bin/ffmpeg", "/s/in_%06d.png", 7, 25, "/s/out.mp4")
    assert argv[0] == "/usr/bin/ffmpeg"
    pairs = {argv[i]: argv[i + 1] for i in range(1, len(argv) - 1) if argv[i].startswith("-")}
    assert pairs["-i"] == "/s/in_%06d.png"
    assert pairs["-start_number"] == "7"
    assert pairs["-framerate"] == "25"
    assert pairs["-c:v"] == "libx264"
    assert pairs["-pix_fmt"] == "yuv420p"
    assert pairs["-vf"] == "pad=ceil(iw/2)*2:ceil(ih/2)*2"
    assert pairs["-movflags"] == "+faststart"
    assert pairs["-loglevel"] == "error"
    # Input options must precede the -i they apply to.
    assert argv.index("-start_number") < argv.index("-i") < argv.index("-c:v")
    assert argv[-1] == "/s/out.mp4"


@pytest.mark.parametrize(("pattern", "start", "fps"), [
    ("/s/in.png", 1, 24), ("/s/in_%06d.png", -1, 24), ("/s/in_%06d.png", 1, 0),
    ("-i_%06d.png", 1, 24),
])
def test_encode_argv_rejects_bad_arguments(pattern: str, start: int, fps: int) -> None:
    with pytest.raises(ValueError):
        encode_argv("ffmpeg", pattern, start, fps, "/s/out.mp4")


@pytest.mark.parametrize(("pix_fmt", "depth"), list(_FORMATS))
@pytest.mark.parametrize(("width", "height", "cols", "rows"), [
    (64, 36, 2, 2), (65, 37, 3, 2), (7, 5, 1, 1), (17, 9, 4, 3),
])
def test_stitched_tiles_are_bit_identical_to_the_whole_image(
        tmp_path: Path, pix_fmt: str, depth: int, width: int, height: int, cols: int,
        rows: int) -> None:
    color_type = _FORMATS[(pix_fmt, depth)]
    rng = random.Random(f"{pix_fmt}{width}x{height}")
    pixels = rng.randbytes(width * height * _CHANNELS[color_type] * depth // 8)
    whole = tmp_path / "whole.png"
    write_png(whole, width, height, pixels, color_type, depth)
    tiles = split_into_tiles(tmp_path, width, height, pixels, cols, rows, color_type, depth)
    out = tmp_path / "stitched.png"
    run(stitch_argv(FFMPEG, tiles, cols, rows, str(out)))
    verify_output(out)
    assert image_size(out) == (width, height)
    # The PNG keeps the tiles' format (no alpha added or dropped, no bit depth change) ...
    assert probe(out, "pix_fmt") == pix_fmt
    # ... and every sample of every pixel is the one that went in.
    assert decode(out, pix_fmt) == decode(whole, pix_fmt) == pixels


def test_encode_argv_encodes_an_odd_sized_sequence_to_a_playable_mp4(tmp_path: Path) -> None:
    rng = random.Random(1)
    for n in range(5, 9):
        write_png(tmp_path / f"in_{n:06d}.png", 33, 17, rng.randbytes(33 * 17 * 3), 2, 8)
    out = tmp_path / "out.mp4"
    run(encode_argv(FFMPEG, str(tmp_path / "in_%06d.png"), 5, 24, str(out)))
    verify_output(out)
    assert probe(out, "codec_name,width,height,pix_fmt,nb_read_frames",
                 "-count_frames") == "h264,34,18,yuv420p,4"
