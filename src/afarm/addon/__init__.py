# SPDX-License-Identifier: MIT
"""The Blender add-on (afarm_blender/) as the zip Blender's add-on preferences install; the
master's results port serves it at PATH, built from the installed package's files."""

import functools
import io
import zipfile
from pathlib import Path

NAME = "afarm_blender"
PATH = f"/addon/{NAME}.zip"
_SOURCE = Path(__file__).resolve().parent / NAME
_WHEN = (2026, 1, 1, 0, 0, 0)  # a fixed date: the same files make the same zip


@functools.cache
def addon_zip() -> bytes:
    """The add-on's .py files under afarm_blender/ in a zip (nothing else: no caches)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for path in sorted(_SOURCE.glob("*.py")):
            info = zipfile.ZipInfo(f"{NAME}/{path.name}", _WHEN)
            info.external_attr = 0o644 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            z.writestr(info, path.read_bytes())
    return buf.getvalue()
