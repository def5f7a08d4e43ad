# SPDX-License-Identifier: MIT
"""The quick .blend check afarmctl and the master run before any slave sees a file."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest

from afarm.project.header import ZSTD, ZSTD_SEEKABLE, BadBlend, StreamCheck, check_file

BLEND = b"BLENDER-v304" + b"REND" + bytes(2000) + b"ENDB" + bytes(20)


def streamed(data: bytes, step: int) -> None:
    check = StreamCheck("the upload")
    for i in range(0, len(data), step):
        check.feed(data[i:i + step])
    check.done()


@pytest.mark.parametrize("step", [1, 7, 1 << 20])
def test_a_complete_plain_gzip_or_zstd_blend_passes_whole_and_streamed(tmp_path: Path,
                                                                        step: int) -> None:
    for name, data in (("plain", BLEND), ("gzip", gzip.compress(BLEND)),
                       ("zstd", ZSTD + bytes(100) + ZSTD_SEEKABLE)):
        path = tmp_path / f"{name}.blend"
        path.write_bytes(data)
        check_file(path)
        streamed(data, step)


@pytest.mark.parametrize(("data", "why"), [
    (BLEND[:len(BLEND) // 2], "truncated"),
    (gzip.compress(BLEND)[:-30], "truncated"),
    (gzip.compress(b"not a blend at all" * 10), "not a .blend"),
    (b"\x1f\x8b" + bytes(100), "gzip-compressed but corrupt"),
    (ZSTD + bytes(100), "seek table"),
    (b"\xfd7zXZ\x00" + bytes(100), "xz"),
    (b"PK\x03\x04" + bytes(100), "zip"),
    (b"hello world, this is text and not Blender at all", "not a .blend"),
    (b"BLEND", "not a .blend file: it is 5 bytes, too short"),
    (b"", "too short"),
])
def test_a_broken_or_foreign_file_is_refused_saying_why(tmp_path: Path, data: bytes,
                                                        why: str) -> None:
    path = tmp_path / "x.blend"
    path.write_bytes(data)
    with pytest.raises(BadBlend, match=why):
        check_file(path)
    with pytest.raises(BadBlend, match=why):
        streamed(data, 5)


def _gzip_bomb(path: Path, zeros: int) -> bytes:
    """A complete gzip .blend that inflates to `zeros` bytes more than it is long."""
    import zlib
    c = zlib.compressobj(9, zlib.DEFLATED, 31)
    parts = [c.compress(BLEND[:-24])]
    block = bytes(1 << 20)
    for _ in range(zeros >> 20):
        parts.append(c.compress(block))
    parts.append(c.compress(BLEND[-24:]) + c.flush())
    data = b"".join(parts)
    path.write_bytes(data)
    return data


def test_a_gzip_bomb_is_checked_in_bounded_memory(tmp_path: Path) -> None:
    # ~130 KB that inflate to 128 MiB: the master checks each upload chunk as it arrives
    # (and afarmctl a .blend from anywhere); neither may hold a chunk's whole inflation.
    import tracemalloc
    data = _gzip_bomb(tmp_path / "bomb.blend", 128 << 20)
    assert len(data) < 1 << 20
    for check in (lambda: check_file(tmp_path / "bomb.blend"),
                  lambda: streamed(data, 1 << 20)):
        tracemalloc.start()
        try:
            check()  # a complete file: it passes
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert peak < 16 << 20, f"peak {peak >> 20} MiB while checking"
