# SPDX-License-Identifier: MIT
"""Archives are unpacked only when every member stays inside and the total is bounded."""

import io
import os
import tarfile
import zipfile
from pathlib import Path

import pytest

from afarm.pool.archive import ArchiveError, inspect, pack_dir, unpack


def make_tar(path: Path, members: list[tarfile.TarInfo],
             data: dict[str, bytes] | None = None) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for ti in members:
            content = (data or {}).get(ti.name)
            if content is not None:
                ti.size = len(content)
                tar.addfile(ti, io.BytesIO(content))
            else:
                tar.addfile(ti)
    return path


def entry(name: str, kind: bytes = tarfile.REGTYPE, link: str = "",
          mode: int = 0o644) -> tarfile.TarInfo:
    ti = tarfile.TarInfo(name)
    ti.type = kind
    ti.linkname = link
    ti.mode = mode
    return ti


def test_a_release_style_tarball_unpacks_with_its_top_directory_and_modes(
        tmp_path: Path) -> None:
    archive = make_tar(tmp_path / "blender-9.9.9-linux-x64.tar.gz", [
        entry("blender-9.9.9-linux-x64", tarfile.DIRTYPE, mode=0o700),
        entry("blender-9.9.9-linux-x64/blender", mode=0o700),
        entry("blender-9.9.9-linux-x64/lib/libx.so.1"),
        entry("blender-9.9.9-linux-x64/lib/libx.so", tarfile.SYMTYPE, "libx.so.1")],
        {"blender-9.9.9-linux-x64/blender": b"#!/bin/true\n",
         "blender-9.9.9-linux-x64/lib/libx.so.1": b"x"})
    info = inspect(archive, 1 << 20)
    assert (info.members, info.unpacked, info.top) == (4, 13, "blender-9.9.9-linux-x64")
    assert unpack(archive, tmp_path / "out", 1 << 20) == 13
    exe = tmp_path / "out" / "blender-9.9.9-linux-x64" / "blender"
    assert exe.read_bytes() == b"#!/bin/true\n"
    assert exe.stat().st_mode & 0o777 == 0o755  # readable by the sandboxed task user
    assert os.readlink(exe.parent / "lib" / "libx.so") == "libx.so.1"


@pytest.mark.parametrize("members", [
    [entry("/etc/evil")],
    [entry("../evil")],
    [entry("a/../../evil")],
    [entry("link", tarfile.SYMTYPE, "/etc")],
    [entry("link", tarfile.SYMTYPE, "../..")],
    [entry("d", tarfile.DIRTYPE), entry("d/up", tarfile.SYMTYPE, ".."),
     entry("esc", tarfile.SYMTYPE, "d/up/..")],
    [entry("link", tarfile.SYMTYPE, "sub"), entry("link/file")],
    [entry("hard", tarfile.LNKTYPE, "/etc/shadow")],
    [entry("hard", tarfile.LNKTYPE, "../../etc/shadow")],
    [entry("hard", tarfile.LNKTYPE, "later"), entry("later")],
    [entry("link", tarfile.SYMTYPE, "x"), entry("hard", tarfile.LNKTYPE, "link")],
    [entry("d", tarfile.DIRTYPE), entry("hard", tarfile.LNKTYPE, "d")],
    [entry("dev", tarfile.CHRTYPE)],
    [entry("fifo", tarfile.FIFOTYPE)],
], ids=["absolute", "dotdot", "inner-dotdot", "abs-symlink", "up-symlink", "symlink-chain",
        "write-through-symlink", "hardlink", "hardlink-up", "hardlink-to-later",
        "hardlink-to-symlink", "hardlink-to-dir", "device", "fifo"])
def test_members_that_could_leave_the_directory_are_refused(
        tmp_path: Path, members: list[tarfile.TarInfo]) -> None:
    archive = make_tar(tmp_path / "bad.tar.gz", members)
    with pytest.raises(ArchiveError, match="refused"):
        unpack(archive, tmp_path / "out", 1 << 20)
    assert not (tmp_path / "evil").exists()


def test_the_unpacked_size_is_bounded_by_what_is_written(tmp_path: Path) -> None:
    archive = make_tar(tmp_path / "big.tar.gz", [entry("zeros")], {"zeros": bytes(4 << 20)})
    with pytest.raises(ArchiveError, match="more than 1 MiB"):
        inspect(archive, 1 << 20)
    with pytest.raises(ArchiveError, match="more than 1 MiB"):
        unpack(archive, tmp_path / "out", 1 << 20)


