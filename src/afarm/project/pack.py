# SPDX-License-Identifier: MIT
"""A traced project as a job's file list: each file under a job-relative name, the .blend
files that need it rewritten so that every path they hold is ``//relative`` and lands on
the right name in the job tree.

The layout mirrors the project: a file at ROOT/x/y keeps the name x/y, so the main .blend
at ROOT/shots/a.blend finds ``//../assets/chars.blend`` at assets/chars.blend on the slave.
The root is the nearest common ancestor of the main .blend, its dependencies and the
--with files, unless given. A file outside a given root (or an absolute path that is not
below the root) is mapped to ``_outside/<its absolute path>``. Names are checked as the
master checks them (relative, no '..', no empty part, no backslash or control character,
bounded length), so a file the master would refuse is refused here, naming it.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from afarm.errors import UsageError
from afarm.project.names import job_name
from afarm.project.trace import MAX_FILES, Missing, Trace, lexical, sha256_of
from afarm.project.trace import trace as trace_blend


@dataclass(frozen=True)
class PackedFile:
    name: str  # the job-relative name (what the master stores and the slave links)
    source: Path  # the file to upload: the original, or a rewritten copy of a .blend
    size: int
    sha256: str
    origin: Path  # the file on this machine it stands for
    wanted_by: tuple[str, ...] = ()
    rewritten: bool = False


@dataclass
class Pack:
    root: Path
    main: str  # the main .blend's job-relative name (files[0].name)
    files: list[PackedFile]
    missing: list[Missing]
    trace: Trace = field(repr=False)
    workdir: Path | None = None  # holds the rewritten copies until close()

    def inputs(self) -> list[tuple[str, Path]]:
        """(name, path) pairs as afarm.cli.ops.submit takes them, the main .blend first."""
        return [(f.name, f.source) for f in self.files]

    @property
    def size(self) -> int:
        return sum(f.size for f in self.files)

    def close(self) -> None:
        if self.workdir is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)
            self.workdir = None

    def __enter__(self) -> Pack:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def project_root(tr: Trace, extra: list[Path]) -> Path:
    """The nearest common ancestor of the main .blend, what it needs and `extra`. A missing
    file the .blend names relatively (//...) counts too: its path then still lands inside
    the job on the slave, which warns that it is missing; leaving it out moved the root
    below it, and the slave refused the path as leaving the job (shots/a.blend whose only
    dependency, //../caches/x.abc, was missing)."""
    dirs = [str(tr.main.parent), *(str(d.path.parent) for d in tr.files),
            *(str(p.parent) for p in extra),
            *(str(u.target.parent) for u in tr.usages
              if not u.files and u.raw.startswith(b"//"))]
    return Path(os.path.commonpath(dirs))


def expand_extra(extra: list[str | Path]) -> list[Path]:
    """--with paths: files as given, directories walked (their files, symlinks followed
    for files, not for directories), each as an absolute lexical path."""
    found: list[Path] = []
    for given in extra:
        path = lexical(given)
        if not path.exists():
            raise UsageError(f"--with {given}: no such file or directory")
        if path.is_dir():
            for top, _dirs, names in os.walk(path):
                found += [Path(top) / n for n in sorted(names) if (Path(top) / n).is_file()]
        else:
            found.append(path)
        if len(found) > MAX_FILES:
            raise UsageError(f"--with {given}: more than {MAX_FILES} files; a job takes at"
                             " most that many")
    return found


def pack(blend: Path, project_root_dir: Path | None = None,
         extra: list[str | Path] | None = None, workdir: Path | None = None) -> Pack:
    """Trace `blend`, lay it out under the project root, rewrite the .blend files whose
    paths must change (copies in `workdir`, a new temporary directory by default), and
    return the job's file list. Missing files are in .missing; deciding whether that stops
    the submission is the caller's."""
    tr = trace_blend(blend, lexical(project_root_dir) if project_root_dir else None)
    return pack_trace(tr, project_root_dir, extra, workdir)


def pack_trace(tr: Trace, project_root_dir: Path | None = None,
               extra: list[str | Path] | None = None, workdir: Path | None = None) -> Pack:
    extras = expand_extra(list(extra or []))
    if project_root_dir is not None:
        root = lexical(project_root_dir)
        if not root.is_dir():
            raise UsageError(f"--project-root {project_root_dir}: not a directory")
        if not tr.main.is_relative_to(root):
            raise UsageError(f"--project-root {project_root_dir}: {tr.main} is not inside it;"
                             " the project root must hold the .blend you submit")
        for p in extras:
            if not p.is_relative_to(root):
                raise UsageError(f"--with {p}: not inside --project-root {root}; a script"
                                 " finds it only at its place in the project")
    else:
        root = project_root(tr, extras)
    names = {d.path: job_name(d.path, root) for d in tr.files}
    from afarm.project.rewrite import rewrite_blends

    tmp = workdir or Path(tempfile.mkdtemp(prefix="afarm-pack-"))
    try:
        copies = rewrite_blends(tr, names, root, tmp)
    except BaseException:
        if workdir is None:
            shutil.rmtree(tmp, ignore_errors=True)
        raise
    files: list[PackedFile] = []
    seen: set[str] = set()
    for d in tr.files:
        name = names[d.path]
        copy = copies.get(d.path)
        if copy is not None:
            files.append(PackedFile(name, copy, copy.stat().st_size, sha256_of(copy), d.path,
                                    d.wanted_by, rewritten=True))
        else:
            files.append(PackedFile(name, d.path, d.size, d.sha256, d.path, d.wanted_by))
        seen.add(name)
    for p in extras:
        name = job_name(p, root)
        if name in seen:
            continue
        seen.add(name)
        files.append(PackedFile(name, p, p.stat().st_size, sha256_of(p), p, ("--with",)))
    if len(files) > MAX_FILES:
        raise UsageError(f"the job would carry {len(files)} files; a job takes at most"
                         f" {MAX_FILES}")
    given = set(extras)  # --with carries what the trace would not (e.g. a private file)
    missing = [m for m in tr.missing if m.path not in given]
    return Pack(root, files[0].name, files, missing, tr,
                tmp if workdir is None else None)
