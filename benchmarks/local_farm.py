#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""Measure the embedded local farm in one run and print the figures.

(a) Per-task overhead of the farm (master, dispatch, collection) on a `command` job of many
    short fixed-length tasks, against the ideal makespan: tasks x sleep / slaves.
(b) Wall time of the demo scene rendered on the farm against one `blender -b ... -f N` loop
    over the same frames on this machine (the way a user renders without a farm), and
    against one Blender process rendering the whole range with -a.
"""

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src"), str(ROOT)]

from tests.farm import MasterProcess  # noqa: E402

from afarm.cli.demo import make_scene  # noqa: E402


def overhead(base: Path, slaves: int, tasks: int, sleep: float) -> dict[str, float]:
    farm = MasterProcess(base, slaves=slaves, apps={
        "sleep": "kind = command\nexecutable = /bin/sleep\nargv = {item},\n"
                 "capture_stdout = false\n"}).start()
    try:
        started = time.monotonic()
        job = farm.submit("--app", "sleep", "--items", ",".join([str(sleep)] * tasks))
        result = farm.wait(job)
        wall = time.monotonic() - started
        assert result["status"] == "completed", result["status"]
    finally:
        farm.stop()
    ideal = tasks * sleep / slaves
    return {"wall": wall, "ideal": ideal,
            "per_task_ms": (wall - ideal) / (tasks / slaves) * 1000}


def demo_vs_loop(base: Path, slaves: int, frames: int, size: tuple[int, int],
                 samples: int) -> dict[str, float]:
    base.mkdir(parents=True, exist_ok=True)
    scene = base / "scene.blend"
    make_scene(scene, frames, size, samples)
    blender = shutil.which("blender") or "blender"
    out = base / "loop"
    out.mkdir()
    started = time.monotonic()
    for f in range(1, frames + 1):
        subprocess.run([blender, "-b", "-Y", str(scene), "-E", "CYCLES", "-o",
                        str(out / "frame_####"), "-F", "PNG", "-f", str(f)],
                       capture_output=True, check=True)
    loop = time.monotonic() - started
    # Also the best a single machine does: one Blender process for the whole range.
    started = time.monotonic()
    subprocess.run([blender, "-b", "-Y", str(scene), "-E", "CYCLES", "-o",
                    str(out / "anim_####"), "-F", "PNG", "-s", "1", "-e", str(frames), "-a"],
                   capture_output=True, check=True)
    single = time.monotonic() - started

    farm = MasterProcess(base / "farm", slaves=slaves).start()
    try:
        chunk = max(1, frames // (slaves * 4))
        started = time.monotonic()
        job = farm.submit(str(scene), "--frames", f"1-{frames}", "--chunk", str(chunk))
        result = farm.wait(job)
        wall = time.monotonic() - started
        assert result["status"] == "completed", result["status"]
    finally:
        farm.stop()
    return {"loop": loop, "single": single, "farm": wall, "chunk": chunk}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--slaves", type=int, default=2)
    p.add_argument("--tasks", type=int, default=200)
    p.add_argument("--sleep", type=float, default=0.05)
    p.add_argument("--frames", type=int, default=24)
    p.add_argument("--samples", type=int, default=8)
    a = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="afarm-bench-") as tmp:
        base = Path(tmp)
        o = overhead(base / "overhead", a.slaves, a.tasks, a.sleep)
        print(f"(a) {a.tasks} tasks of {a.sleep * 1000:.0f} ms on {a.slaves} local slaves:"
              f" makespan {o['wall']:.2f} s, ideal {o['ideal']:.2f} s,"
              f" overhead {o['per_task_ms']:.1f} ms per task"
              f" ({o['wall'] / o['ideal']:.2f}x ideal)")
        d = demo_vs_loop(base / "demo", a.slaves, a.frames, (320, 180), a.samples)
        print(f"(b) demo scene, {a.frames} frames 320x180: farm of {a.slaves} local slaves"
              f" (chunk {d['chunk']}) {d['farm']:.1f} s vs one blender -f loop"
              f" {d['loop']:.1f} s: {d['loop'] / d['farm']:.2f}x faster")
        print(f"    one Blender process rendering all {a.frames} frames (-a): {d['single']:.1f} s"
              f" ({d['single'] / d['farm']:.2f}x the farm's time; the local slaves share this"
              " machine's cores, so only more machines make a farm beat it)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
