# SPDX-License-Identifier: MIT
"""A version that does not fit a slave's real (tmpfs) disk leaves nothing half installed."""

import os
import subprocess
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from afarm.digest import sha256_file
from afarm.slave.apps import AppStore, InstallError
from tests.platform import need_root

pytestmark = pytest.mark.system
DEFINITION = {"kind": "blender", "executable": "v/blender"}


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    need_root("mounting a small tmpfs as the slave's disk")
    disk = tmp_path / "disk"
    disk.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=6m", "afarm-test", str(disk)],
                   check=True)
    try:
        yield disk
    finally:
        subprocess.run(["umount", str(disk)], check=True)


def test_unpacking_onto_a_full_disk_leaves_no_version_and_no_partial(
        small_disk: Path, tmp_path: Path) -> None:
    src = tmp_path / "v"
    src.mkdir()
    for i in range(4):  # 4 MiB of incompressible files: 4 MiB + the 1.5 MiB archive > 6
        (src / f"data{i}").write_bytes(os.urandom(1 << 20))
    (src / "blender").write_text("#!/bin/true\n")
    archive = tmp_path / "v.tar.xz"
    with tarfile.open(archive, "w:xz", preset=0) as tar:
        tar.add(src, arcname="v")
    work = small_disk / "work"
    (work / "cache").mkdir(parents=True)
    sha = sha256_file(archive)
    (work / "cache" / sha).write_bytes(archive.read_bytes())  # as rsync leaves it
    store = AppStore(work)
    with pytest.raises(InstallError, match="disk filled up while unpacking blender 4.2.0"):
        store.install("blender", "4.2.0", sha, DEFINITION)
    assert store.installed() == []
    assert [p.name for p in (work / "apps" / "blender").iterdir()
            if not p.name.startswith(".")] == []
    # The space is free again (but for the archive, which the cache eviction drops): a
    # smaller version installs on the same disk.
    (work / "cache" / sha).unlink()
    for i in range(3):
        (src / f"data{i}").unlink()
    small = tmp_path / "small.tar"
    with tarfile.open(small, "w") as tar:
        tar.add(src, arcname="v")
    sha2 = sha256_file(small)
    (work / "cache" / sha2).write_bytes(small.read_bytes())
    store.install("blender", "4.2.1", sha2, DEFINITION)
    assert store.installed() == ["blender/4.2.1"]
