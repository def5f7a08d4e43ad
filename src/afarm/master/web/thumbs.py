# SPDX-License-Identifier: MIT
"""Thumbnails of published frames, made with ffmpeg on the master and cached by content.

A thumbnail is named by the sha256 of its frame, so a frame rendered again gets a new one
and two jobs with the same frame share it. ffmpeg runs as an argv list (no shell), with a
time limit, a bounded input size and at most a few at a time, so a page of a thousand
frames cannot start a thousand processes.

The frames come from slaves, and a compromised slave can publish anything under a frame's
name. ffmpeg left to itself picks its demuxer by probing the content, so a "frame.png" that
is an HLS playlist or an ffconcat script would make it read other files of the master (other
jobs' outputs) into the thumbnail this page serves. So the input is read only by the image2
demuxer, as the one picture its name says (no pattern, no glob), and only through the file
protocol; names without a picture's extension get no thumbnail at all.
"""

import asyncio
import hashlib
import os
from pathlib import Path

from afarm.errors import OperationFailed

IMAGE_EXTS = frozenset({"png", "jpg", "jpeg", "exr", "tif", "tiff", "webp", "bmp", "tga"})
VIDEO_EXTS = frozenset({"mp4", "webm", "mkv", "mov"})
WIDTH = 320
MAX_SOURCE = 512 << 20  # a frame larger than this gets no thumbnail
TIMEOUT = 30.0


def kind_of(name: str) -> str:
    """"image", "video" or "file", by the name's extension."""
    ext = name.rsplit(".", 1)[-1].lower() if "." in name else ""
    return "image" if ext in IMAGE_EXTS else "video" if ext in VIDEO_EXTS else "file"


def must_be_picture(src: Path) -> None:
    if kind_of(src.name) != "image":
        raise OperationFailed(f"{src.name} is no picture (by its name); thumbnails are made"
                              " of " + ", ".join(sorted(IMAGE_EXTS)) + " files only")


def thumb_argv(ffmpeg: str, src: Path, dst: Path) -> list[str]:
    must_be_picture(src)
    # -nostdin: never read the master's stdin; the input is a plain file path (the "file:"
    # prefix keeps ffmpeg from reading a name as a protocol such as concat: or http:), read
    # by the image2 demuxer as one picture decoded by its extension's codec, never probed
    # (an HLS playlist or ffconcat script in a .png fails to decode), and whatever the
    # input names, only files may be opened.
    # No -y: `dst` is a fresh temporary name, removed first by the caller.
    return [ffmpeg, "-nostdin", "-v", "error", "-protocol_whitelist", "file",
            "-f", "image2", "-pattern_type", "none", "-i", f"file:{src}",
            "-vf", f"scale='min({WIDTH},iw)':-2", "-frames:v", "1", "-q:v", "4",
            "-f", "image2", f"file:{dst}"]


class Thumbnails:
    """Makes and caches thumbnails under ``root`` (one per frame content)."""

    def __init__(self, root: Path, ffmpeg: str = "/usr/bin/ffmpeg", parallel: int = 2) -> None:
        self.root = root
        self.ffmpeg = ffmpeg
        self._slots = asyncio.Semaphore(parallel)
        # (path, size, mtime) -> sha256, so a page view does not read every frame again
        self._shas: dict[tuple[str, int, int], str] = {}

    def _sha(self, src: Path) -> str:
        st = src.stat()
        if st.st_size > MAX_SOURCE:
            raise OperationFailed(f"{src.name} is {st.st_size} bytes; thumbnails are made of"
                                  f" frames up to {MAX_SOURCE} bytes")
        key = (str(src), st.st_size, st.st_mtime_ns)
        sha = self._shas.get(key)
        if sha is None:
            h = hashlib.sha256()
            with open(src, "rb") as f:
                while chunk := f.read(1 << 20):
                    h.update(chunk)
            sha = h.hexdigest()
            if len(self._shas) > 100_000:
                self._shas.clear()
            self._shas[key] = sha
        return sha

    async def get(self, src: Path) -> Path:
        """The thumbnail (JPEG) of ``src``, made now if it is not cached."""
        must_be_picture(src)  # before reading it at all
        loop = asyncio.get_running_loop()
        sha = await loop.run_in_executor(None, self._sha, src)
        dst = self.root / sha[:2] / f"{sha}.jpg"
        if dst.is_file():
            return dst
        dst.parent.mkdir(parents=True, exist_ok=True)
        tmp = dst.with_name(f".{sha}.{os.getpid()}.{id(src)}.jpg")
        async with self._slots:
            if dst.is_file():  # made while this one waited
                return dst
            tmp.unlink(missing_ok=True)  # left by a killed master
            proc = await asyncio.create_subprocess_exec(
                *thumb_argv(self.ffmpeg, src, tmp), stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
            try:
                _, err = await asyncio.wait_for(proc.communicate(), TIMEOUT)
            except TimeoutError:
                proc.kill()
                await proc.wait()
                tmp.unlink(missing_ok=True)
                raise OperationFailed(f"ffmpeg took over {TIMEOUT:g} s for a thumbnail of"
                                      f" {src.name}") from None
            if proc.returncode != 0 or not tmp.is_file():
                tmp.unlink(missing_ok=True)
                raise OperationFailed(f"ffmpeg could not make a thumbnail of {src.name}:"
                                      f" {err.decode(errors='replace')[-300:].strip()}")
            os.replace(tmp, dst)
        return dst
