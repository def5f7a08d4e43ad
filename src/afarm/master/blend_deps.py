# SPDX-License-Identifier: MIT
"""The dependency report of an uploaded .blend, for clients that cannot trace it themselves
(the web page): which files it needs, relative to it, and which of them were uploaded.

``POST /api/v1/files/{sha256}/dependencies`` on the job port, with the uploaded files by the
names the job will see them, ``{"blend": "shots/a.blend", "files": [{"name", "sha256"}]}``.
The master lays those files out by name in a scratch directory (links into its file store)
and traces the .blend there with afarm.project.trace (blender-asset-tracer), so libraries
of libraries are followed as they will be on the slave. A path that leaves the uploaded
files is reported missing, never looked up on the master, and no library outside them is
opened.

BAT parses untrusted input: the trace runs in a child process with a bound on time, memory
and file size, so a hostile .blend can neither hang nor exhaust the master. Its temporary
files (BAT decompresses zstd files to one) stay in the scratch directory, removed after.
The child is afarm.master.blend_child, which imports no more than the tracer needs.
"""

from __future__ import annotations

import asyncio
import json
import resource
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

from aiohttp import web

import afarm
from afarm.applications.base import relative_name
from afarm.errors import OperationFailed, UsageError
from afarm.master import auth
from afarm.master.farm import Farm
from afarm.master.files import check_sha
from afarm.master.http.job_request import MAX_FILES
from afarm.master.http.limits import json_body

TIMEOUT = 60.0  # seconds of wall time one trace may take
CPU_SECONDS = 60
MEMORY = 1 << 30  # address space of the tracing process
FILE_SIZE = 2 << 30  # the largest file it may write (a decompressed zstd .blend)
MAX_ANSWER = 16 << 20  # bytes of report read from the child
PARALLEL = 2  # traces at once


def _limits() -> None:  # pragma: no cover - runs in the child before exec
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY, MEMORY))
    resource.setrlimit(resource.RLIMIT_CPU, (CPU_SECONDS, CPU_SECONDS))
    resource.setrlimit(resource.RLIMIT_FSIZE, (FILE_SIZE, FILE_SIZE))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def parse_request(body: Any) -> tuple[str, dict[str, str]]:
    """The .blend's name and the uploaded files (name: sha256) from a request body."""
    if not isinstance(body, dict):
        raise UsageError('give {"blend": NAME, "files": [{"name": ..., "sha256": ...}]}')
    blend = body.get("blend")
    if not isinstance(blend, str):
        raise UsageError("blend: give the .blend's name as the job sees it (shots/a.blend)")
    relative_name(blend, "blend")
    files = body.get("files", [])
    if not isinstance(files, list) or len(files) > MAX_FILES:
        raise UsageError(f"files must be a list of at most {MAX_FILES} {{name, sha256}}")
    named: dict[str, str] = {}
    for f in files:
        if not isinstance(f, dict) or not isinstance(f.get("name"), str) \
                or not isinstance(f.get("sha256"), str):
            raise UsageError("each of files is {name, sha256}")
        named[relative_name(f["name"], "file name")] = check_sha(f["sha256"])
    return blend, named


def lay_out(top: Path, store: Any, files: dict[str, str]) -> list[str]:
    """Links named as the job names them to the stored files; returns the names listed but
    not uploaded (they count as missing)."""
    absent = []
    for name, sha in files.items():
        src = store.path(sha)
        if not src.is_file():
            absent.append(name)
            continue
        dst = top / name
        try:
            dst.parent.mkdir(parents=True, exist_ok=True)
            dst.symlink_to(src)
        except (FileExistsError, NotADirectoryError):
            raise UsageError(f"files name {name!r} both as a file and as a folder (or"
                             " twice); give each file once, by its path in the job") from None
    return absent


async def report(farm: Farm, sha: str, blend: str, files: dict[str, str],
                 slots: asyncio.Semaphore) -> dict[str, Any]:
    if not farm.files.has(sha):
        raise web.HTTPNotFound(text=json.dumps({
            "error": f"no file {sha[:12]} on this master; upload the .blend first",
            "kind": "not-found"}), content_type="application/json")
    if files.get(blend, sha) != sha:
        raise UsageError(f"files names {blend!r} with another sha256 than the .blend's")
    files = {**files, blend: sha}
    scratch = farm.state_dir / "deps"
    scratch.mkdir(parents=True, exist_ok=True)
    async with slots:
        top = Path(tempfile.mkdtemp(dir=scratch))
        try:
            tree = top / "tree"
            tree.mkdir()
            absent = lay_out(tree, farm.files, files)
            answer = await _trace(tree, blend, top)
        finally:
            shutil.rmtree(top, ignore_errors=True)
    for dep in answer["dependencies"]:
        dep["files"] = [f for f in dep["files"] if f not in absent]
        if not dep["files"] and dep["present"]:
            dep.update(present=False, reason="listed but not uploaded")
    answer["missing"] = sum(1 for d in answer["dependencies"] if not d["present"])
    return answer


async def _trace(tree: Path, blend: str, top: Path) -> dict[str, Any]:
    tmp = top / "tmp"
    tmp.mkdir()
    # Only what the child needs: where this afarm is (a source tree or dist-packages).
    env = {"PATH": "/usr/bin:/bin", "TMPDIR": str(tmp), "LANG": "C.UTF-8",
           "PYTHONPATH": str(Path(afarm.__file__).resolve().parent.parent)}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-s", "-m", "afarm.master.blend_child",
        str(tree), blend, stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env,
        preexec_fn=_limits, cwd=str(top))
    try:
        out, err = await asyncio.wait_for(proc.communicate(), TIMEOUT)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise OperationFailed(f"tracing {blend} took over {TIMEOUT:g} s and was stopped;"
                              " submit it with afarmctl, which traces it on your machine")\
            from None
    if len(out) > MAX_ANSWER:
        raise OperationFailed(f"the dependency report of {blend} is too large")
    try:
        answer: dict[str, Any] = json.loads(out)
    except ValueError:
        last = err.decode(errors="replace").strip().splitlines()[-1:]
        why = "it ran out of memory or time" if proc.returncode and proc.returncode < 0 \
            else last[0][:300] if last else "no answer"
        raise OperationFailed(f"tracing {blend} failed: {why}") from None
    if "error" in answer:
        raise UsageError(str(answer["error"])[:1000])
    return answer


def routes(farm: Farm) -> list[web.RouteDef]:
    slots = asyncio.Semaphore(PARALLEL)

    async def dependencies(request: web.Request) -> web.Response:
        sha = check_sha(request.match_info["sha"])
        blend, files = parse_request(await json_body(request))
        return web.json_response(await report(farm, sha, blend, files, slots))

    # Part of submitting: the add-on and the web page ask it before a job is sent.
    return auth.for_submit(web.post("/api/v1/files/{sha}/dependencies", dependencies))
