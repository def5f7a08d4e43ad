# SPDX-License-Identifier: MIT
"""Reading application archives safely: list, bound and unpack tar (.tar, .tar.gz, .tar.xz,
.tar.bz2) and zip archives, and pack a directory into one.

An archive comes from whoever ran `afarmctl app add`; it is unpacked on every slave, so each
member is checked before anything is written: no absolute names, no `..`, no device files,
hard links only to regular files unpacked before them, symlinks only to places inside the
archive, and a bound on the total size
(what the members say and what is actually written). Files are written with O_EXCL and
O_NOFOLLOW under a fresh directory, so nothing already there can redirect a write.
"""

import os
import posixpath
import stat
import tarfile
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from afarm.errors import AfarmError

SUFFIXES = (".tar.xz", ".tar.gz", ".tgz", ".tar.bz2", ".tar", ".zip")
MAX_MEMBERS = 200_000
CHUNK = 1 << 20
# Where the bound comes from: the master's pool takes up to 16 GiB, a slave what its
# slave.conf says.
LIMIT_HINT = "(the master's pool takes at most 16384 MiB, a slave [slave] max_unpacked_mib)"
MAX_LINK = 4096  # PATH_MAX


class ArchiveError(AfarmError):
    """An archive afarm refuses to unpack, or one it could not read."""


def suffix_of(name: str) -> str:
    for s in SUFFIXES:
        if name.endswith(s):
            return s
    raise ArchiveError(f"{name!r} is not an archive afarm reads; give a {', '.join(SUFFIXES)}"
                       " file or a directory")


@dataclass(frozen=True)
class Member:
    name: str  # normalised, relative
    kind: str  # "file", "dir", "symlink" or "hardlink"
    size: int
    mode: int
    target: str = ""  # a symlink's target; a hard link's earlier member (normalised)


@dataclass(frozen=True)
class ArchiveInfo:
    members: int
    unpacked: int  # bytes of the regular files
    top: str  # the one top-level directory all members share, or ""


def _clean(name: str) -> str:
    if name.startswith("/") or "\0" in name or "\\" in name:
        raise ArchiveError(f"member {name[:200]!r} has an absolute or odd name; refused")
    norm = posixpath.normpath(name)
    if norm == ".":
        return ""
    if norm.startswith("../") or norm == ".." or "/../" in f"/{norm}/":
        raise ArchiveError(f"member {name[:200]!r} leaves the archive (..); refused")
    return norm


def _check_link(name: str, target: str) -> None:
    if target.startswith("/"):
        raise ArchiveError(f"symlink {name!r} points to the absolute path {target!r}; refused")
    resolved = posixpath.normpath(posixpath.join(posixpath.dirname(name), target))
    if resolved == ".." or resolved.startswith("../"):
        raise ArchiveError(f"symlink {name!r} -> {target!r} leaves the archive; refused")


class _BoundedTarInfo(tarfile.TarInfo):
    """tarfile reads the data of a pax or GNU long-name header whole before parsing it: a
    header claiming gigabytes of zeros (a few MB compressed) is refused before that."""

    def _proc_member(self, tarfile_: tarfile.TarFile) -> tarfile.TarInfo:
        if self.type in _EXTENSIONS and self.size > MAX_HEADER:
            raise ArchiveError(f"a tar header extension of {self.size} bytes (more than"
                               f" {MAX_HEADER}); refused")
        return super()._proc_member(tarfile_)  # type: ignore[misc]


_EXTENSIONS = (tarfile.XHDTYPE, tarfile.XGLTYPE, tarfile.SOLARIS_XHDTYPE,
               tarfile.GNUTYPE_LONGNAME, tarfile.GNUTYPE_LONGLINK)
MAX_HEADER = 1 << 20


def members(path: Path) -> Iterator[tuple[Member, IO[bytes] | None]]:
    """Each member, checked, with an open stream for regular files (read it before the next).
    A file named by its sha256 (a slave's cache) is a zip if it starts like one, else tar."""
    if any(path.name.endswith(s) for s in SUFFIXES):
        suffix = suffix_of(path.name)
    else:
        with open(path, "rb") as head:
            suffix = ".zip" if head.read(4) == b"PK\x03\x04" else ".tar"
    count = 0
    if suffix == ".zip":
        with zipfile.ZipFile(path) as z:
            for info in z.infolist():
                count += 1
                if count > MAX_MEMBERS:
                    raise ArchiveError(f"more than {MAX_MEMBERS} members; refused")
                name = _clean(info.filename)
                mode = (info.external_attr >> 16) & 0o7777
                ftype = (info.external_attr >> 16) & 0o170000
                if not name:
                    continue
                if info.is_dir():
                    yield Member(name, "dir", 0, mode or 0o755), None
                elif ftype == stat.S_IFLNK:
                    # The data is the target: read no more than a path can be (a zip bomb
                    # posing as a symlink would otherwise be inflated into memory whole).
                    if info.file_size > MAX_LINK:
                        raise ArchiveError(f"symlink {name!r} has a target of"
                                           f" {info.file_size} bytes; refused")
                    with z.open(info) as f:
                        raw = f.read(MAX_LINK + 1)
                    if len(raw) > MAX_LINK:
                        raise ArchiveError(f"symlink {name!r} has too long a target; refused")
                    target = raw.decode("utf-8", "replace")
                    _check_link(name, target)
                    yield Member(name, "symlink", 0, 0o777, target), None
                elif ftype in (0, stat.S_IFREG):
                    with z.open(info) as f:
                        yield Member(name, "file", info.file_size, mode or 0o644), f
                else:
                    raise ArchiveError(f"member {name!r} is not a file, directory or symlink")
        return
    try:
        tar = tarfile.open(path, "r:*", tarinfo=_BoundedTarInfo)
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise ArchiveError(f"{path.name} is not a readable tar archive: {exc}") from None
    with tar:
        try:
            for ti in tar:
                count += 1
                if count > MAX_MEMBERS:
                    raise ArchiveError(f"more than {MAX_MEMBERS} members; refused")
                name = _clean(ti.name)
                if not name:
                    continue
                if ti.isdir():
                    yield Member(name, "dir", 0, ti.mode), None
                elif ti.issym():
                    _check_link(name, ti.linkname)
                    yield Member(name, "symlink", 0, 0o777, ti.linkname), None
                elif ti.isreg():
                    yield Member(name, "file", ti.size, ti.mode), tar.extractfile(ti)
                elif ti.islnk():
                    # Release tarballs (and pack_dir of a tree with hard links) hold them;
                    # unpack lets one name only a regular file it wrote before.
                    target = _clean(ti.linkname)
                    if not target:
                        raise ArchiveError(f"hard link {name!r} has no target; refused")
                    yield Member(name, "hardlink", 0, ti.mode, target), None
                else:
                    raise ArchiveError(f"member {name!r} is a device, fifo or other special"
                                       " file; refused")
        except (tarfile.TarError, EOFError, OSError) as exc:
            raise ArchiveError(f"{path.name} is damaged: {exc}") from None


