# SPDX-License-Identifier: MIT
"""A slave's installed versions: checked, unpacked whole or not at all, one install at once."""

import errno
import json
import os
import tarfile
import threading
import time
from pathlib import Path

import pytest

from afarm.applications.blender import BlenderApp
from afarm.digest import sha256_file
from afarm.pool import archive
from afarm.slave.apps import AppStore, InstallError

DEFINITION = {"kind": "blender", "executable": "v/blender", "timeout": 600}


def cached_archive(work: Path, files: int = 3, size: int = 1000) -> str:
    """A version's archive put into the slave's cache under its sha256, as the master does."""
    src = work.parent / "src" / "v"
    src.mkdir(parents=True, exist_ok=True)
    for i in range(files):
        (src / f"part{i}").write_bytes(os.urandom(size))
    (src / "blender").write_text("#!/bin/true\n")
    (src / "blender").chmod(0o755)
    path = work.parent / "v.tar"
    with tarfile.open(path, "w") as tar:
        tar.add(src, arcname="v")
    sha = sha256_file(path)
    (work / "cache").mkdir(parents=True, exist_ok=True)
    path.rename(work / "cache" / sha)
    return sha


def leftovers(store: AppStore) -> list[str]:
    return sorted(p.name for p in (store.root / "blender").iterdir()
                  if not p.name.startswith("."))


def test_a_version_is_installed_and_builds_its_app_from_its_own_definition(
        tmp_path: Path) -> None:
    work = tmp_path / "work"
    sha = cached_archive(work)
    store = AppStore(work)
    final, new = store.install("blender", "4.2.0", sha, DEFINITION)
    assert new and final == work / "apps" / "blender" / "4.2.0"
    assert store.installed() == ["blender/4.2.0"]
    assert store.install("blender", "4.2.0", sha, DEFINITION) == (final, False)
    app = store.application("blender", "4.2.0")
    assert isinstance(app, BlenderApp)
    assert app.executable == str(final.resolve() / "root" / "v" / "blender")
    assert json.loads((final / "definition.json").read_text()) == DEFINITION


def test_an_archive_whose_sha256_does_not_match_is_refused_and_deleted(
        tmp_path: Path) -> None:
    work = tmp_path / "work"
    sha = cached_archive(work)
    with open(work / "cache" / sha, "r+b") as f:
        f.seek(600)
        f.write(b"corrupt")
    store = AppStore(work)
    with pytest.raises(InstallError, match="sha256 mismatch"):
        store.install("blender", "4.2.0", sha, DEFINITION)
    assert not (work / "cache" / sha).exists()
    assert store.installed() == [] and leftovers(store) == []


