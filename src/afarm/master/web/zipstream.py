# SPDX-License-Identifier: MIT
"""A job's outputs as one zip, written to the client while it is read: never whole in memory."""

import zipfile
from collections.abc import AsyncIterator
from pathlib import Path

CHUNK = 1 << 20


class _Sink:
    """A write-only file for ZipFile that keeps what was written until it is taken."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []
        self.pos = 0

    def write(self, data: bytes) -> int:
        self.parts.append(bytes(data))
        self.pos += len(data)
        return len(data)

    def tell(self) -> int:
        return self.pos

    def flush(self) -> None:
        pass

    def take(self) -> bytes:
        data = b"".join(self.parts)
        self.parts.clear()
        return data


async def zip_chunks(files: list[tuple[str, Path]]) -> AsyncIterator[bytes]:
    """The zip of ``files`` (name in the archive, path), at most about CHUNK bytes at a
    time. Frames are already compressed, so entries are stored, not deflated."""
    sink = _Sink()
    with zipfile.ZipFile(sink, "w", zipfile.ZIP_STORED, allowZip64=True) as zf:  # type: ignore[call-overload]
        for name, path in files:
            try:
                src = open(path, "rb")  # noqa: SIM115
            except OSError:
                continue  # removed since it was listed
            with src, zf.open(name, "w", force_zip64=True) as dst:
                while chunk := src.read(CHUNK):
                    dst.write(chunk)
                    yield sink.take()
            yield sink.take()
    yield sink.take()