def inspect(path: Path, max_bytes: int) -> ArchiveInfo:
    """Count and bound an archive without writing anything."""
    n = total = 0
    tops: set[str] = set()
    has_root_file = False
    for m, _ in members(path):
        n += 1
        total += m.size
        if total > max_bytes:
            raise ArchiveError(f"{path.name} unpacks to more than {max_bytes >> 20} MiB"
                               f" {LIMIT_HINT}")
        top, _, rest = m.name.partition("/")
        tops.add(top)
        if not rest and m.kind != "dir":
            has_root_file = True
    top = next(iter(tops)) if len(tops) == 1 and not has_root_file else ""
    return ArchiveInfo(n, total, top)


def unpack(path: Path, dest: Path, max_bytes: int) -> int:
    """Unpack into the new directory `dest` (must not exist); returns bytes written.

    Raises ArchiveError for a refused member (anything written stays in `dest`, which the
    caller removes) and OSError (ENOSPC...) as it comes."""
    dest.mkdir()
    os.chmod(dest, 0o755)
    written = 0
    dirfd_root = str(dest)
    links: list[str] = []
    files: set[str] = set()  # regular files written so far: what a hard link may name
    for m, stream in members(path):
        target = os.path.join(dirfd_root, m.name)
        parent = os.path.dirname(target)
        _makedirs_inside(dest, parent)
        if m.kind == "dir":
            _makedirs_inside(dest, target)
            continue
        if m.kind == "symlink":
            os.symlink(m.target, target)
            links.append(target)
            continue
        if m.kind == "hardlink":
            if m.target not in files:
                raise ArchiveError(f"hard link {m.name!r} -> {m.target!r} does not name a"
                                   " regular file unpacked before it; refused")
            os.link(os.path.join(dirfd_root, m.target), target, follow_symlinks=False)
            continue
        assert stream is not None
        mode = 0o755 if m.mode & 0o111 else 0o644
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode)
        with os.fdopen(fd, "wb") as out:
            while True:
                block = stream.read(CHUNK)
                if not block:
                    break
                written += len(block)
                if written > max_bytes:
                    raise ArchiveError(f"{path.name} unpacks to more than {max_bytes >> 20}"
                                       f" MiB {LIMIT_HINT}")
                out.write(block)
        os.chmod(target, mode)
        files.add(m.name)
    # Each link was checked alone; a chain (a link through a link) is checked now that all
    # exist. Writes never followed any (O_NOFOLLOW, no link as a parent directory).
    root = os.path.realpath(dest)
    for link in links:
        real = os.path.realpath(link)
        if real != root and not real.startswith(root + os.sep):
            raise ArchiveError(f"symlink {os.path.relpath(link, dest)!r} resolves outside"
                               " the archive; refused")
    return written


def _makedirs_inside(root: Path, path: str) -> None:
    """mkdir -p, refusing to pass through a symlink (an earlier member) out of `root`."""
    rel = os.path.relpath(path, root)
    cur = str(root)
    if rel == ".":
        return
    for part in rel.split(os.sep):
        cur = os.path.join(cur, part)
        try:
            st = os.lstat(cur)
        except FileNotFoundError:
            os.mkdir(cur)
            os.chmod(cur, 0o755)  # the sandboxed task user reads it, whatever the umask
            continue
        if not stat.S_ISDIR(st.st_mode):
            raise ArchiveError(f"member path {rel!r} passes through a non-directory; refused")


def pack_dir(src: Path, dest: Path) -> None:
    """A directory as a .tar.gz (fast compression: these are mostly binaries); symlinks that
    leave it and special files are refused, as unpack would."""
    def check(ti: tarfile.TarInfo) -> tarfile.TarInfo:
        ti.uid = ti.gid = 0
        ti.uname = ti.gname = "root"
        if ti.issym():
            _check_link(ti.name, ti.linkname)
        elif not (ti.isreg() or ti.isdir() or ti.islnk()):  # a hard link: to a file before
            raise ArchiveError(f"{ti.name!r} is not a file, directory or symlink; refused")
        return ti

    with tarfile.open(dest, "w:gz", compresslevel=1) as tar:
        for entry in sorted(src.iterdir()):
            tar.add(entry, arcname=entry.name, filter=check)
