# SPDX-License-Identifier: MIT
"""verify_output and image_size on good, wrong, empty and truncated files of every format."""

from __future__ import annotations

import shutil
import struct
import subprocess
import time
import zlib
from pathlib import Path

import pytest

from afarm.errors import OperationFailed
from afarm.runner.verify import IMAGE_FACTOR, IMAGE_METADATA, image_size, verify_output

FFMPEG = shutil.which("ffmpeg") or "ffmpeg"

# Real files from ffmpeg, one per format, so the checks meet what encoders really write.
_ENCODERS = {
    "png": ["-c:v", "png"],
    "jpg": ["-c:v", "mjpeg", "-pix_fmt", "yuvj420p"],
    "exr": ["-c:v", "exr", "-pix_fmt", "gbrpf32le"],
    "mp4": ["-c:v", "libx264", "-pix_fmt", "yuv420p", "-movflags", "+faststart"],
    "mov": ["-c:v", "libx264", "-pix_fmt", "yuv420p"],
}
_VIDEOS = {"mp4", "mov"}


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_bytes(width: int = 3, height: int = 2) -> bytes:
    raw = b"".join(b"\0" + bytes(width * 3) for _ in range(height))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", zlib.compress(raw))
            + _chunk(b"IEND", b""))


@pytest.fixture(scope="module")
def real_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("real")
    made = {}
    for ext, codec in _ENCODERS.items():
        frames = "12" if ext in _VIDEOS else "1"
        out = root / f"real.{ext}"
        subprocess.run(  # noqa: S603 - argv list
            [FFMPEG, "-nostdin", "-loglevel", "error", "-f", "lavfi", "-i",
             "testsrc=size=66x38:rate=24", "-frames:v", frames, *codec, str(out)], check=True)
        made[ext] = out
    return made


def _copy(src: Path, dst: Path, data: bytes | None = None) -> Path:
    dst.write_bytes(src.read_bytes() if data is None else data)
    return dst


def _reason(path: Path) -> str:
    with pytest.raises(OperationFailed) as caught:
        verify_output(path)
    message = str(caught.value)
    assert str(path) in message
    return message


@pytest.mark.parametrize("ext", list(_ENCODERS))
def test_files_ffmpeg_writes_are_accepted(real_files: dict[str, Path], ext: str) -> None:
    verify_output(real_files[ext])


@pytest.mark.parametrize("ext", list(_ENCODERS))
def test_upper_case_extensions_are_checked_too(real_files: dict[str, Path], tmp_path: Path,
                                               ext: str) -> None:
    verify_output(_copy(real_files[ext], tmp_path / f"GOOD.{ext.upper()}"))
    assert "empty" in _reason(_copy(real_files[ext], tmp_path / f"BAD.{ext.upper()}", b""))


@pytest.mark.parametrize("ext", [*_ENCODERS, "jpeg", "m4v"])
def test_empty_images_and_videos_are_rejected(tmp_path: Path, ext: str) -> None:
    path = tmp_path / f"frame.{ext}"
    path.write_bytes(b"")
    assert "empty" in _reason(path)


@pytest.mark.parametrize("ext", [*_ENCODERS, "out", "txt"])
def test_missing_files_are_rejected(tmp_path: Path, ext: str) -> None:
    assert "missing" in _reason(tmp_path / f"frame.{ext}")


def test_a_directory_is_not_an_output(tmp_path: Path) -> None:
    (tmp_path / "frame.png").mkdir()
    assert "not a regular file" in _reason(tmp_path / "frame.png")


@pytest.mark.parametrize(("ext", "wrong"), [
    ("png", "jpg"), ("jpg", "png"), ("exr", "png"), ("mp4", "png"), ("mov", "jpg"),
    ("png", "exr"), ("jpg", "mp4"),
])
def test_a_file_whose_header_does_not_match_its_extension_is_rejected(
        real_files: dict[str, Path], tmp_path: Path, ext: str, wrong: str) -> None:
    path = _copy(real_files[wrong], tmp_path / f"frame.{ext}")
    assert "not a" in _reason(path)


