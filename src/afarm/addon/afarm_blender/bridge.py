# SPDX-License-Identifier: MIT
"""What the add-on does with a master, without Blender: find afarm's client, build the job
request and the project's inputs the way afarmctl does, submit, follow, fetch the last frame.

Everything here calls afarm's own modules (afarm.cli.commands.submission builds and checks
the request as ``afarmctl submit`` does; afarm.cli.ops packs, uploads and submits), so the
add-on and afarmctl never disagree. Debian's Blender runs Debian's Python 3.11, whose
dist-packages (where python3-afarm installs afarm) is on its path already; another Blender
needs the folder holding the ``afarm`` package set in the add-on's preferences.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib
import io
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

DIST_PACKAGES = "/usr/lib/python3/dist-packages"  # where python3-afarm puts afarm
NO_PROJECT = ("this afarm cannot trace projects (afarm.project or blender-asset-tracer is"
              " not installed): the .blend is sent alone, without the textures, libraries"
              " and caches it uses; missing ones show as task warnings after the render")


class BridgeError(Exception):
    """Something the user must fix; the message says what."""


def load_afarm(extra_path: str = "") -> ModuleType:
    """afarm's client operations (afarm.cli.ops): from the configured folder if one is set,
    else from Blender's own path, else from Debian's dist-packages."""
    if sys.version_info < (3, 11):  # noqa: UP036 - Blender may bundle an older Python
        raise BridgeError(f"afarm needs Python 3.11 or later; this Blender runs"
                          f" {sys.version.split()[0]}. Use Debian's blender package or a"
                          " Blender built with Python 3.11 or later")
    if extra_path:
        if not os.path.isfile(os.path.join(extra_path, "afarm", "__init__.py")):
            raise BridgeError(f"the afarm folder in the add-on's preferences, {extra_path!r},"
                              " holds no afarm package; give the folder that contains"
                              " afarm/ (e.g. /usr/lib/python3/dist-packages)")
        if extra_path not in sys.path:
            sys.path.insert(0, extra_path)
    for fallback in ("", DIST_PACKAGES):
        if fallback and fallback not in sys.path:
            sys.path.append(fallback)
        try:
            return importlib.import_module("afarm.cli.ops")
        except ImportError:
            continue
    raise BridgeError("cannot import afarm: install the python3-afarm package, or set the"
                      " folder that holds the afarm package in the add-on's preferences")


@dataclass
class Settings:
    """The job options of the panel, as afarmctl submit takes them."""

    frames: str = ""
    chunk: int = 1
    tiles: str = ""
    encode: bool = False
    priority: int = 50
    tags: str = ""  # comma-separated
    strict: bool = False
    allow_missing: bool = False
    name: str = ""
    scene: str = ""

    def args(self, blend: Path) -> argparse.Namespace:
        """The namespace afarmctl's argument parser would make of the same options."""
        tags = [t.strip() for t in self.tags.split(",") if t.strip()]
        return argparse.Namespace(
            file=str(blend), extra=[], app="blender", name=self.name or None,
            frames=self.frames or None, chunk=self.chunk, tiles=self.tiles or None,
            engine=None, format=None, encode="mp4" if self.encode else None, fps=None,
            scene=self.scene or None, items=None, items_file=None, priority=self.priority,
            timeout=None, require_tags=tags, policy=None, deadline=None, device=None,
            min_memory_mib=None, gpus=None, strict=self.strict, wait=False, json=True,
            project_root=None, dry_run=False, allow_missing=self.allow_missing)


@dataclass
class Scan:
    """The project a submit would carry: job-relative names and sizes, and what is missing
    (each with the datablock that wants it)."""

    files: list[tuple[str, int]] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    note: str = ""  # why the list is partial, when it is
    seconds: float = 0.0


