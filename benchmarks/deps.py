#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""Measure how long afarmctl takes to find and lay out the files of a 100-file project.

The project is made with Blender: shots/shot.blend holds 75 images and links one material
from each of 4 libraries in assets/ (each material uses 5 images of its own): 1 + 4 + 75 +
20 = 100 files. Printed: the trace (blender-asset-tracer parsing every .blend and hashing
every file), the whole pack (trace plus layout, no rewrite needed), and a pack whose
.blend files must be rewritten (the shot's image paths absolute), median of --runs each.
"""

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src"), str(ROOT)]

from tests.fixtures.blends import make_png, run_blender  # noqa: E402

from afarm.project.pack import pack  # noqa: E402
from afarm.project.trace import trace  # noqa: E402

SCRIPT = r'''
import sys, bpy
root, absolute = sys.argv[sys.argv.index("--") + 1:]
def reset():
    bpy.ops.wm.read_factory_settings(use_empty=True)
    bpy.context.preferences.filepaths.save_version = 0
for lib in range(4):
    reset()
    mat = bpy.data.materials.new(f"M{lib}")
    mat.use_nodes = True
    for i in range(5):
        node = mat.node_tree.nodes.new("ShaderNodeTexImage")
        node.image = bpy.data.images.load(f"{root}/assets/tex{lib}/t{i}.png")
    mat.use_fake_user = True
    bpy.ops.wm.save_as_mainfile(filepath=f"{root}/assets/lib{lib}.blend")
reset()
bpy.ops.mesh.primitive_plane_add()
ob = bpy.context.object
for lib in range(4):
    with bpy.data.libraries.load(f"{root}/assets/lib{lib}.blend", link=True) as (s, d):
        d.materials = [f"M{lib}"]
    ob.data.materials.append(d.materials[0])
for i in range(75):
    bpy.data.images.load(f"{root}/shots/tex/s{i:02d}.png").use_fake_user = True
bpy.ops.wm.save_as_mainfile(filepath=f"{root}/shots/shot.blend")
if absolute == "1":
    bpy.ops.file.make_paths_absolute()
    bpy.ops.wm.save_as_mainfile(filepath=f"{root}/shots/absolute.blend", relative_remap=False)
'''


def make(root: Path) -> Path:
    for lib in range(4):
        for i in range(5):
            make_png(root / "assets" / f"tex{lib}" / f"t{i}.png", "red", 64)
    for i in range(75):
        make_png(root / "shots" / "tex" / f"s{i:02d}.png", "blue", 64)
    script = root / "make.py"
    script.write_text(SCRIPT)
    cp = run_blender(["-b", "--factory-startup", "--python-exit-code", "1", "--python",
                      str(script), "--", str(root), "1"])
    if cp.returncode != 0:
        raise SystemExit(cp.stdout[-3000:])
    return root / "shots" / "shot.blend"


def timed(fn: object, runs: int) -> float:
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        result = fn()  # type: ignore[operator]
        times.append(time.perf_counter() - t0)
        close = getattr(result, "close", None)
        if close:
            close()
    return statistics.median(times)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        shot = make(Path(tmp) / "film")
        tr = trace(shot)
        print(f"project: {len(tr.files)} files, {tr.size / 1024:.0f} KiB,"
              f" {len(tr.missing)} missing")
        print(f"trace (parse + sha256):        {timed(lambda: trace(shot), a.runs) * 1000:7.1f} ms")
        print(f"pack (trace + layout):         {timed(lambda: pack(shot), a.runs) * 1000:7.1f} ms")
        absolute = shot.with_name("absolute.blend")
        p = pack(absolute)
        rewritten = sum(f.rewritten for f in p.files)
        p.close()
        print(f"pack with {rewritten} .blend rewritten:   "
              f"{timed(lambda: pack(absolute), a.runs) * 1000:7.1f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
