# SPDX-License-Identifier: MIT
"""Cheap checks that a task's output file is what its name says, before it is accepted.

A render that crashed, ran out of disk or was cut off by a lost connection often leaves a
file that exists but is empty or truncated; these checks read only headers and chunk
boundaries (a few hundred bytes per file), never decode pixels.

A lying slave can also send a file far larger than its kind allows (a 512 MiB "PNG" of
64x36 pixels, padded with valid chunks). An image may be at most what its header's
resolution needs uncompressed (width x height x channels x bytes per channel) plus
generous room for compression overhead and metadata; a video at most ``max_video_bytes``.
The size is checked before anything else, so no huge file is walked.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from afarm.errors import OperationFailed

MIB = 1 << 20
# Above the pixels: metadata (text chunks, ICC profiles, EXIF, EXR attributes) and the
# per-chunk, per-line and per-tile framing, which never come near this for a real render.
IMAGE_METADATA = 16 * MIB
# Compression can grow incompressible data a little (stored deflate blocks, JPEG of noise
# at quality 100, EXR blocks that fall back to raw): twice the raw pixels is generous.
IMAGE_FACTOR = 2
# A video's cap: no header names a size before the whole file is parsed. 64 GiB is hours
# of 4K at a high bit rate; callers pass the configured cap.
DEFAULT_MAX_VIDEO_BYTES = 64 << 30

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


def _bound(path: Path, size: int, kind: str, width: int, height: int, pixel_bits: int,
           pixels: str, copies: int = 1, framing: int = 0) -> None:
    """Refuse a file larger than its resolution allows.

    ``copies``: how many times the pixels may be stored (EXR mip/rip levels, parts);
    ``framing``: bytes of per-line or per-tile tables and headers beyond the metadata room.
    """
    raw = copies * height * ((width * pixel_bits + 7) // 8 + 1)  # +1: PNG's filter byte
    limit = IMAGE_FACTOR * raw + IMAGE_METADATA + framing
    if size > limit:
        raise _fail(path, f"{size} bytes is too large for a {width}x{height} {kind} of "
                          f"{pixels}: at most {limit} bytes are accepted (the pixels "
                          f"uncompressed, twice, plus {IMAGE_METADATA >> 20} MiB), so it "
                          "is refused")


# Colour type -> channels; bit depth is per channel (a palette index for type 3).
_PNG_CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}


def _check_png(path: Path, f: BinaryIO, size: int) -> None:
    if f.read(8) != _PNG_SIGNATURE:
        raise _fail(path, "not a PNG file (bad signature)")
    width, height, depth, colour = _read_ihdr(path, f)
    channels = _PNG_CHANNELS.get(colour)
    if channels is None or depth not in (1, 2, 4, 8, 16):
        raise _fail(path, f"PNG has an invalid colour type {colour} or bit depth {depth}")
    _bound(path, size, "PNG", width, height, channels * depth,
           f"{channels} channels of {depth} bits")
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


def _read_ihdr(path: Path, f: BinaryIO) -> tuple[int, int, int, int]:
    header = f.read(8 + _IHDR_LENGTH)
    if len(header) < 8 + _IHDR_LENGTH:
        raise _fail(path, "truncated PNG: no complete IHDR chunk")
    length, kind = struct.unpack(">I4s", header[:8])
    if kind != b"IHDR" or length != _IHDR_LENGTH:
        raise _fail(path, f"PNG does not start with an IHDR chunk (found {kind!r})")
    width, height, depth, colour = struct.unpack(">IIBB", header[8:18])
    if width == 0 or height == 0:
        raise _fail(path, f"PNG has a zero size ({width}x{height})")
    return width, height, depth, colour


_EXR_TILED, _EXR_DEEP, _EXR_MULTIPART = 0x200, 0x800, 0x1000
_EXR_PIXEL_BYTES = {0: 4, 1: 2, 2: 4}  # UINT, HALF, FLOAT
_EXR_LEVELS = {0: 1, 1: 2, 2: 4}  # one level; mipmaps (< 4/3); ripmaps (< 4)


def _check_exr(path: Path, f: BinaryIO, size: int) -> None:
    if f.read(4) != _EXR_MAGIC:
        raise _fail(path, "not an OpenEXR file (bad magic number)")
    head = f.read(4)
    if len(head) < 4:
        raise _fail(path, "truncated OpenEXR: no version field")
    (flags,) = struct.unpack("<I", head)
    if flags & _EXR_DEEP:
        raise _fail(path, "deep OpenEXR is not accepted (its size has no bound by resolution)")
    # Headers sit at the start; whatever does not fit in the metadata room is no header.
    data = f.read(min(size, IMAGE_METADATA))
    pos, parts = 0, []
    while True:
        header, pos = _exr_header(path, data, pos)
        if not header:
            break
        parts.append(header)
        if not flags & _EXR_MULTIPART:
            break
    if not parts:
        raise _fail(path, "OpenEXR has no header")
    for n, attrs in enumerate(parts, start=1):
        _bound_exr_part(path, size, attrs, bool(flags & _EXR_TILED), len(parts), n)


def _exr_header(path: Path, data: bytes, pos: int) -> tuple[dict[str, bytes], int]:
    """One header's attributes {name: value} and where the next header starts."""
    attrs: dict[str, bytes] = {}
    while True:
        end = data.find(b"\0", pos)
        if end < 0:
            raise _fail(path, f"OpenEXR header does not end in the first {len(data)} bytes")
        name = data[pos:end].decode("latin-1")
        pos = end + 1
        if not name:
            return attrs, pos
        end = data.find(b"\0", pos)
        if end < 0 or end + 5 > len(data):
            raise _fail(path, f"OpenEXR header cut off in attribute {name!r}")
        (length,) = struct.unpack("<i", data[end + 1:end + 5])
        pos = end + 5
        if length < 0 or pos + length > len(data):
            raise _fail(path, f"OpenEXR attribute {name!r} claims {length} bytes")
        attrs[name] = data[pos:pos + length]
        pos += length


