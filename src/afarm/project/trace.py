# SPDX-License-Identifier: MIT
"""Every file a .blend needs, found the way Blender would look for it, without Blender.

blender-asset-tracer (BAT) reads the .blend and, recursively, the libraries it links (only
the datablocks used from each, as Blender loads them): images with their UDIM tiles and
sequences, movie clips, sounds, fonts, Alembic/USD caches, mesh caches (.mdd, .pc2), point
cache and fluid directories, OpenVDB volumes and sequencer strips. Paths are resolved as
Blender resolves them: ``//`` is the directory of the .blend that holds the path (its path
as opened, not the target of a symlink) and ``..`` is removed by the text, not by the file
system. The contents are read through symlinks. What does not exist is reported with the
datablock that wants it, never dropped.
"""

from __future__ import annotations

import logging
import os
import re
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from afarm.digest import sha256_file
from afarm.errors import UsageError
from afarm.project.header import BadBlend, check_file

MAX_FILES = 10_000  # as many inputs as a job takes (master.http.job_request.MAX_FILES)

# Two-letter ID codes (the first two bytes of a datablock's name) as Blender's UI says them.
KINDS = {"IM": "image", "LI": "library", "MC": "movie clip", "SO": "sound", "VF": "font",
         "CF": "cache file", "VO": "volume", "OB": "object", "ME": "mesh", "SC": "scene",
         "LA": "light", "NT": "node group", "MA": "material", "TE": "texture",
         "PA": "particle settings", "WO": "world", "TX": "text"}


@dataclass(frozen=True)
class Usage:
    """One path stored in one .blend, as BAT found it (what rewrite needs to change it)."""

    blend: Path  # the .blend holding the path (absolute, as opened)
    owner: str  # the datablock, e.g. "image 'wood'"
    raw: bytes  # the path as stored
    target: Path  # the absolute path Blender resolves it to (a pattern for UDIM/globs)
    sequence: bool  # stands for several files (UDIM tiles, a sequence, a cache dir)
    block_addr: int  # the block's address in its file (BAT's addr_old)
    full_field: Any  # BAT's dna.Field holding the whole path, or None
    dir_field: Any  # ... or the directory part (sequencer strips)
    files: tuple[Path, ...]  # what exists of it


@dataclass(frozen=True)
class Dependency:
    path: Path  # absolute, as Blender names it (symlinks kept)
    size: int
    sha256: str
    wanted_by: tuple[str, ...]  # "image 'wood' in shots/a.blend", ...
    is_blend: bool


@dataclass(frozen=True)
class Missing:
    path: Path  # what Blender would open (a pattern for UDIM tiles or a sequence)
    wanted_by: str  # the datablock, e.g. "image 'wood'"
    blend: Path  # the .blend that holds the path
    reason: str = "missing"  # or why it is not carried (a private or system file)


# A .blend from elsewhere may name any file; these are never uploaded for it, whatever the
# path or symlink that leads there: pseudo and device file systems, and the dot-directories
# of home directories (keys, tokens, shell history).
SYSTEM_DIRS = (Path("/proc"), Path("/sys"), Path("/dev"), Path("/run"))


def dot_dir(path: Path) -> Path | None:
    """The dot-directory of a home directory `path` is in (/home/ann/.ssh), or None."""
    parts = path.parts
    home = 2 if parts[:2] == ("/", "root") else 3 if parts[:2] == ("/", "home") else 0
    own = Path(os.path.expanduser("~"))  # a home elsewhere (/var/home/ann, /export/...)
    if not home and own.is_absolute() and own != Path("/") and path.is_relative_to(own):
        home = len(own.parts)
    for i in range(home, len(parts) - 1) if home else ():
        if parts[i].startswith("."):
            return Path(*parts[:i + 1])
    return None


def private(path: Path, main: Path | None = None) -> str | None:
    """Why `path` (or the file a symlink leads to) must not leave this machine, or None.
    A project that itself lives in a dot-directory may carry files from that one."""
    own = dot_dir(main) if main else None
    for p in (path, path.resolve()):
        if any(p.is_relative_to(d) for d in SYSTEM_DIRS) or p.parts[:2] == ("/", "etc"):
            return "a system file"
        dot = dot_dir(p)
        if dot is not None and dot != own:
            return "a private file (in a dot-directory of a home directory)"
    return None


@dataclass
class Trace:
    main: Path  # the .blend traced (absolute, symlinks kept)
    files: list[Dependency]  # the main .blend first, then sorted by path
    missing: list[Missing]
    usages: list[Usage] = field(repr=False)
    seconds: float = 0.0

    @property
    def size(self) -> int:
        return sum(d.size for d in self.files)


WINDOWS_DRIVE = re.compile(r"[A-Za-z]:[\\/]")  # C:\tex\wood.png, as Windows-made files hold


def windows_target(raw: str) -> str | None:
    """Where Blender on Linux looks for a Windows drive path (BLI_path_abs turns
    'C:\\tex\\a.png' into '/c/tex/a.png'); None for any other path."""
    if not WINDOWS_DRIVE.match(raw):
        return None
    return "/" + raw[0].lower() + raw[2:].replace("\\", "/")


def lexical(path: Path | str) -> Path:
    """An absolute path with '.' and '..' removed by the text (Blender's way), symlinks kept."""
    return Path(os.path.normpath(os.path.abspath(path)))


# Structs that hold a path but are no datablock of their own (BAT names them "-unnamed-").
STRUCTS = {"Strip": "sequencer strip", "StripElem": "sequencer strip",
           "PointCache": "point cache", "bSound": "sound"}


