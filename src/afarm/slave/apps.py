# SPDX-License-Identifier: MIT
"""Application versions installed on a slave: apps/NAME/VERSION/ from the pool's archives.

The master rsyncs an archive into cache/SHA256 (the one directory a put may write); `install`
checks its SHA256, unpacks it into apps/NAME/VERSION.partial/ and renames that into place,
so a version is either wholly there or not at all (a full disk, a refused member or a crash
leave only a .partial that the next install removes). A lock file per version keeps two
agents of one slave from installing it at once. The definition the master sent travels in
the install (definition.json): tasks of that version build their argv from it. An install
is kept only while both its archive's sha256 (kept beside it) and its definition are the
ones asked for: a version removed from the pool and added again is installed anew.
"""

import errno
import fcntl
import json
import os
import re
import shutil
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from afarm.applications.base import Application
from afarm.digest import sha256_file
from afarm.errors import AfarmError
from afarm.pool.archive import ArchiveError, unpack

_NAME = re.compile(r"^[a-z0-9][a-z0-9.+-]{0,62}$")
_VERSION = re.compile(r"^[0-9][A-Za-z0-9.+~-]{0,63}$")
_SHA = re.compile(r"^[0-9a-f]{64}$")
USED = "last-used"  # touched by every task of the version, for app_keep_days
SOURCE = "sha256"  # the archive it was unpacked from


class InstallError(AfarmError):
    """A version could not be installed; nothing of it is left half there."""


def check_key(name: str, version: str) -> None:
    # Not "X.partial": that is where version X unpacks (and what it clears first).
    if not _NAME.match(name or "") or not _VERSION.match(version or "") \
            or version.endswith(".partial"):
        raise InstallError(f"refused: application {name!r} version {version!r}")


class AppStore:
    def __init__(self, work: Path, max_unpacked: int = 16 << 30) -> None:
        self.work = work
        self.root = work / "apps"
        self.cache = work / "cache"
        self.max_unpacked = max_unpacked
        self.root.mkdir(parents=True, exist_ok=True)
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()

    def dir(self, name: str, version: str) -> Path:
        check_key(name, version)
        return self.root / name / version

    def installed(self) -> list[str]:
        """NAME/VERSION of every complete install."""
        out = []
        for d in sorted(self.root.glob("*/*")):
            if d.is_dir() and not d.name.endswith(".partial") \
                    and (d / "definition.json").is_file():
                out.append(f"{d.parent.name}/{d.name}")
        return out

    @contextmanager
    def _locked(self, name: str, version: str) -> Iterator[None]:
        key = f"{name}/{version}"
        with self._guard:
            lock = self._locks.setdefault(key, threading.Lock())
        with lock:
            (self.root / name).mkdir(exist_ok=True)
            fd = os.open(self.root / name / f".{version}.lock", os.O_CREAT | os.O_RDWR, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                yield
            finally:
                os.close(fd)

    def install(self, name: str, version: str, sha256: str,
                definition: dict[str, Any]) -> tuple[Path, bool]:
        """The version's directory, installing it first if needed; (dir, newly installed)."""
        final = self.dir(name, version)
        if not _SHA.match(sha256 or ""):
            raise InstallError(f"refused: sha256 {sha256!r}")
        with self._locked(name, version):
            if self._current(final, sha256, definition):
                return final, False
            archive = self.cache / sha256
            if not archive.is_file():
                raise InstallError(f"the archive of {name} {version} is not in the slave's"
                                   " cache; it is sent again")
            if sha256_file(archive) != sha256:
                archive.unlink(missing_ok=True)
                raise InstallError(f"the archive of {name} {version} arrived corrupted"
                                   " (sha256 mismatch); refused and deleted")
            partial = final.with_name(final.name + ".partial")
            shutil.rmtree(partial, ignore_errors=True)
            shutil.rmtree(final, ignore_errors=True)  # an install without its definition
            partial.mkdir()
            try:
                unpack(archive, partial / "root", self.max_unpacked)
                with open(partial / "definition.json", "w", encoding="utf-8") as f:
                    json.dump(definition, f)
                (partial / SOURCE).write_text(sha256)
                (partial / USED).touch()
                os.chmod(partial, 0o755)
                os.rename(partial, final)
            except ArchiveError as exc:
                shutil.rmtree(partial, ignore_errors=True)
                raise InstallError(f"{name} {version}: {exc}") from None
            except OSError as exc:
                shutil.rmtree(partial, ignore_errors=True)
                if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                    raise InstallError(f"the disk filled up while unpacking {name} {version};"
                                       " nothing of it was installed") from None
                raise InstallError(f"unpacking {name} {version} failed: {exc}") from None
            return final, True

    @staticmethod
    def _current(final: Path, sha256: str, definition: dict[str, Any]) -> bool:
        """Whether the install there is of this archive with this definition (a version
        removed from the pool and added again may differ in either: it is installed anew)."""
        try:
            with open(final / "definition.json", encoding="utf-8") as f:
                had = json.load(f)
            source = (final / SOURCE).read_text().strip()
        except FileNotFoundError:
            if not (final / "definition.json").is_file():
                return False
            source = sha256  # installed before the archive's sha256 was kept beside it
        except (OSError, ValueError):
            return False
        return bool(source == sha256 and had == definition)

    def remove(self, name: str, version: str) -> None:
        with self._locked(name, version):
            shutil.rmtree(self.dir(name, version), ignore_errors=True)

    def definition(self, name: str, version: str) -> dict[str, Any]:
        path = self.dir(name, version) / "definition.json"
        try:
            with open(path, encoding="utf-8") as f:
                data = json.load(f)
        except (OSError, ValueError):
            raise InstallError(f"{name} {version} is not installed on this slave") from None
        if not isinstance(data, dict):
            raise InstallError(f"{name} {version}: its definition is broken")
        return data

    def application(self, name: str, version: str) -> Application:
        """The version's Application, built from its own definition, its executable inside
        the install."""
        from afarm.applications.registry import KINDS
        d = self.dir(name, version)
        conf = self.definition(name, version)
        exe = str(conf.get("executable", ""))
        root = (d / "root").resolve()
        program = (root / exe).resolve()
        if not exe or exe.startswith("/") or not str(program).startswith(str(root) + "/"):
            raise InstallError(f"{name} {version}: executable {exe!r} is not inside it")
        kind = conf.get("kind")
        if kind not in KINDS:
            raise InstallError(f"{name} {version}: unknown kind {kind!r}")
        os.utime(d / USED)
        return KINDS[str(kind)](name, {**conf, "executable": str(program)})

    def collect(self, keep_days: float, in_use: set[str],
                now: float | None = None) -> list[str]:
        """Remove versions no task used for keep_days (never one in use); returns them."""
        if keep_days <= 0:
            return []
        limit = (now if now is not None else time.time()) - keep_days * 86400
        removed = []
        for key in self.installed():
            name, version = key.split("/", 1)
            d = self.root / name / version
            try:
                used = (d / USED).stat().st_mtime
            except OSError:
                used = 0.0
            if used < limit and key not in in_use:
                self.remove(name, version)
                removed.append(key)
        return removed
