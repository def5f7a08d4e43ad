# SPDX-License-Identifier: MIT
"""`afarmctl demo`: a real render on an embedded farm, and a clean stop on Ctrl-C."""

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.farm import ENV
from tests.integration.test_blender_jobs import frame_count

pytestmark = pytest.mark.slow


def demo_argv(*args: str) -> list[str]:
    return [sys.executable, "-m", "afarm.cli.main", "demo", *args]


def demo_env(tmp_path: Path) -> dict[str, str]:
    """The demo's farm directory under tmp_path (so other demo runs on this machine are not
    mistaken for this one's leftovers), and stdout a plain buffered pipe as under `make
    test`: PYTHONUNBUFFERED, if the caller's shell sets it, would hide a missing flush."""
    (tmp_path / "tmp").mkdir()
    env = {k: v for k, v in ENV.items() if k != "PYTHONUNBUFFERED"}
    return {**env, "TMPDIR": str(tmp_path / "tmp")}


def processes_mentioning(text: str) -> list[str]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            try:
                cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue
            if text in cmd:
                found.append(cmd)
    return found


def test_the_demo_renders_frames_and_an_mp4_and_says_where(tmp_path: Path) -> None:
    out = tmp_path / "result"
    cp = subprocess.run(demo_argv("--frames", "6", "--size", "64x36", "--samples", "2",
                                  "--slaves", "3", "-o", str(out)),
                        capture_output=True, text=True, env=demo_env(tmp_path), timeout=600,
                        check=False)
    assert cp.returncode == 0, cp.stdout + cp.stderr
    frames = sorted(out.glob("frame_*.png"))
    assert len(frames) == 6
    video = Path(re.search(r"video:\s+(\S+)", cp.stdout).group(1))  # type: ignore[union-attr]
    assert video.is_file() and frame_count(video) == 6
    assert f"frames: {out}/" in cp.stdout and "rendered 6 frames on 3 slaves" in cp.stdout
    assert "6/6 frames 100%" in cp.stderr  # the progress bar
    assert not processes_mentioning(f"{tmp_path}/tmp/afarm-demo-")


def test_ctrl_c_stops_everything_the_demo_started(tmp_path: Path) -> None:
    farm = f"{tmp_path}/tmp/afarm-demo-"
    proc = subprocess.Popen(demo_argv("--frames", "48", "--size", "320x180", "-o",
                                      str(tmp_path / "out")),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            env=demo_env(tmp_path), start_new_session=True)
    assert proc.stdout is not None
    seen = b""
    deadline = time.monotonic() + 120
    while b"tasks + an mp4 encode" not in seen:
        assert time.monotonic() < deadline, seen
        seen += proc.stdout.readline()
    time.sleep(1.5)  # mid-render
    # A signal to a demo that already ended would "pass" with its exit code 0.
    assert proc.poll() is None, "the demo ended before Ctrl-C:\n" + seen.decode()
    assert processes_mentioning(farm)
    os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in a terminal does
    assert proc.wait(timeout=60) == 130
    deadline = time.monotonic() + 15
    while processes_mentioning(farm):
        assert time.monotonic() < deadline, processes_mentioning(farm)
        time.sleep(0.1)
    assert not list((tmp_path / "tmp").iterdir())