class Farm:
    """One master, as the add-on's preferences name it."""

    def __init__(self, master: str, token: str = "", results: str = "",
                 afarm_path: str = "") -> None:
        self.ops = load_afarm(afarm_path)
        client_mod = importlib.import_module("afarm.cli.client")
        errors = importlib.import_module("afarm.errors")
        self.errors = (errors.UsageError, errors.OperationFailed)
        try:
            self.client = client_mod.Client(master or None, results or None,
                                            token or os.environ.get("AFARM_TOKEN") or None)
        except self.errors as exc:
            raise BridgeError(str(exc)) from None
        if self.client.token is None:
            self.client.token = self.client.local_token()

    def _pack(self, blend: Path) -> Any | None:
        pack_project = getattr(self.ops, "pack_project", None)
        if pack_project is None:
            return None
        try:
            return pack_project(blend, None, [])
        except ImportError:  # afarm.project without blender-asset-tracer
            return None
        except self.errors as exc:
            raise BridgeError(str(exc)) from None

    def scan(self, blend: Path) -> Scan:
        """The dependency list afarmctl submit --dry-run shows (without asking the master)."""
        p = self._pack(blend)
        if p is None:
            return Scan([(blend.name, blend.stat().st_size)], [], NO_PROJECT)
        with p:
            return Scan([(f.name, f.size) for f in p.files], _missing(p), "",
                        getattr(p.trace, "seconds", 0.0))

    def submit(self, blend: Path, settings: Settings) -> tuple[dict[str, Any], Scan]:
        """Pack, upload and submit, as afarmctl submit FILE does; the new job and what was
        carried. Missing files stop it unless settings.allow_missing."""
        commands = importlib.import_module("afarm.cli.commands")
        try:
            request, path = commands.submission(settings.args(blend))
            assert path is not None
            p = self._pack(path)
            if p is None:
                job = self.ops.submit(self.client, request, [(path.name, path)])
                return job, Scan([(path.name, path.stat().st_size)], [], NO_PROJECT)
            with p:
                scan = Scan([(f.name, f.size) for f in p.files], _missing(p), "",
                            getattr(p.trace, "seconds", 0.0))
                if scan.missing and not settings.allow_missing:
                    raise BridgeError(f"{len(scan.missing)} file(s) the .blend needs are"
                                      f" missing, e.g. {scan.missing[0]}; nothing was"
                                      " submitted (restore them, or tick Allow Missing)")
                job = self.ops.submit(self.client, request, p.inputs(),
                                      shas={f.name: f.sha256 for f in p.files})
                return job, scan
        except self.errors as exc:
            raise BridgeError(str(exc)) from None

    def job(self, job_id: int) -> dict[str, Any]:
        try:
            found: dict[str, Any] = self.ops.job(self.client, job_id)
            return found
        except self.errors as exc:
            raise BridgeError(str(exc)) from None

    def last_frame(self, job: dict[str, Any], into: Path) -> Path | None:
        """Download the job's newest frame (the highest numbered one so far) into `into`."""
        frames = sorted(o for o in job.get("outputs", [])
                        if os.path.basename(o).startswith("frame_")
                        and o.lower().endswith((".png", ".exr")))
        if not frames:
            return None
        rel = frames[-1]
        # Named by master and job: another master's job 1 is not this one's.
        farm = hashlib.sha256(self.client.results_url.encode()).hexdigest()[:12]
        dst = into / f"{farm}_job{job['id']}_{os.path.basename(rel)}"
        if not dst.exists():
            into.mkdir(parents=True, exist_ok=True)
            from urllib.parse import quote
            try:
                self.client.download(f"/api/v1/jobs/{job['id']}/outputs/{quote(rel)}", dst)
            except self.errors as exc:
                raise BridgeError(str(exc)) from None
        return dst


def _missing(p: Any) -> list[str]:
    return [f"{m.path} (wanted by the {m.wanted_by})" for m in p.missing]


def progress_text(job: dict[str, Any]) -> str:
    """The job's progress as afarmctl's progress bar words it."""
    bar = importlib.import_module("afarm.cli.progress").ProgressBar(io.StringIO(), False)
    return str(bar.line(job))


def finished(job: dict[str, Any]) -> bool:
    return job.get("status") in ("completed", "completed-with-warnings", "failed",
                                 "canceled")


def outcome(job: dict[str, Any]) -> list[str]:
    """What afarmctl wait prints when the job ends (why it failed, its warnings)."""
    commands = importlib.import_module("afarm.cli.commands")
    lines: list[str] = commands.ending(job)[1]
    return lines