# How many bytes of an n-byte file survive: cut in the middle, near the end, just the last
# byte or the end marker, or only the first few bytes.
_CUTS = {
    "half": lambda n: n // 2,
    "ninety_percent": lambda n: n * 9 // 10,
    "last_byte": lambda n: n - 1,
    "last_four_bytes": lambda n: n - 4,
    "first_20_bytes": lambda n: 20,
}


@pytest.mark.parametrize("ext", ["png", "jpg", "mp4", "mov"])
@pytest.mark.parametrize("cut", list(_CUTS))
def test_truncated_files_are_rejected(real_files: dict[str, Path], tmp_path: Path, ext: str,
                                      cut: str) -> None:
    data = real_files[ext].read_bytes()
    _reason(_copy(real_files[ext], tmp_path / f"cut.{ext}", data[:_CUTS[cut](len(data))]))


def test_an_exr_is_checked_by_its_magic_number_only(real_files: dict[str, Path],
                                                    tmp_path: Path) -> None:
    # OpenEXR has no end marker; its offset table would need parsing, so a truncated EXR
    # passes this cheap check (and is caught when a stitch or encode fails to read it).
    data = real_files["exr"].read_bytes()
    verify_output(_copy(real_files["exr"], tmp_path / "cut.exr", data[:len(data) // 2]))
    assert "OpenEXR" in _reason(_copy(real_files["exr"], tmp_path / "bad.exr", b"\0" + data))


def test_a_png_with_bytes_after_iend_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "frame.png"
    path.write_bytes(png_bytes() + b"junk")
    assert "after" in _reason(path)


def test_a_png_without_ihdr_first_is_rejected(tmp_path: Path) -> None:
    data = png_bytes()
    path = tmp_path / "frame.png"
    path.write_bytes(data[:12] + b"IHDX" + data[16:])
    assert "IHDR" in _reason(path)


def test_a_png_cut_exactly_at_a_chunk_boundary_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "frame.png"
    path.write_bytes(png_bytes()[:-12])
    assert "IEND" in _reason(path)


def test_a_jpeg_without_end_marker_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "frame.jpeg"
    path.write_bytes(b"\xff\xd8\xff\xe0" + bytes(100))
    assert "FF D9" in _reason(path)


def test_an_mp4_that_never_wrote_its_index_is_rejected(tmp_path: Path) -> None:
    ftyp = struct.pack(">I4s", 16, b"ftyp") + b"isom\0\0\2\0"
    mdat = struct.pack(">I4s", 108, b"mdat") + bytes(100)
    path = tmp_path / "video.mp4"
    path.write_bytes(ftyp + mdat)
    assert "moov" in _reason(path)
    # The same file with an index (and a 64-bit box size) is complete.
    moov = struct.pack(">I4sQ", 24, b"moov", 24) + bytes(8)
    path.write_bytes(ftyp + mdat + moov)
    verify_output(path)


@pytest.mark.parametrize("name", ["stdout.out", "log.txt", "result.json", "noextension"])
def test_other_files_only_have_to_exist_and_may_be_empty(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    path.write_bytes(b"")
    verify_output(path)
    path.write_bytes(b"\x89PNG garbage")
    verify_output(path)


def test_image_size_reads_the_png_header(real_files: dict[str, Path], tmp_path: Path) -> None:
    assert image_size(real_files["png"]) == (66, 38)
    path = tmp_path / "small.png"
    path.write_bytes(png_bytes(5, 7))
    assert image_size(path) == (5, 7)


@pytest.mark.parametrize("content", [b"", b"\x89PNG\r\n\x1a\n", b"not a png at all"])
def test_image_size_of_a_non_png_raises(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "frame.png"
    path.write_bytes(content)
    with pytest.raises(OperationFailed):
        image_size(path)
    with pytest.raises(OperationFailed):
        image_size(tmp_path / "missing.png")


# -- Issue 9, hole 8: a lying slave's outsized file ----------------------------------------

def _sparse_png(path: Path, width: int, height: int, total: int) -> Path:
    """A PNG of the given size whose padding is one valid ancillary chunk (a hole on disk,
    so the test writes no 512 MiB)."""
    head = b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 6,
                                                                  0, 0, 0))
    idat = _chunk(b"IDAT", zlib.compress(b"".join(b"\0" + bytes(width * 4)
                                                  for _ in range(height))))
    iend = _chunk(b"IEND", b"")
    pad = total - len(head) - len(idat) - len(iend) - 12
    with path.open("wb") as f:
        f.write(head + idat + struct.pack(">I", pad) + b"zTXt")
        f.seek(pad, 1)
        f.write(b"\0\0\0\0" + iend)
    assert path.stat().st_size == total
    return path


def test_a_512_mib_png_of_64x36_pixels_padded_with_valid_chunks_is_refused(
        tmp_path: Path) -> None:
    path = _sparse_png(tmp_path / "frame_0001.png", 64, 36, 512 << 20)
    t0 = time.monotonic()
    reason = _reason(path)
    assert "too large for a 64x36 PNG of 4 channels of 8 bits" in reason
    assert "at most" in reason
    assert time.monotonic() - t0 < 1.0, "the size is checked before the chunks are walked"


def test_a_png_is_accepted_up_to_its_bound_and_refused_one_byte_above(tmp_path: Path) -> None:
    raw = 36 * (64 * 4 + 1)
    limit = IMAGE_FACTOR * raw + IMAGE_METADATA
    verify_output(_sparse_png(tmp_path / "ok.png", 64, 36, limit))
    assert "too large" in _reason(_sparse_png(tmp_path / "big.png", 64, 36, limit + 1))


def _pad_before_end(src: Path, dst: Path, tail: int, pad: int) -> Path:
    """``src`` with a hole of ``pad`` bytes inserted ``tail`` bytes before its end."""
    data = src.read_bytes()
    with dst.open("wb") as f:
        f.write(data[:len(data) - tail])
        f.seek(pad, 1)
        f.write(data[len(data) - tail:])
        f.truncate(len(data) + pad)
    return dst


@pytest.mark.parametrize(("ext", "tail", "kind"), [("jpg", 2, "JPEG"), ("exr", 0, "OpenEXR")])
def test_a_real_image_padded_to_512_mib_is_refused(real_files: dict[str, Path],
                                                   tmp_path: Path, ext: str, tail: int,
                                                   kind: str) -> None:
    path = _pad_before_end(real_files[ext], tmp_path / f"frame.{ext}", tail, 512 << 20)
    assert f"too large for a 66x38 {kind}" in _reason(path)


def test_a_video_above_the_configured_cap_is_refused(real_files: dict[str, Path]) -> None:
    size = real_files["mp4"].stat().st_size
    verify_output(real_files["mp4"], max_video_bytes=size)
    with pytest.raises(OperationFailed, match="more than the .* bytes a video may have"):
        verify_output(real_files["mp4"], max_video_bytes=size - 1)


def test_a_deep_exr_is_refused(real_files: dict[str, Path], tmp_path: Path) -> None:
    data = bytearray(real_files["exr"].read_bytes())
    data[5] |= 0x08  # version flags: deep data
    assert "deep OpenEXR" in _reason(_copy(real_files["exr"], tmp_path / "d.exr", bytes(data)))


def test_a_jpeg_without_a_frame_header_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "x.jpg"
    path.write_bytes(b"\xff\xd8\xff\xda\x00\x08" + bytes(6) + b"\xff\xd9")
    assert "no frame header" in _reason(path)