def _bound_exr_part(path: Path, size: int, attrs: dict[str, bytes], tiled: bool,
                    parts: int, n: int) -> None:
    where = f" (part {n})" if parts > 1 else ""
    window, chlist = attrs.get("dataWindow", b""), attrs.get("channels", b"")
    if len(window) != 16 or not chlist:
        raise _fail(path, f"OpenEXR header{where} lacks dataWindow or channels")
    xmin, ymin, xmax, ymax = struct.unpack("<iiii", window)
    width, height = xmax - xmin + 1, ymax - ymin + 1
    if width <= 0 or height <= 0:
        raise _fail(path, f"OpenEXR has an empty data window{where} ({width}x{height})")
    bits, channels, pos = 0, 0, 0
    while pos < len(chlist) and chlist[pos:pos + 1] != b"\0":
        end = chlist.find(b"\0", pos)
        if end < 0 or end + 17 > len(chlist):
            raise _fail(path, f"OpenEXR channel list{where} is cut off")
        kind, _, xs, ys = struct.unpack("<iB3xii", chlist[end + 1:end + 17])
        if kind not in _EXR_PIXEL_BYTES or xs < 1 or ys < 1:
            raise _fail(path, f"OpenEXR channel{where} has a bad type or sampling")
        # Subsampled channels store fewer pixels; round up to stay generous.
        bits += -(-_EXR_PIXEL_BYTES[kind] * 8 // (xs * ys))
        channels += 1
        pos = end + 17
    copies, framing = parts, 16 * height * parts  # line offsets and block headers
    if tiled:
        tiles = attrs.get("tiles", b"")
        if len(tiles) != 9:
            raise _fail(path, f"tiled OpenEXR{where} lacks its tile description")
        tx, ty, mode = struct.unpack("<IIB", tiles)
        levels = _EXR_LEVELS.get(mode & 0x0F)
        if levels is None or tx == 0 or ty == 0:
            raise _fail(path, f"OpenEXR tile description{where} is invalid")
        copies *= levels
        framing = 28 * levels * parts * (-(-width // tx)) * (-(-height // ty))
    _bound(path, size, "OpenEXR", width, height, bits, f"{channels} channels{where}",
           copies=copies, framing=framing)


# Start-of-frame markers (all but DHT C4, JPG C8, DAC CC) carry the size.
_JPEG_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
_JPEG_MAX_SEGMENTS = 4096  # a real file has a dozen before its frame header


def _check_jpeg(path: Path, f: BinaryIO, size: int) -> None:
    if f.read(2) != _JPEG_START:
        raise _fail(path, "not a JPEG file (no FF D8 start-of-image marker)")
    f.seek(size - 2)
    if f.read(2) != _JPEG_END:
        raise _fail(path, "truncated JPEG: no FF D9 end-of-image marker at the end")
    f.seek(2)
    data = f.read(min(size, IMAGE_METADATA))
    pos = 0
    for _ in range(_JPEG_MAX_SEGMENTS):
        while data[pos:pos + 2] == b"\xff\xff":  # fill bytes
            pos += 1
        if len(data) < pos + 4 or data[pos] != 0xFF:
            raise _fail(path, f"JPEG has no frame header (bad segment at byte {pos + 2})")
        marker = data[pos + 1]
        (length,) = struct.unpack(">H", data[pos + 2:pos + 4])
        if marker in _JPEG_SOF:
            if length < 8 or len(data) < pos + 10:
                raise _fail(path, "truncated JPEG frame header")
            bits, height, width, channels = struct.unpack(">BHHB", data[pos + 4:pos + 10])
            if not width or not height or not channels:
                raise _fail(path, f"JPEG has a zero size ({width}x{height}, "
                                  f"{channels} components)")
            _bound(path, size, "JPEG", width, height, channels * max(bits, 8),
                   f"{channels} components of {bits} bits")
            break
        if marker == 0xDA or length < 2:
            raise _fail(path, "JPEG has no frame header before its scan")
        pos += 2 + length
    else:
        raise _fail(path, f"JPEG has no frame header in its first {_JPEG_MAX_SEGMENTS} "
                          "segments")


def _check_mp4(path: Path, f: BinaryIO, size: int, max_bytes: int) -> None:
    if size > max_bytes:
        raise _fail(path, f"{size} bytes is more than the {max_bytes} bytes a video may "
                          "have (the configured cap), so it is refused")
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


_CHECKS: dict[str, Callable[..., None]] = {
    ".png": _check_png,
    ".exr": _check_exr,
    ".jpg": _check_jpeg,
    ".jpeg": _check_jpeg,
    ".mp4": _check_mp4,
    ".m4v": _check_mp4,
    ".mov": _check_mp4,
}


def verify_output(path: Path, max_video_bytes: int = DEFAULT_MAX_VIDEO_BYTES) -> None:
    """Raise OperationFailed unless `path` is a plausible, complete file of its kind.

    Images and videos (by extension, case-insensitive) must be non-empty with a matching
    header and, where the format allows a cheap check, an intact end, and no larger than
    their resolution (images) or ``max_video_bytes`` (videos) allows. Any other file only
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
            if check is _check_mp4:
                _check_mp4(path, f, size, max_video_bytes)
            else:
                check(path, f, size)
    except OSError as error:
        raise _fail(path, f"cannot be read: {error.strerror or error}") from error


def image_size(path: Path) -> tuple[int, int]:
    """(width, height) of a PNG, read from its IHDR chunk."""
    try:
        with path.open("rb") as f:
            if f.read(8) != _PNG_SIGNATURE:
                raise _fail(path, "not a PNG file (bad signature)")
            width, height, _, _ = _read_ihdr(path, f)
            return width, height
    except OSError as error:
        raise _fail(path, f"cannot be read: {error.strerror or error}") from error