def test_a_full_disk_during_unpack_leaves_nothing_half_installed(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    work = tmp_path / "work"
    sha = cached_archive(work, files=5)
    written = []
    real_open = os.fdopen

    def filling(fd: int, *args: object, **kw: object) -> object:
        f = real_open(fd, *args, **kw)  # type: ignore[call-overload]
        written.append(fd)
        if len(written) == 3:  # the third file finds the disk full
            os.close(fd)
            raise OSError(errno.ENOSPC, "No space left on device")
        return f

    monkeypatch.setattr(archive.os, "fdopen", filling)
    store = AppStore(work)
    with pytest.raises(InstallError, match="disk filled up.*nothing of it was installed"):
        store.install("blender", "4.2.0", sha, DEFINITION)
    assert store.installed() == [] and leftovers(store) == []
    monkeypatch.undo()
    store.install("blender", "4.2.0", sha, DEFINITION)  # the next try installs it whole
    assert store.installed() == ["blender/4.2.0"]


def test_two_installs_of_one_version_at_once_unpack_it_once(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    work = tmp_path / "work"
    sha = cached_archive(work)
    store = AppStore(work)
    unpacks = []
    real = archive.unpack

    def slow(*args: object, **kw: object) -> int:
        unpacks.append(1)
        time.sleep(0.2)
        return real(*args, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr("afarm.slave.apps.unpack", slow)
    results: list[bool] = []
    threads = [threading.Thread(target=lambda: results.append(
        store.install("blender", "4.2.0", sha, DEFINITION)[1])) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(unpacks) == 1 and sorted(results) == [False, False, True]


def test_versions_unused_for_app_keep_days_are_removed_unless_in_use(
        tmp_path: Path) -> None:
    work = tmp_path / "work"
    sha = cached_archive(work)
    store = AppStore(work)
    for v in ("3.6.0", "4.2.0", "4.3.0"):
        store.install("blender", v, sha, DEFINITION)
    old = time.time() - 40 * 86400
    for v in ("3.6.0", "4.2.0"):
        os.utime(work / "apps" / "blender" / v / "last-used", (old, old))
    assert store.collect(30, in_use={"blender/4.2.0"}) == ["blender/3.6.0"]
    assert store.installed() == ["blender/4.2.0", "blender/4.3.0"]
    assert store.collect(0, in_use=set()) == []  # 0: keep for ever


@pytest.mark.parametrize("name,version", [("../x", "1"), ("blender", "../../etc"),
                                          ("blender", "1/2")])
def test_names_and_versions_that_are_not_plain_are_refused(tmp_path: Path, name: str,
                                                           version: str) -> None:
    with pytest.raises(InstallError, match="refused"):
        AppStore(tmp_path).install(name, version, "0" * 64, DEFINITION)


def test_a_version_added_again_with_another_definition_or_archive_is_installed_anew(
        tmp_path: Path) -> None:
    work = tmp_path / "work"
    sha = cached_archive(work)
    store = AppStore(work)
    final, _ = store.install("blender", "4.2.0", sha, DEFINITION)
    (final / "tested").touch()
    other = {**DEFINITION, "format": "OPEN_EXR"}
    assert store.install("blender", "4.2.0", sha, other) == (final, True)
    assert store.definition("blender", "4.2.0") == other
    assert not (final / "tested").exists()  # its acceptance test runs again
    (tmp_path / "src").rename(tmp_path / "old-src")
    sha2 = cached_archive(work)
    assert sha2 != sha
    assert store.install("blender", "4.2.0", sha2, other) == (final, True)
    assert (final / "sha256").read_text() == sha2
    assert store.install("blender", "4.2.0", sha2, other) == (final, False)


def test_slave_conf_bounds_the_largest_unpacked_version(tmp_path: Path) -> None:
    import io

    from afarm.slave import shell
    from afarm.slave.agent import Agent
    conf = tmp_path / "slave.conf"
    conf.write_text(f"[slave]\nwork_dir = {tmp_path / 'w'}\nmax_unpacked_mib = 1\n")
    settings, _ = shell.load_settings(conf)
    assert settings.max_unpacked_mib == 1
    work = tmp_path / "w"
    agent = Agent("s", work, {}, io.BytesIO(),
                  max_unpacked_bytes=settings.max_unpacked_mib << 20)
    sha = cached_archive(work, files=2, size=700_000)
    with pytest.raises(InstallError, match=r"more than 1 MiB .*\[slave\] max_unpacked_mib"):
        agent.app_store.install("blender", "4.2.0", sha, DEFINITION)
    assert agent.app_store.installed() == []


def test_installing_a_version_never_removes_another_named_like_its_partial_dir(
        tmp_path: Path) -> None:
    # Version 4.2 unpacks into 4.2.partial/, which it clears first: a pool version named
    # "4.2.partial" (the master's version rule allows it) would be deleted under its tasks.
    work = tmp_path / "work"
    store = AppStore(work)
    sha = cached_archive(work)
    with pytest.raises(InstallError, match="refused"):
        store.install("blender", "4.2.partial", sha, DEFINITION)
    store.install("blender", "4.2", sha, DEFINITION)
    assert store.installed() == ["blender/4.2"]
