# SPDX-License-Identifier: MIT
"""Stitching against a compromised slave, with the real ffmpeg: a "tile" whose content is
an HLS playlist or an ffconcat script naming another file of the master must not put that
file's pixels into the stitched frame."""

import shutil
import subprocess
from pathlib import Path

import pytest

from afarm.applications.stitch import stitch_argv

FFMPEG = shutil.which("ffmpeg") or "/usr/bin/ffmpeg"


def paint(path: Path, colour: str) -> None:
    subprocess.run([FFMPEG, "-nostdin", "-v", "error", "-y", "-f", "lavfi", "-i",
                    f"color=c={colour}:s=32x18", "-frames:v", "1", str(path)], check=True)


def red_minus_blue(png: Path) -> int:
    raw = subprocess.run([FFMPEG, "-nostdin", "-v", "error", "-i", str(png), "-f", "rawvideo",
                          "-pix_fmt", "rgb24", "-"], check=True, capture_output=True).stdout
    return (sum(raw[0::3]) - sum(raw[2::3])) // (len(raw) // 3)


@pytest.mark.parametrize("kind", ["hls", "concat"])
def test_a_tile_that_is_really_a_playlist_fails_the_stitch_instead_of_leaking(
        tmp_path: Path, kind: str) -> None:
    other, job = tmp_path / "other", tmp_path / "job"
    other.mkdir()
    job.mkdir()
    paint(other / "secret.mp4", "red")
    paint(other / "secret.png", "red")
    paint(job / "tile_1.png", "black")
    fake = job / "tile_0.png"
    if kind == "hls":
        fake.write_text("#EXTM3U\n#EXT-X-TARGETDURATION:1\n#EXTINF:1,\n"
                        f"{other / 'secret.mp4'}\n#EXT-X-ENDLIST\n")
    else:
        (job / "beside.png").symlink_to(other / "secret.png")
        fake.write_text("ffconcat version 1.0\nfile beside.png\n")
    # The attack is real: with ffmpeg probing the content, the secret is stitched in.
    leaked = tmp_path / "leaked.png"
    subprocess.run([FFMPEG, "-nostdin", "-v", "error", "-i", str(fake), "-i",
                    str(job / "tile_1.png"), "-filter_complex", "hstack=inputs=2",
                    "-frames:v", "1", "-update", "1", str(leaked)], check=True)
    assert red_minus_blue(leaked) > 0
    out = tmp_path / "stitched.png"
    done = subprocess.run(stitch_argv(FFMPEG, [str(fake), str(job / "tile_1.png")], 2, 1,
                                      str(out)), capture_output=True)  # noqa: S603
    assert done.returncode != 0
    assert not out.exists() or red_minus_blue(out) <= 0
