# SPDX-License-Identifier: MIT
"""The pool: Debian's layout, a deb822 Packages index checked against its Release."""

import tarfile
from pathlib import Path

import pytest
from debian.deb822 import Packages

from afarm.digest import sha256_file
from afarm.errors import UsageError
from afarm.master.pool.index import Pool, PoolError

DEFINITION = {"kind": "blender", "executable": "blender", "timeout": 600}


def release_tarball(tmp_path: Path, version: str) -> Path:
    """A tarball shaped like blender.org's: one top directory holding `blender`."""
    top = tmp_path / f"blender-{version}-linux-x64"
    top.mkdir()
    (top / "blender").write_text("#!/bin/true\n")
    (top / "blender").chmod(0o755)
    path = tmp_path / f"blender-{version}-linux-x64.tar.xz"
    with tarfile.open(path, "w:xz") as tar:
        tar.add(top, arcname=top.name)
    return path


def test_a_release_tarball_is_kept_in_debian_layout_and_indexed(tmp_path: Path) -> None:
    pool = Pool(tmp_path / "pool")
    entry = pool.add("blender", "4.2.3", release_tarball(tmp_path, "4.2.3"), DEFINITION)
    archive = tmp_path / "pool" / "pool/main/b/blender/blender_4.2.3_amd64.tar.xz"
    assert archive.is_file() and entry.sha256 == sha256_file(archive)
    assert entry.definition["executable"] == "blender-4.2.3-linux-x64/blender"
    with open(tmp_path / "pool" / "Packages") as f:
        stanza = next(Packages.iter_paragraphs(f, use_apt_pkg=False))
    assert (stanza["Package"], stanza["Version"], stanza["Architecture"]) == (
        "blender", "4.2.3", "amd64")
    assert stanza["Filename"] == "pool/main/b/blender/blender_4.2.3_amd64.tar.xz"
    assert stanza["SHA256"] == entry.sha256 and int(stanza["Size"]) == archive.stat().st_size
    assert '"kind":"blender"' in stanza["Afarm-Definition"]
    assert Pool(tmp_path / "pool").entries() == [entry]  # read back as written


def test_versions_are_listed_newest_first_and_removed_with_their_archive(
        tmp_path: Path) -> None:
    pool = Pool(tmp_path / "pool")
    for v in ("3.6.0", "4.10.1", "4.2.0"):
        pool.add("blender", v, release_tarball(tmp_path, v), DEFINITION)
    assert [e.version for e in pool.versions("blender")] == ["4.10.1", "4.2.0", "3.6.0"]
    gone = pool.remove("blender", "4.2.0")
    assert not pool.path(gone[0]).exists()
    assert [e.version for e in pool.versions("blender")] == ["4.10.1", "3.6.0"]
    again = tmp_path / "again"
    again.mkdir()
    with pytest.raises(UsageError, match="already in the pool"):
        pool.add("blender", "3.6.0", release_tarball(again, "3.6.0"), DEFINITION)
    with pytest.raises(UsageError, match=r"not in the pool \(it has: 4.10.1, 3.6.0\)"):
        pool.remove("blender", "9.9")


def test_a_corrupt_or_edited_index_is_refused(tmp_path: Path) -> None:
    pool = Pool(tmp_path / "pool")
    pool.add("blender", "4.2.0", release_tarball(tmp_path, "4.2.0"), DEFINITION)
    packages = tmp_path / "pool" / "Packages"
    packages.write_text(packages.read_text().replace("SHA256: ", "SHA256: 0"))
    with pytest.raises(PoolError, match="does not match its Release checksum"):
        pool.entries()


@pytest.mark.parametrize("name,version,arch,match", [
    ("Blender", "4.2", "amd64", "application name"),
    ("blender", "latest", "amd64", "Debian-style version"),
    ("blender", "4.2/../../x", "amd64", "Debian-style version"),
    ("blender", "4.2", "sparc", "--arch"),
])
def test_bad_names_versions_and_architectures_are_refused(
        tmp_path: Path, name: str, version: str, arch: str, match: str) -> None:
    with pytest.raises(UsageError, match=match):
        Pool(tmp_path / "pool").add(name, version, release_tarball(tmp_path, "1.0"),
                                    DEFINITION, arch)


def test_an_archive_without_the_program_is_refused_naming_the_option(tmp_path: Path) -> None:
    (tmp_path / "nothing").mkdir()
    path = tmp_path / "empty.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        tar.add(tmp_path / "nothing", arcname="nothing")
    with pytest.raises(UsageError, match="--executable"):
        Pool(tmp_path / "p2").add("blender", "1.0", path, DEFINITION)
    assert Pool(tmp_path / "p2").entries() == []


def test_a_corrupt_index_offers_no_packages_to_the_scheduler_instead_of_failing(
        tmp_path: Path) -> None:
    pool = Pool(tmp_path / "pool")
    pool.add("blender", "4.2.0", release_tarball(tmp_path, "4.2.0"), DEFINITION)
    assert pool.packages() == frozenset({"blender"})
    (tmp_path / "pool" / "Release").write_text("Origin: afarm\nSHA256:\n 00 1 Packages\n")
    assert pool.packages() == frozenset()
