# SPDX-License-Identifier: MIT
"""Job-relative names for a project's files, checked as the master checks an input's name
(pack and rewrite both need them; neither imports the other for them)."""

from __future__ import annotations

from pathlib import Path, PurePosixPath

from afarm.errors import UsageError

OUTSIDE = "_outside"
MAX_NAME = 1024  # bytes, as the master's relative_name allows


def check_name(name: str, origin: Path | str) -> str:
    """`name` as the master accepts an input's name, or UsageError naming `origin`."""
    parts = name.split("/")
    bad = (not name or name.startswith("/") or len(name.encode()) > MAX_NAME
           or any(p in ("", ".", "..") or "\\" in p or "\0" in p or len(p.encode()) > 255
                  or any(ord(c) < 32 for c in p) for p in parts))
    if bad:
        why = ("a backslash" if "\\" in name else "a control character"
               if any(ord(c) < 32 for c in name) else "a name too long or empty")
        raise UsageError(f"{origin}: cannot be carried to the slave: its path has {why};"
                         " rename it (and the path to it in the .blend)")
    return name


def job_name(path: Path, root: Path) -> str:
    """The job-relative name of an absolute (lexical) path under `root`."""
    if path.is_relative_to(root):
        name = PurePosixPath(path.relative_to(root)).as_posix()
    else:
        name = f"{OUTSIDE}/" + PurePosixPath(path).as_posix().lstrip("/")
    return check_name(name, path)
