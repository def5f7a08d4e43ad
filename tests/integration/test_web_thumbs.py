# SPDX-License-Identifier: MIT
"""Thumbnails against a compromised slave, with the real ffmpeg: a published "frame.png"
whose content is an HLS playlist or an ffconcat script naming another file of the master
must not turn that file into the thumbnail the page serves."""

import asyncio
import shutil
import subprocess
from pathlib import Path

import pytest

from afarm.errors import OperationFailed
from afarm.master.web.thumbs import Thumbnails, thumb_argv

FFMPEG = shutil.which("ffmpeg") or "/usr/bin/ffmpeg"


def paint(path: Path, colour: str) -> None:
    subprocess.run([FFMPEG, "-nostdin", "-v", "error", "-y", "-f", "lavfi", "-i",
                    f"color=c={colour}:s=64x36", "-frames:v", "1", str(path)], check=True)


def mean_red_minus_blue(jpeg: Path) -> int:
    """How red the picture is (a red secret gives a large positive number)."""
    raw = subprocess.run([FFMPEG, "-nostdin", "-v", "error", "-i", str(jpeg), "-f", "rawvideo",
                          "-pix_fmt", "rgb24", "-"], check=True, capture_output=True).stdout
    n = len(raw) // 3
    return (sum(raw[0::3]) - sum(raw[2::3])) // n


@pytest.fixture
def attack(tmp_path: Path) -> dict[str, Path]:
    """Another job's red outputs (the secret), and a job's frames that are really scripts."""
    other, job = tmp_path / "jobs/1/out", tmp_path / "jobs/2/out"
    other.mkdir(parents=True)
    job.mkdir(parents=True)
    paint(other / "secret.mp4", "red")
    paint(job / "blue.png", "blue")
    hls = job / "frame_0001.png"
    hls.write_text("#EXTM3U\n#EXT-X-TARGETDURATION:1\n#EXTINF:1,\n"
                   f"{other / 'secret.mp4'}\n#EXT-X-ENDLIST\n")
    # ffconcat opens names beside it, and a slave may publish a link beside it.
    paint(other / "secret.png", "red")
    (job / "beside.png").symlink_to(other / "secret.png")
    concat = job / "frame_0002.png"
    concat.write_text("ffconcat version 1.0\nfile beside.png\n")
    return {"hls": hls, "concat": concat, "blue": job / "blue.png", "root": tmp_path}


@pytest.mark.parametrize("kind", ["hls", "concat"])
def test_a_frame_that_is_really_a_playlist_yields_no_thumbnail_of_the_file_it_names(
        attack: dict[str, Path], kind: str) -> None:
    src = attack[kind]
    # The attack is real: ffmpeg left to probe the content renders the secret.
    leaked = attack["root"] / "leaked.jpg"
    subprocess.run([FFMPEG, "-nostdin", "-v", "error", "-y", "-i", f"file:{src}",
                    "-frames:v", "1", str(leaked)], check=True)
    assert mean_red_minus_blue(leaked) > 100
    thumbs = Thumbnails(attack["root"] / "thumbs", FFMPEG)
    with pytest.raises(OperationFailed, match=f"could not make a thumbnail of {src.name}"):
        asyncio.run(thumbs.get(src))
    assert list((attack["root"] / "thumbs").rglob("*.jpg")) == []


def test_a_real_frame_still_gets_its_thumbnail(attack: dict[str, Path]) -> None:
    thumb = asyncio.run(Thumbnails(attack["root"] / "thumbs", FFMPEG).get(attack["blue"]))
    assert thumb.read_bytes()[:2] == b"\xff\xd8" and mean_red_minus_blue(thumb) < -100


def test_a_name_that_is_no_picture_gets_no_thumbnail_and_is_not_read(tmp_path: Path) -> None:
    for name in ("frame.m3u8", "frame.txt", "frame.mp4", "frame"):
        src = tmp_path / name
        src.write_text("#EXTM3U\n")
        with pytest.raises(OperationFailed, match="no picture"):
            asyncio.run(Thumbnails(tmp_path / "thumbs", FFMPEG).get(src))
        with pytest.raises(OperationFailed, match="no picture"):
            thumb_argv(FFMPEG, src, tmp_path / "t.jpg")


def test_ffmpeg_gets_a_forced_image_demuxer_and_only_the_file_protocol() -> None:
    argv = thumb_argv(FFMPEG, Path("/j/out/frame_%04d.exr"), Path("/t/a.jpg"))
    i = argv.index("-i")
    before = argv[:i]
    assert before[before.index("-f") + 1] == "image2"
    assert before[before.index("-pattern_type") + 1] == "none"
    assert before[before.index("-protocol_whitelist") + 1] == "file"
    assert argv[i + 1] == "file:/j/out/frame_%04d.exr"
