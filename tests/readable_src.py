# SPDX-License-Identifier: MIT
"""A copy of the afarm package that every user can read, for what test hosts run.

A clone in root's home or in `mktemp -d` is 0700: the namespace hosts' slave users cannot
import afarm from it. The session copies src/afarm once into a root-owned, world-readable
temporary dir (so slave users can read but never change the code they run) and removes it
at exit.
"""

import atexit
import shutil
import tempfile
from functools import cache
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


@cache
def readable_src() -> Path:
    """A directory holding `afarm/`, readable (not writable) by every user."""
    base = Path(tempfile.mkdtemp(prefix="afarm-test-src-"))
    atexit.register(shutil.rmtree, base, ignore_errors=True)
    shutil.copytree(REPO / "src" / "afarm", base / "afarm",
                    ignore=shutil.ignore_patterns("__pycache__"))
    for p in [base, *base.rglob("*")]:
        p.chmod(0o755 if p.is_dir() else 0o644)
    return base
