# SPDX-License-Identifier: MIT
"""The master's pool of application versions, in Debian's archive layout.

    POOL/pool/main/b/blender/blender_4.2.0_amd64.tar.xz
    POOL/Packages   deb822 stanzas: Package, Version, Architecture, Filename, Size, SHA256,
                    Installed-Size, Afarm-Definition (the version's application definition)
    POOL/Release    the SHA256 and size of Packages

Written and read with python-debian. Every read checks Packages against Release, so a
corrupt or hand-edited index is refused (with how to recover) rather than half believed;
each archive's SHA256 is checked again by the slave that unpacks it.
"""

import hashlib
import io
import json
import logging
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from debian.deb822 import Deb822, Packages
from debian.debian_support import Version

from afarm.digest import sha256_file
from afarm.errors import AfarmError, UsageError
from afarm.master.scheduling.versions import newest, valid_version
from afarm.pool.archive import ArchiveError, inspect, pack_dir, suffix_of

ARCHES = ("amd64", "arm64", "all")
log = logging.getLogger(__name__)


class PoolError(AfarmError):
    """The pool's index cannot be trusted (checksum mismatch, unreadable)."""


@dataclass(frozen=True)
class PoolEntry:
    package: str
    version: str
    arch: str
    filename: str  # relative to the pool root
    size: int
    sha256: str
    unpacked: int
    definition: dict[str, Any]

    @property
    def key(self) -> str:
        return f"{self.package}/{self.version}"

    def stanza(self) -> Packages:
        p = Packages()
        p["Package"] = self.package
        p["Version"] = self.version
        p["Architecture"] = self.arch
        p["Filename"] = self.filename
        p["Size"] = str(self.size)
        p["SHA256"] = self.sha256
        p["Installed-Size"] = str((self.unpacked + 1023) // 1024)
        p["Afarm-Unpacked-Bytes"] = str(self.unpacked)
        p["Afarm-Definition"] = json.dumps(self.definition, sort_keys=True,
                                           separators=(",", ":"))
        return p

    @classmethod
    def from_stanza(cls, p: Deb822) -> "PoolEntry":
        try:
            definition = json.loads(p["Afarm-Definition"])
            if not isinstance(definition, dict):
                raise ValueError("not an object")
            return cls(p["Package"], p["Version"], p["Architecture"], p["Filename"],
                       int(p["Size"]), p["SHA256"], int(p["Afarm-Unpacked-Bytes"]),
                       definition)
        except (KeyError, ValueError) as exc:
            raise PoolError(f"a Packages stanza is incomplete ({exc})") from None

    def to_json(self) -> dict[str, Any]:
        return {"package": self.package, "version": self.version, "arch": self.arch,
                "filename": self.filename, "size": self.size, "sha256": self.sha256,
                "unpacked": self.unpacked, "executable": self.definition.get("executable")}


def _checked_name(name: str) -> str:
    import re
    if not re.fullmatch(r"[a-z0-9][a-z0-9.+-]{0,62}", name or ""):
        raise UsageError(f"application name {name!r}: lower-case letters, digits, . + -")
    return name


class Pool:
    def __init__(self, root: Path, max_unpacked: int = 16 << 30) -> None:
        self.root = root
        self.max_unpacked = max_unpacked
        self._lock = threading.Lock()
        self._read: tuple[tuple[int, ...], list[PoolEntry]] | None = None
        root.mkdir(parents=True, exist_ok=True)

    # -- index ----------------------------------------------------------------------------
    def entries(self) -> list[PoolEntry]:
        packages = self.root / "Packages"
        release = self.root / "Release"
        if not packages.exists() and not release.exists():
            return []
        try:  # read and checked again only when either file changed (the scheduler asks)
            key = tuple(v for p in (packages, release) for st in [p.stat()]
                        for v in (st.st_mtime_ns, st.st_size, st.st_ino))
        except OSError as exc:
            raise PoolError(f"the pool index cannot be read: {exc}") from None
        if self._read is not None and self._read[0] == key:
            return list(self._read[1])
        try:
            data = packages.read_bytes()
            with open(release, encoding="utf-8") as f:
                rel = Deb822(f)
        except OSError as exc:
            raise PoolError(f"the pool index cannot be read: {exc}") from None
        want = rel.get("SHA256", "").split()
        if len(want) < 3 or want[0] != hashlib.sha256(data).hexdigest() \
                or want[1] != str(len(data)):
            raise PoolError(f"the pool index {packages} does not match its Release checksum"
                            " (corrupt or edited by hand); restore it from a backup or"
                            " re-add the versions")
        entries = [PoolEntry.from_stanza(p) for p in Packages.iter_paragraphs(
            io.StringIO(data.decode("utf-8")), use_apt_pkg=False)]
        self._read = (key, entries)
        return list(entries)

    def _write(self, entries: Iterable[PoolEntry]) -> None:
        ordered = sorted(entries, key=lambda e: (e.package, Version(e.version), e.arch))
        text = "\n".join(e.stanza().dump() for e in ordered)
        data = text.encode("utf-8")
        rel = Deb822()
        rel["Origin"] = "afarm"
        rel["Date"] = time.strftime("%a, %d %b %Y %H:%M:%S UTC", time.gmtime())
        rel["SHA256"] = f"\n {hashlib.sha256(data).hexdigest()} {len(data)} Packages"
        for name, content in (("Packages", data), ("Release", rel.dump().encode())):
            tmp = self.root / f".{name}.tmp"
            with open(tmp, "wb") as f:
                f.write(content)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.root / name)

    def versions(self, package: str, arch: str | None = None) -> list[PoolEntry]:
        """The entries of a package newest first (optionally for one architecture)."""
        found = [e for e in self.entries() if e.package == package
                 and (arch is None or e.arch in (arch, "all"))]
        order = newest(e.version for e in found)
        return sorted(found, key=lambda e: order.index(e.version))

    def packages(self) -> frozenset[str]:
        """The applications the pool has versions of; none while the index is corrupt
        (asked at every scheduling pass, which must not fail for it)."""
        try:
            return frozenset(e.package for e in self.entries())
        except PoolError as exc:
            log.warning("%s", exc)
            return frozenset()

    def entry(self, package: str, version: str, arch: str = "amd64") -> PoolEntry | None:
        for e in self.versions(package):
            if e.version == version and e.arch in (arch, "all"):
                return e
        return None

    def path(self, entry: PoolEntry) -> Path:
        return self.root / entry.filename

    # -- changes --------------------------------------------------------------------------
    def add(self, package: str, version: str, source: Path, definition: dict[str, Any],
            arch: str = "amd64", executable: str | None = None) -> PoolEntry:
        """Copy an archive (or pack a directory) into the pool and index it."""
        _checked_name(package)
        valid_version(version)
        if arch not in ARCHES:
            raise UsageError(f"--arch {arch!r}: give one of {', '.join(ARCHES)}")
        if source.is_dir():
            suffix = ".tar.gz"
        else:
            try:
                suffix = suffix_of(source.name)
            except ArchiveError as exc:
                raise UsageError(str(exc)) from None
        rel = f"pool/main/{package[0]}/{package}/{package}_{version}_{arch}{suffix}"
        dest = self.root / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(dir=dest.parent, prefix=".add-", suffix=suffix)
        os.close(fd)
        tmp = Path(tmp_name)
        try:
            if source.is_dir():
                pack_dir(source, tmp)
            else:
                shutil.copyfile(source, tmp)
            try:
                info = inspect(tmp, self.max_unpacked)
            except ArchiveError as exc:
                raise UsageError(f"{source.name}: {exc}") from None
            exe = executable or _find_executable(tmp, info.top, definition)
            entry = PoolEntry(package, version, arch, rel, tmp.stat().st_size,
                              sha256_file(tmp), info.unpacked,
                              {**definition, "executable": exe})
            with self._lock:
                current = self.entries()
                if any(e.package == package and e.version == version and e.arch == arch
                       for e in current):
                    raise UsageError(f"{package} {version} ({arch}) is already in the pool;"
                                     f" remove it first (afarmctl app remove {package}"
                                     f" {version})")
                os.chmod(tmp, 0o644)
                os.replace(tmp, dest)
                self._write([*current, entry])
            return entry
        finally:
            tmp.unlink(missing_ok=True)

    def remove(self, package: str, version: str) -> list[PoolEntry]:
        with self._lock:
            current = self.entries()
            gone = [e for e in current if e.package == package and e.version == version]
            if not gone:
                have = ", ".join(e.version for e in self.versions(package)) or "none"
                raise UsageError(f"{package} {version} is not in the pool (it has: {have})")
            self._write([e for e in current if e not in gone])
            for e in gone:
                self.path(e).unlink(missing_ok=True)
            return gone


def _find_executable(archive: Path, top: str, definition: dict[str, Any]) -> str:
    """The program inside the archive: the definition's executable's base name, at the top
    or in the one top-level directory (blender-4.2.3-linux-x64/blender)."""
    from afarm.pool.archive import members
    want = os.path.basename(str(definition.get("executable") or "")) or "blender"
    candidates = {want, f"{top}/{want}"} if top else {want}
    for m, _ in members(archive):
        if m.name in candidates and m.kind in ("file", "symlink", "hardlink"):
            return m.name
    raise UsageError(f"{archive.name}: no {want!r} at its top or in its top directory; give"
                     " --executable PATH inside the archive")
