# SPDX-License-Identifier: MIT
"""Make a pool archive of Blender from PyPI's bpy wheel: the wheel (a zip) as it is, plus
afarm's launcher as `blender` beside the bpy package.

    /usr/bin/python3 -m afarm.pool.bpy_wheel bpy-4.2.0-cp311-...whl blender-4.2.0-bpy.zip
    afarmctl app add blender 4.2.0 blender-4.2.0-bpy.zip

The wheel is copied, not repacked (its 1.5 GB would take minutes to compress again), and
the launcher is appended to the copy; the launcher runs bpy under /usr/bin/python3.
"""

import shutil
import sys
import zipfile
from importlib import resources
from pathlib import Path

LAUNCHER = "blender"


def build(wheel: Path, dest: Path) -> Path:
    tmp = dest.with_name(f".{dest.name}.tmp")
    shutil.copyfile(wheel, tmp)
    source = resources.files("afarm.pool").joinpath("bpy_launcher.py").read_bytes()
    with zipfile.ZipFile(tmp, "a") as z:
        info = zipfile.ZipInfo(LAUNCHER)
        info.external_attr = (0o100755 << 16)
        info.compress_type = zipfile.ZIP_DEFLATED
        z.writestr(info, source)
    tmp.replace(dest)
    return dest


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        print("usage: python3 -m afarm.pool.bpy_wheel BPY_WHEEL OUT.zip", file=sys.stderr)
        return 2
    build(Path(argv[1]), Path(argv[2]))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