def owner_name(block_name: bytes, dna_type: str = "") -> str:
    if block_name == b"-unnamed-" and dna_type:
        return STRUCTS.get(dna_type, dna_type)
    text = block_name.decode("utf-8", "replace")
    code, name = text[:2], text[2:]
    kind = KINDS.get(code)
    return f"{kind} {name!r}" if kind else f"datablock {text!r}"


sha256_of = sha256_file


def _expand(target: Path, sequence: bool) -> list[Path]:
    """The files a path stands for: itself, or every UDIM tile / frame / cache file."""
    if not sequence:
        return [target] if target.is_file() else []
    from blender_asset_tracer.trace import file_sequence

    try:
        found = list(file_sequence.expand_sequence(target))
    except (file_sequence.DoesNotExist, OSError):
        return []
    return sorted({lexical(p) for p in found if p.is_file()})


def _usages(main: Path) -> Iterable[Usage]:
    from blender_asset_tracer import trace as bat_trace

    for u in bat_trace.deps(main):
        bfile = Path(u.block.bfile.filepath)
        blend = lexical(bfile)
        raw = bytes(u.asset_path)
        target = lexical(windows_target(os.fsdecode(raw))
                         or os.fsdecode(bytes(u.block.bfile.abspath(u.asset_path))))
        owner = owner_name(u.block_name, str(getattr(u.block, "dna_type_name", "")))
        sequence = u.is_sequence or _clip_sequence(u.block)
        yield Usage(blend=blend, owner=owner, raw=raw, target=target,
                    sequence=sequence, block_addr=u.block.addr_old,
                    full_field=u.path_full_field, dir_field=u.path_dir_field,
                    files=tuple(_expand(target, sequence)))


MCLIP_SRC_SEQUENCE = 1  # DNA_movieclip_types.h


def _clip_sequence(block: Any) -> bool:
    """A movie clip made of numbered images (BAT 1.23 takes every clip for one file)."""
    if block.code != b"MC":
        return False
    try:
        return bool(block.get(b"source") == MCLIP_SRC_SEQUENCE)
    except KeyError:
        return False


def trace(blend: Path, project_root: Path | None = None) -> Trace:
    """Trace `blend` and everything it needs. `project_root` is only used to name files in
    messages (relative to it); pack decides the layout. Raises UsageError when the .blend
    (or a library) cannot be read."""
    t0 = time.monotonic()
    main = lexical(blend)
    if not main.is_file():
        what = "is a directory" if main.is_dir() else "does not exist"
        raise UsageError(f"{blend}: {what}" + (f" (it is a symlink to {os.readlink(main)})"
                                                if main.is_symlink() else "")
                         + "; give the path of a .blend file")
    check(main, main)
    from blender_asset_tracer import blendfile

    logging.getLogger("blender_asset_tracer").setLevel(logging.ERROR)
    wanted: dict[Path, list[tuple[str, Path]]] = {main: []}  # file: (datablock, .blend)
    missing: list[Missing] = []
    usages: list[Usage] = []
    base = project_root or main.parent

    def where(p: Path) -> str:
        return os.path.relpath(p, base)

    try:
        for u in _usages(main):
            usages.append(u)
            if not u.files:
                drive = windows_target(os.fsdecode(u.raw)) is not None
                missing.append(Missing(u.target, u.owner, u.blend, f"missing (the Windows"
                                       f" path {os.fsdecode(u.raw)})" if drive else "missing"))
                continue
            for f in u.files:
                wanted.setdefault(f, []).append((u.owner, u.blend))
            if len(wanted) > MAX_FILES:
                raise UsageError(f"{blend} needs more than {MAX_FILES} files; a job takes at"
                                 " most that many: pack fewer (bake caches into fewer files)")
            if u.owner.startswith("library ") and u.files:
                check(u.files[0], main)
    except blendfile.exceptions.BlendFileError as exc:
        raise UsageError(f"{exc.filepath}: cannot be read as a .blend file ({exc.args[0]});"
                         " save it again from Blender") from None
    except (EOFError, OSError, ValueError, KeyError, NotImplementedError) as exc:
        raise UsageError(f"{blend}: reading it (or a library it links) failed: {exc!s:.200};"
                         " is it a complete .blend file? Save it again from Blender") from None
    finally:
        blendfile.close_all_cached()
    files = []
    for path, users in wanted.items():
        owner, holder = users[0] if users else ("scene", main)
        why = None if path == main else private(path, main)
        if why:
            missing.append(Missing(path, owner, holder, f"not carried: {why}"))
            continue
        try:
            size = path.stat().st_size
            digest = sha256_of(path)
        except OSError as exc:
            missing.append(Missing(path, owner, holder, f"unreadable ({exc.strerror})"))
            continue
        names = (f"{o} in {where(b)}" for o, b in users)
        files.append(Dependency(path, size, digest, tuple(dict.fromkeys(names)),
                                path.suffix.lower() == ".blend" or path == main))
    files.sort(key=lambda d: (d.path != main, str(d.path)))
    missing = list({(m.path, m.wanted_by, m.blend): m for m in missing}.values())
    return Trace(main, files, missing, usages, time.monotonic() - t0)


def check(path: Path, main: Path) -> None:
    """Refuse a .blend Blender would not read (truncated, corrupt, foreign compression)."""
    try:
        check_file(path)
    except BadBlend as exc:
        raise UsageError(str(exc) + ("" if path == main else f" (linked by {main.name})")) \
            from None
    except OSError as exc:
        raise UsageError(f"{path}: {exc.strerror}") from None
