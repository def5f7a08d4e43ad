# SPDX-License-Identifier: MIT
"""Where each traced file lands in the job tree, and what the .blend copies must say:
names stay inside the job whatever the paths in a .blend say."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from afarm.errors import UsageError
from afarm.project import pack as pack_mod
from afarm.project.names import check_name, job_name
from afarm.project.pack import expand_extra, pack_trace, project_root
from afarm.project.rewrite import relative, wanted_path
from afarm.project.trace import Dependency, Missing, Trace, Usage, lexical, private, trace


def dep(path: Path, data: bytes = b"x") -> Dependency:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return Dependency(path, len(data), "0" * 64, (), path.suffix == ".blend")


def usage(blend: Path, target: Path, raw: bytes) -> Usage:
    return Usage(blend, "image 'x'", raw, target, False, 1, None, None, (target,))


def test_files_keep_their_place_relative_to_the_nearest_common_root(tmp_path: Path) -> None:
    main = dep(tmp_path / "film" / "shots" / "a.blend", b"BLENDER")
    lib = dep(tmp_path / "film" / "assets" / "chars.blend")
    tr = Trace(main.path, [main, lib], [], [])
    assert project_root(tr, []) == tmp_path / "film"
    p = pack_trace(tr)
    assert [f.name for f in p.files] == ["shots/a.blend", "assets/chars.blend"]
    assert p.main == "shots/a.blend" and not any(f.rewritten for f in p.files)
    p.close()


def test_a_given_root_must_hold_the_blend_and_the_with_files(tmp_path: Path) -> None:
    main = dep(tmp_path / "film" / "shots" / "a.blend")
    tr = Trace(main.path, [main], [], [])
    (tmp_path / "film" / "assets").mkdir()
    with pytest.raises(UsageError, match="not inside it"):
        pack_trace(tr, tmp_path / "film" / "assets")
    outside = tmp_path / "elsewhere.txt"
    outside.write_text("x")
    with pytest.raises(UsageError, match="not inside --project-root"):
        pack_trace(tr, tmp_path / "film" / "shots", [outside])
    with pytest.raises(UsageError, match="not a directory"):
        pack_trace(tr, tmp_path / "nowhere")


def test_a_dependency_outside_a_given_root_goes_under_outside(tmp_path: Path) -> None:
    root = tmp_path / "film"
    assert job_name(Path("/srv/tex/wood.png"), root) == "_outside/srv/tex/wood.png"
    assert job_name(root / "a" / "b.png", root) == "a/b.png"


@pytest.mark.parametrize("name", ["", "/etc/passwd", "a/../b", "..", "a//b", "./a",
                                  "a\\b", "a/\x01b", "x" * 256, "a/" * 600 + "b"])
def test_names_the_master_would_refuse_are_refused_here_naming_the_file(name: str) -> None:
    with pytest.raises(UsageError, match="cannot be carried"):
        check_name(name, "the/file")


def test_a_backslash_is_named_as_the_reason() -> None:
    with pytest.raises(UsageError, match="backslash"):
        check_name("tex\\wood.png", "tex\\wood.png")


def test_dotdot_and_absolute_paths_in_a_blend_resolve_by_text_into_the_tree(
        tmp_path: Path) -> None:
    root = tmp_path / "film"
    names = {root / "shots" / "a.blend": "shots/a.blend"}
    # '..' is removed by the text, like Blender; the result is a //relative path.
    target = lexical(f"{root}/shots/../../film/assets/x.png")
    assert target == root / "assets" / "x.png"
    u = usage(root / "shots" / "a.blend", target, b"//../../film/assets/x.png")
    assert wanted_path(u, names, root) == b"//../assets/x.png"
    # An absolute path is mapped into the job tree, relative to the .blend.
    u = usage(root / "shots" / "a.blend", Path("/srv/plates/p.png"), b"/srv/plates/p.png")
    assert wanted_path(u, names, root) == b"//../_outside/srv/plates/p.png"
    # Deeper than the root: '..' can never climb out of the job.
    u = usage(root / "shots" / "a.blend", lexical("/../../../etc/passwd"), b"//../../..")
    assert wanted_path(u, names, root) == b"//../_outside/etc/passwd"


def test_relative_paths_between_job_names() -> None:
    assert relative("assets/chars.blend", "shots/a.blend") == b"//../assets/chars.blend"
    assert relative("tex/x.png", "a.blend") == b"//tex/x.png"
    assert relative("a/b/c.png", "a/b/d/e.blend") == b"//../c.png"


def test_with_directories_are_walked_without_following_symlinked_directory_loops(
        tmp_path: Path) -> None:
    d = tmp_path / "extra"
    (d / "sub").mkdir(parents=True)
    (d / "sub" / "f.txt").write_text("x")
    (d / "sub" / "loop").symlink_to(d)  # a loop: must not be followed forever
    (d / "dangling").symlink_to(tmp_path / "nothing")
    found = expand_extra([d])
    assert found == [d / "sub" / "f.txt"]
    with pytest.raises(UsageError, match="no such file"):
        expand_extra([tmp_path / "missing"])


def test_more_files_than_a_job_takes_are_refused(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pack_mod, "MAX_FILES", 5)
    d = tmp_path / "many"
    d.mkdir()
    for n in range(6):
        (d / f"{n}.png").write_text("x")
    with pytest.raises(UsageError, match="more than 5 files"):
        expand_extra([d])


def test_a_symlink_loop_as_the_blend_is_a_usage_error_naming_it(tmp_path: Path) -> None:
    a, b = tmp_path / "a.blend", tmp_path / "b.blend"
    a.symlink_to(b)
    b.symlink_to(a)
    with pytest.raises(UsageError, match=r"a\.blend: does not exist \(it is a symlink to"):
        trace(a)


def test_a_directory_or_missing_blend_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="is a directory"):
        trace(tmp_path)
    with pytest.raises(UsageError, match="does not exist"):
        trace(tmp_path / "none.blend")


def test_a_non_blend_is_refused_before_tracing(tmp_path: Path) -> None:
    f = tmp_path / "x.blend"
    f.write_bytes(b"PK\x03\x04" + bytes(100))
    with pytest.raises(UsageError, match="zip"):
        trace(f)


def test_missing_files_are_kept_with_their_datablock(tmp_path: Path) -> None:
    main = dep(tmp_path / "a.blend")
    m = Missing(tmp_path / "tex" / "x.png", "image 'x'", main.path)
    p = pack_trace(Trace(main.path, [main], [m], []))
    assert p.missing == [m]
    assert os.path.basename(p.files[0].source) == "a.blend"
    p.close()


@pytest.mark.parametrize("path", ["/proc/self/environ", "/etc/shadow", "/dev/zero",
                                  "/home/ann/.ssh/id_ed25519", "/root/.gnupg/x/y",
                                  "/home/ann/.config/tok"])
def test_private_and_system_files_are_never_carried(path: str) -> None:
    assert private(Path(path))


def test_a_symlink_into_a_private_place_is_not_carried(tmp_path: Path) -> None:
    link = tmp_path / "tex.png"
    link.symlink_to("/proc/self/environ")
    assert private(link) == "a system file"
    assert private(tmp_path / "plain.png") is None
    assert private(Path("/home/ann/film/tex/.hidden.png")) is None  # a dot-file is fine


def test_with_carries_what_the_trace_refused(tmp_path: Path) -> None:
    main = dep(tmp_path / "a.blend")
    extra = tmp_path / "lut.cube"
    extra.write_text("x")
    m = Missing(extra, "image 'x'", main.path, "not carried: a private file")
    p = pack_trace(Trace(main.path, [main], [m], []), extra=[extra])
    assert p.missing == [] and [f.name for f in p.files] == ["a.blend", "lut.cube"]
    p.close()


def test_a_project_inside_a_dot_directory_carries_its_own_files() -> None:
    main = Path("/home/ann/.local/film/shots/a.blend")
    assert private(Path("/home/ann/.local/film/assets/x.png"), main) is None
    assert private(Path("/home/ann/.ssh/id_ed25519"), main)


def test_a_home_outside_home_keeps_its_dot_directories_private(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # Fedora Silverblue's /var/home, NFS's /export/home, /Users: a hostile .blend naming
    # ~/.ssh/id_ed25519 there must not have it uploaded to the farm.
    monkeypatch.setenv("HOME", "/var/home/ann")
    assert private(Path("/var/home/ann/.ssh/id_ed25519"))
    assert private(Path("/var/home/ann/.config/afarm/token"))
    assert private(Path("/var/home/ann/film/tex/wood.png")) is None
    main = Path("/var/home/ann/.local/film/a.blend")
    assert private(Path("/var/home/ann/.local/film/x.png"), main) is None
    assert private(Path("/var/home/ann/.gnupg/secring.gpg"), main)


def missing_usage(blend: Path, target: Path, raw: bytes) -> Usage:
    return Usage(blend, "cache file 'anim.abc'", raw, target, False, 1, None, None, ())


def test_a_missing_relative_dependency_keeps_the_root_above_it(tmp_path: Path) -> None:
    # Otherwise the root is shots/, the .blend lands at the job's top and its
    # '//../caches/anim.abc' leaves the job: the slave refused the file instead of warning.
    main = dep(tmp_path / "film" / "shots" / "a.blend", b"BLENDER")
    gone = tmp_path / "film" / "caches" / "anim.abc"
    tr = Trace(main.path, [main], [Missing(gone, "cache file 'anim.abc'", main.path)],
               [missing_usage(main.path, gone, b"//../caches/anim.abc")])
    assert project_root(tr, []) == tmp_path / "film"
    with pack_trace(tr) as p:
        assert p.main == "shots/a.blend" and not p.files[0].rewritten
    absolute = Trace(main.path, [main], [Missing(gone, "x", main.path)],
                     [missing_usage(main.path, Path("/srv/x.abc"), b"/srv/x.abc")])
    assert project_root(absolute, []) == tmp_path / "film" / "shots"


def test_a_missing_absolute_path_is_rewritten_to_its_place_in_the_job(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from blender_asset_tracer import blendfile

    from afarm.project import rewrite

    class Fake:
        def copy_and_rebind(self, path: Path, mode: str) -> None:
            path.write_bytes(b"BLENDER copy")

        def close(self) -> None:
            pass

    done: list[bytes] = []
    monkeypatch.setattr(blendfile, "open_cached", lambda path: Fake())
    monkeypatch.setattr(rewrite, "_set", lambda bfile, u, new: done.append(new))
    main = dep(tmp_path / "film" / "a.blend", b"BLENDER")
    root = tmp_path / "film"
    usages = [missing_usage(main.path, Path("/srv/x.abc"), b"/srv/x.abc"),
              missing_usage(main.path, root / "y.abc", b"//y.abc"),  # already right
              missing_usage(main.path, Path("/w/C:\\x.abc"), b"C:\\x.abc"),  # cwd's
              missing_usage(main.path, Path("/srv/a\\b.abc"), b"/srv/a\\b.abc")]  # no name
    tr = Trace(main.path, [main], [], usages)
    copies = rewrite.rewrite_blends(tr, {main.path: "a.blend"}, root, tmp_path / "work")
    assert done == [b"//_outside/srv/x.abc"] and list(copies) == [main.path]
