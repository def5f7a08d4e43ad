# SPDX-License-Identifier: MIT
"""Is this a .blend file Blender can read, complete? A quick check without Blender or BAT,
run by afarmctl before it uploads and by the master on every uploaded .blend, so a
truncated, corrupt or foreign file is refused at submit, not on every slave.

Blender writes plain files (``BLENDER`` header, last block ``ENDB``), gzip (before 3.0) and
zstd (3.0 and later, always with a seek table whose footer ends the file). A gzip file is
decompressed as it is read (streamed), to see the Blender header inside and the ``ENDB``
block at its end.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator
from pathlib import Path

GZIP = b"\x1f\x8b"
ZSTD = b"\x28\xb5\x2f\xfd"
# The footer of zstd's seekable format (0x8F92EAB1, little-endian): Blender writes it last,
# and Blender reads no zstd file without it.
ZSTD_SEEKABLE = b"\xb1\xea\x92\x8f"
# Other compressions someone may have applied by hand; Blender reads none of them.
FOREIGN = {b"\xfd7zXZ\x00": "xz", b"BZh": "bzip2", b"\x04\x22\x4d\x18": "lz4",
           b"PK\x03\x04": "zip", b"\x89PNG": "PNG (an image, not a .blend)"}
TAIL = 64  # the last block header is at most 32 bytes
CHUNK = 1 << 20


class BadBlend(ValueError):
    """Not a complete .blend file Blender reads; the message says why and what to do."""


def _plain(head: bytes, tail: bytes, what: str) -> None:
    if not head.startswith(b"BLENDER"):
        raise BadBlend(f"{what} is not a .blend file (it does not start with Blender's"
                       " header); check that you gave the right file")
    if b"ENDB" not in tail[-TAIL:]:
        raise BadBlend(f"{what} is truncated or corrupt: it does not end with Blender's last"
                       " block (ENDB); save it again from Blender, or copy it again")


def check_bytes(head: bytes, tail: bytes, size: int, name: str = "the file") -> None:
    """Check an uncompressed or zstd file from its first and last bytes (the head needs 16
    bytes, the tail 64); gzip needs the whole stream (check_file)."""
    if size < 32:
        raise BadBlend(f"{name} is not a .blend file: it is {size} bytes, too short")
    if head.startswith(ZSTD):
        if not tail.endswith(ZSTD_SEEKABLE):
            raise BadBlend(f"{name} is zstd-compressed but truncated or not written by"
                           " Blender (no seek table at its end); Blender cannot read it:"
                           " save it again from Blender")
        return
    for magic, kind in FOREIGN.items():
        if head.startswith(magic):
            raise BadBlend(f"{name} is compressed with {kind}, which Blender does not read;"
                           " give the .blend Blender saved")
    _plain(head, tail, name)


def check_file(path: Path, name: str | None = None) -> None:
    """Raise BadBlend unless `path` is a complete .blend Blender can read."""
    what = name or str(path)
    with open(path, "rb") as f:
        head = f.read(16)
        if head.startswith(GZIP):
            _check_gzip(head, f, what)
            return
        f.seek(0, 2)
        size = f.tell()
        f.seek(max(0, size - TAIL))
        tail = f.read(TAIL)
    check_bytes(head, tail, size, what)


def _inflate(d: zlib._Decompress, data: bytes) -> Iterator[bytes]:
    """What ``data`` inflates to, CHUNK bytes at a time: deflate inflates up to ~1000
    times, so a small chunk of a gzip bomb must never be inflated in one piece. Called
    again with no input until nothing more comes (zlib may hold output back)."""
    while not d.eof:
        out = d.decompress(data, CHUNK)
        data = d.unconsumed_tail
        if not out and not data:
            return
        yield out


def _check_gzip(head: bytes, f: object, what: str) -> None:
    d = zlib.decompressobj(wbits=31)
    inner_head = b""
    tail = b""
    data = head
    try:
        while data:
            for out in _inflate(d, data):
                if len(inner_head) < 16:
                    inner_head += out[:16 - len(inner_head)]
                tail = (tail + out)[-TAIL:]
            if d.eof:
                break
            data = f.read(CHUNK)  # type: ignore[attr-defined]
    except zlib.error:
        raise BadBlend(f"{what} is gzip-compressed but corrupt; save it again from"
                       " Blender") from None
    if not d.eof:
        raise BadBlend(f"{what} is gzip-compressed but truncated; save it again from"
                       " Blender, or copy it again")
    _plain(inner_head, tail, what)


class StreamCheck:
    """The same check over an upload as it streams in (the master's file store): feed it
    every chunk, then call done()."""

    def __init__(self, name: str = "the upload") -> None:
        self.name = name
        self.head = b""
        self.tail = b""
        self.size = 0
        self.gzip: zlib._Decompress | None = None
        self.inner_head = b""
        self.error: str | None = None

    def feed(self, data: bytes) -> None:
        if self.error or not data:
            return
        self.size += len(data)
        if len(self.head) < 16:  # the kind is decided on the first 16 bytes
            self.head += data
            if len(self.head) < 16:
                return
            data, self.head = self.head, self.head[:16]
            if self.head.startswith(GZIP):
                self.gzip = zlib.decompressobj(wbits=31)
        self._consume(data)

    def _consume(self, data: bytes) -> None:
        if self.gzip is None:
            self.tail = (self.tail + data)[-TAIL:]
            return
        try:
            for out in _inflate(self.gzip, data):
                if len(self.inner_head) < 16:
                    self.inner_head += out[:16 - len(self.inner_head)]
                self.tail = (self.tail + out)[-TAIL:]
        except zlib.error:
            self.error = (f"{self.name} is gzip-compressed but corrupt; save it again"
                          " from Blender")

    def done(self) -> None:
        """Raise BadBlend unless what was fed is a complete .blend."""
        if self.error:
            raise BadBlend(self.error)
        if len(self.head) < 16:  # a tiny file: everything is still in head
            self.tail = self.head
        if self.gzip is not None:
            if not self.gzip.eof:
                raise BadBlend(f"{self.name} is gzip-compressed but truncated; save it again"
                               " from Blender, or copy it again")
            _plain(self.inner_head, self.tail, self.name)
            return
        check_bytes(self.head, self.tail, self.size, self.name)