def test_a_zip_with_an_executable_unpacks_and_one_that_escapes_does_not(
        tmp_path: Path) -> None:
    good = tmp_path / "ok.zip"
    with zipfile.ZipFile(good, "w") as z:
        info = zipfile.ZipInfo("blender")
        info.external_attr = 0o100755 << 16
        z.writestr(info, "#!/bin/true\n")
        z.writestr("bpy/__init__.py", "")
    unpack(good, tmp_path / "out", 1 << 20)
    assert os.access(tmp_path / "out" / "blender", os.X_OK)
    bad = tmp_path / "bad.zip"
    with zipfile.ZipFile(bad, "w") as z:
        z.writestr("../evil", "x")
    with pytest.raises(ArchiveError, match="leaves the archive"):
        unpack(bad, tmp_path / "out2", 1 << 20)
    # A cache file named by its sha256 is recognised as a zip by its first bytes.
    named = tmp_path / ("a" * 64)
    named.write_bytes(good.read_bytes())
    assert inspect(named, 1 << 20).members == 2


def test_a_directory_packs_into_an_archive_that_unpacks_the_same(tmp_path: Path) -> None:
    src = tmp_path / "src"
    (src / "lib").mkdir(parents=True)
    (src / "blender").write_text("#!/bin/true\n")
    (src / "blender").chmod(0o755)
    (src / "lib" / "a").write_text("a")
    pack_dir(src, tmp_path / "v.tar.gz")
    unpack(tmp_path / "v.tar.gz", tmp_path / "out", 1 << 20)
    assert (tmp_path / "out" / "lib" / "a").read_text() == "a"
    assert os.access(tmp_path / "out" / "blender", os.X_OK)


def test_a_zip_symlink_is_read_only_as_far_as_a_link_target_goes(tmp_path: Path) -> None:
    # A zip "symlink" is a member whose data is the target: one that inflates to 256 MiB
    # must be refused before it is read into memory (on the master and on every slave).
    import tracemalloc
    bomb = tmp_path / "bomb.zip"
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as z:
        info = zipfile.ZipInfo("link")
        info.external_attr = 0o120777 << 16
        info.compress_type = zipfile.ZIP_DEFLATED
        with z.open(info, "w") as f:
            block = b"a" * (1 << 20)
            for _ in range(256):
                f.write(block)
    tracemalloc.start()
    try:
        with pytest.raises(ArchiveError, match="symlink"):
            inspect(bomb, 1 << 40)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 16 << 20, f"peak {peak >> 20} MiB"


@pytest.mark.parametrize("kind", [tarfile.XHDTYPE, tarfile.GNUTYPE_LONGNAME])
def test_a_tar_header_extension_is_not_read_into_memory_whole(tmp_path: Path,
                                                              kind: bytes) -> None:
    # tarfile reads a pax or GNU long-name header's data whole before it parses it: one
    # that claims 128 MiB of zeros (a few hundred KB compressed) must be refused first.
    import gzip
    import tracemalloc
    bomb = tmp_path / "bomb.tar.gz"
    size = 128 << 20
    head = tarfile.TarInfo("././@LongLink" if kind == tarfile.GNUTYPE_LONGNAME
                           else "././@PaxHeader")
    head.type, head.size = kind, size
    with gzip.open(bomb, "wb", compresslevel=1) as f:
        f.write(head.tobuf(format=tarfile.USTAR_FORMAT))
        block = bytes(1 << 20)
        for _ in range(size >> 20):
            f.write(block)
        f.write(entry("x").tobuf(format=tarfile.USTAR_FORMAT) + bytes(1024))
    tracemalloc.start()
    try:
        with pytest.raises(ArchiveError, match="header"):
            inspect(bomb, 1 << 40)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 16 << 20, f"peak {peak >> 20} MiB"


def test_a_hard_link_to_an_earlier_file_unpacks_as_that_file(tmp_path: Path) -> None:
    archive = make_tar(tmp_path / "tool-1.0.tar.xz", [
        entry("tool-1.0", tarfile.DIRTYPE),
        entry("tool-1.0/bin/tool", mode=0o755),
        entry("tool-1.0/bin/tool-alias", tarfile.LNKTYPE, "tool-1.0/bin/tool")],
        {"tool-1.0/bin/tool": b"#!/bin/true\n"})
    assert unpack(archive, tmp_path / "out", 1 << 20) == 12
    alias = tmp_path / "out" / "tool-1.0" / "bin" / "tool-alias"
    assert alias.read_bytes() == b"#!/bin/true\n" and os.access(alias, os.X_OK)
    assert alias.stat().st_ino == (alias.parent / "tool").stat().st_ino


def test_a_directory_with_hard_linked_files_packs_and_unpacks(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "python3.11").write_text("py")
    os.link(src / "python3.11", src / "python3")
    pack_dir(src, tmp_path / "v.tar.gz")
    unpack(tmp_path / "v.tar.gz", tmp_path / "out", 1 << 20)
    assert (tmp_path / "out" / "python3").read_text() == "py"
    assert (tmp_path / "out" / "python3").stat().st_nlink == 2
