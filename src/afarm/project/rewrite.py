# SPDX-License-Identifier: MIT
"""Rewrite the paths in copies of .blend files so every path is ``//relative`` to where
the .blend sits in the job tree and names the packed file (BAT changes the bytes of the
path fields in place; the original files are never opened for writing).

A path that already says the right thing is left alone, so a project whose paths are all
relative and inside the root is carried without any copy: the .blend files uploaded are the
artist's own, byte for byte.
"""

from __future__ import annotations

import os
import posixpath
from pathlib import Path

from afarm.errors import UsageError
from afarm.project.names import job_name
from afarm.project.trace import Trace, Usage


def relative(target_name: str, blend_name: str) -> bytes:
    """``//path`` from the .blend at job name `blend_name` to `target_name`."""
    rel = posixpath.relpath(target_name, posixpath.dirname(blend_name) or ".")
    return b"//" + os.fsencode(rel)


def wanted_path(u: Usage, names: dict[Path, str], root: Path) -> bytes:
    """What `u`'s path must say in the packed copy of its .blend."""
    blend_name = names[u.blend]
    target = names.get(u.target) or job_name(u.target, root)
    return relative(target, blend_name)


def rewrite_blends(tr: Trace, names: dict[Path, str], root: Path,
                   workdir: Path) -> dict[Path, Path]:
    """Rewrite every .blend of the trace whose paths must change into `workdir`; returns
    {original .blend: rewritten copy}."""
    changes: dict[Path, list[tuple[Usage, bytes]]] = {}
    for u in tr.usages:
        if u.blend not in names:
            continue
        if not u.files:
            # A missing file at an absolute path is named at its place in the job tree
            # too (under _outside/ when outside the root), so render_prep on the slave
            # warns that it is missing instead of refusing a path that leaves the job.
            # Other paths keep what they say: '//' ones stay inside the job (the root
            # holds them), and one Blender reads from its working directory ('C:\x',
            # 'concat:...') is the slave's to judge, as the user wrote it.
            if not (u.raw.startswith(b"/") and not u.raw.startswith(b"//")):
                continue
            try:
                new = wanted_path(u, names, root)
            except UsageError:
                continue
        else:
            new = wanted_path(u, names, root)
        if new != u.raw:
            changes.setdefault(u.blend, []).append((u, new))
    if not changes:
        return {}
    from blender_asset_tracer import blendfile

    copies: dict[Path, Path] = {}
    try:
        for n, (blend, todo) in enumerate(sorted(changes.items())):
            copy = workdir / f"{n:05d}" / blend.name
            copy.parent.mkdir(parents=True)
            bfile = blendfile.open_cached(blend)
            bfile.copy_and_rebind(copy, mode="rb+")
            try:
                for u, new in todo:
                    _set(bfile, u, new)
            finally:
                bfile.close()
            copies[blend] = copy
    finally:
        blendfile.close_all_cached()
    return copies


def _set(bfile: object, u: Usage, new: bytes) -> None:
    block = bfile.dereference_pointer(u.block_addr)  # type: ignore[attr-defined]
    if block is None:
        raise UsageError(f"{u.blend}: the {u.owner} moved while packing; try again")
    if u.full_field is not None:
        field = u.full_field
        value = new
    else:
        field = u.dir_field  # sequencer strips: the directory; the file name stays
        value = new.rsplit(b"/", 1)[0] + b"/"
    size = field.size if hasattr(field, "size") else None
    if size is not None and len(value) >= size:
        raise UsageError(f"{u.blend}: the new path of the {u.owner} ({value.decode()!r}) does"
                         " not fit the field Blender keeps it in; use a shorter project"
                         " root (--project-root) or shorter names")
    block.set(field.name.name_only, value)

