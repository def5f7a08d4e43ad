# SPDX-License-Identifier: MIT
"""Cheap checks that a task's output file is what its name says, before it is accepted.

A render that crashed, ran out of disk or was cut off by a lost connection often leaves a
file that exists but is empty or truncated; these checks read only headers and chunk
boundaries (a few hundred bytes per file), never decode pixels.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from afarm.errors import OperationFailed

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_EXR_MAGIC = b"\x76\x2f\x31\x01"
_JPEG_START = b"\xff\xd8"
_JPEG_END = b"\xff\xd9"
# A PNG chunk: 4-byte length, 4-byte type, data, 4-byte CRC.
_CHUNK_OVERHEAD = 12
# IHDR data is 13 bytes; width and height are its first two big-endian uint32s.
_IHDR_LENGTH = 13


def _fail(path: Path, reason: str) -> OperationFailed:
    return OperationFailed(f"output {path}: {reason}")


def _check_png(path: Path, f: BinaryIO, size: int) -> None:
    if f.read(8) != _PNG_SIGNATURE:
        raise _fail(path, "not a PNG file (bad signature)")
    _read_ihdr(path, f)
    # Walk the chunk boundaries by seeking: a file cut off anywhere (also inside an IDAT,
    # which a look at the last 12 bytes alone could miss if the cut fell on a boundary)
    # fails to end with IEND exactly at end of file.
    offset = 8
    while True:
        f.seek(offset)
        header = f.read(8)
        if len(header) < 8:
            raise _fail(path, f"truncated PNG: no IEND chunk ({size} bytes)")
        length, kind = struct.unpack(">I4s", header)
        end = offset + _CHUNK_OVERHEAD + length
        if end > size:
            raise _fail(path, f"truncated PNG: chunk {kind!r} at byte {offset} needs {end} "
                              f"bytes, the file has {size}")
        if kind == b"IEND":
            if end != size:
                raise _fail(path, f"{size - end} stray bytes after the PNG's IEND chunk")
            return
        offset = end


def _read_ihdr(path: Path, f: BinaryIO) -> tuple[int, int]:
    header = f.read(8 + _IHDR_LENGTH)
    if len(header) < 8 + _IHDR_LENGTH:
        raise _fail(path, "truncated PNG: no complete IHDR chunk")
    length, kind = struct.unpack(">I4s", header[:8])
    if kind != b"IHDR" or length != _IHDR_LENGTH:
        raise _fail(path, f"PNG does not start with an IHDR chunk (found {kind!r})")
    width, height = struct.unpack(">II", header[8:16])
    if width == 0 or height == 0:
        raise _fail(path, f"PNG has a zero size ({width}x{height})")
    return width, height


def _check_exr(path: Path, f: BinaryIO, size: int) -> None:
    if f.read(4) != _EXR_MAGIC:
        raise _fail(path, "not an OpenEXR file (bad magic number)")


def _check_jpeg(path: Path, f: BinaryIO, size: int) -> None:
    if f.read(2) != _JPEG_START:
        raise _fail(path, "not a JPEG file (no FF D8 start-of-image marker)")
    f.seek(size - 2)
    if f.read(2) != _JPEG_END:
        raise _fail(path, "truncated JPEG: no FF D9 end-of-image marker at the end")


def _check_mp4(path: Path, f: BinaryIO, size: int) -> None:
    head = f.read(8)
    if len(head) < 8 or head[4:8] != b"ftyp":
        raise _fail(path, "not an MP4/MOV file (no 'ftyp' box at offset 4)")
    # Top-level boxes must tile the file exactly; an encoder killed mid-way leaves a box
    # that runs past the end, and one killed before finishing never wrote 'moov'.
    offset = 0
    kinds: set[bytes] = set()
    while offset < size:
        f.seek(offset)
        header = f.read(16)
        if len(header) < 8:
            raise _fail(path, f"truncated MP4: partial box header at byte {offset}")
        box_size, kind = struct.unpack(">I4s", header[:8])
        if box_size == 1:
            if len(header) < 16:
                raise _fail(path, f"truncated MP4: partial box header at byte {offset}")
            (box_size,) = struct.unpack(">Q", header[8:16])
        elif box_size == 0:
            box_size = size - offset
        if box_size < 8 or offset + box_size > size:
            raise _fail(path, f"truncated MP4: box {kind!r} at byte {offset} claims "
                              f"{box_size} bytes, the file has {size}")
        kinds.add(kind)
        offset += box_size
    if b"moov" not in kinds:
        raise _fail(path, "incomplete MP4: no 'moov' box (the encoder did not finish)")


_CHECKS: dict[str, Callable[[Path, BinaryIO, int], None]] = {
    ".png": _check_png,
    ".exr": _check_exr,
    ".jpg": _check_jpeg,
    ".jpeg": _check_jpeg,
    ".mp4": _check_mp4,
    ".m4v": _check_mp4,
    ".mov": _check_mp4,
}


def verify_output(path: Path) -> None:
    """Raise OperationFailed unless `path` is a plausible, complete file of its kind.

    Images and videos (by extension, case-insensitive) must be non-empty with a matching
    header and, where the format allows a cheap check, an intact end. Any other file only
    has to exist: a command's captured stdout may well be empty.
    """
    check = _CHECKS.get(path.suffix.lower())
    try:
        if not path.is_file():
            raise _fail(path, "missing" if not path.exists() else "not a regular file")
        if check is None:
            return
        with path.open("rb") as f:
            size = path.stat().st_size
            if size == 0:
                raise _fail(path, "empty file")
            check(path, f, size)
    except OSError as error:
        raise _fail(path, f"cannot be read: {error.strerror or error}") from error


def image_size(path: Path) -> tuple[int, int]:
    """(width, height) of a PNG, read from its IHDR chunk."""
    try:
        with path.open("rb") as f:
            if f.read(8) != _PNG_SIGNATURE:
                raise _fail(path, "not a PNG file (bad signature)")
            return _read_ihdr(path, f)
    except OSError as error:
        raise _fail(path, f"cannot be read: {error.strerror or error}") from error
