# SPDX-License-Identifier: MIT
"""The job port's pool routes: add, list and remove application versions (afarmctl app).

An archive arrives as the body of a PUT (octet-stream, bounded like any upload) into a
temporary file under the pool, is checked and indexed there (master/pool/index.py), and the
temporary file is removed whatever happens.
"""

import asyncio
import re
import tempfile
from pathlib import Path

from aiohttp import web

from afarm.errors import UsageError
from afarm.master import auth
from afarm.master.farm import Farm
from afarm.master.http.limits import json_body
from afarm.master.http_util import upload_chunks
from afarm.master.pool.definition import parse_definition
from afarm.pool.archive import ArchiveError, suffix_of

_FILENAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,200}$")
_EXECUTABLE = re.compile(r"^[A-Za-z0-9._+-][A-Za-z0-9._+/-]{0,500}$")


def routes(farm: Farm, max_upload: int, idle_timeout: float = 60.0) -> list[web.RouteDef]:
    async def add(request: web.Request) -> web.Response:
        name, version = request.match_info["name"], request.match_info["version"]
        q = request.query
        filename = q.get("filename", "")
        if not _FILENAME.match(filename):
            raise UsageError("filename must be the archive's plain name, e.g."
                             " blender-4.2.3-linux-x64.tar.xz")
        try:
            suffix = suffix_of(filename)
        except ArchiveError as exc:
            raise UsageError(str(exc)) from None
        executable = q.get("executable") or None
        if executable is not None and (not _EXECUTABLE.match(executable)
                                       or ".." in executable.split("/")):
            raise UsageError("--executable must be a relative path inside the archive")
        definition = q.get("definition")
        if definition is not None:  # refused before the upload, not after it
            parse_definition(name, definition)
        if request.content_length is not None and request.content_length > max_upload:
            raise UsageError(f"the archive is {request.content_length} bytes; this master"
                             f" takes at most {max_upload} (raise [job_port] max_upload_mib)")
        incoming = farm.pool.root / ".incoming"
        incoming.mkdir(exist_ok=True)
        with tempfile.TemporaryDirectory(dir=incoming) as tmp:
            path = Path(tmp) / f"upload{suffix}"
            size = 0
            with open(path, "wb") as f:
                async for data in upload_chunks(request, idle_timeout):
                    size += len(data)
                    if size > max_upload:
                        raise UsageError(f"the archive is larger than {max_upload} bytes;"
                                         " raise [job_port] max_upload_mib")
                    f.write(data)
            entry = await asyncio.to_thread(farm.add_version, name, version, path,
                                            q.get("arch", "amd64"), executable,
                                            definition)
        farm.wake()  # slaves may now take tasks of an application only the pool has
        return web.json_response(entry.to_json(), status=201)

    async def listing(request: web.Request) -> web.Response:
        return web.json_response({"versions": await asyncio.to_thread(farm.list_versions)})

    async def remove(request: web.Request) -> web.Response:
        await json_body(request)
        gone = farm.remove_version(request.match_info["name"], request.match_info["version"])
        return web.json_response({"removed": [e.to_json() for e in gone]})

    return [
        *auth.for_submit(web.get("/api/v1/apps", listing)),  # a read; changes are admin
        web.put("/api/v1/apps/{name}/{version}", add),
        web.post("/api/v1/apps/{name}/{version}/remove", remove),
    ]
