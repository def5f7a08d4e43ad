# SPDX-License-Identifier: MIT
"""sha256 of a file, read in chunks: how afarm names every input it moves."""

import hashlib
from pathlib import Path


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()
