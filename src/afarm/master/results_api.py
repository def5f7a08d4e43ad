# SPDX-License-Identifier: MIT
"""The results port: read-only JSON of jobs, tasks and slaves, downloads, and live events."""

import asyncio
import json
from typing import Any

from aiohttp import web

from afarm.applications.base import plain_name
from afarm.errors import UsageError
from afarm.master.farm import Farm
from afarm.master.files import JobDir
from afarm.master.http_util import int_arg, job_json, job_or_404


def routes(farm: Farm) -> list[web.RouteDef]:
    store = farm.store

    async def jobs(request: web.Request) -> web.Response:
        # Parameters can be large (a million items); the listing leaves them out.
        return web.json_response([{**job_json(store, j, farm.warnings(j)), "params": None}
                                  for j in store.jobs()])

    async def job(request: web.Request) -> web.Response:
        j = job_or_404(store, int_arg(request, "job"))
        data = job_json(store, j, farm.warnings(j))
        failures = store.failures_of_job(j.id)
        data["tasks"] = [{
            "id": t.id, "index": t.idx, "kind": t.kind, "label": t.label,
            "application": t.application, "status": t.status.value, "attempt": t.attempt,
            "slave": t.slave, "started": t.started, "finished": t.finished,
            "error": t.error, "outputs": t.outputs, "failures": failures.get(t.id, []),
        } for t in store.tasks(j.id)]
        data["outputs"] = JobDir(farm.jobs_root, j.id).outputs()
        data["blocklist"] = [s for _, s in store.blocklist(j.id)]
        return web.json_response(data)

    async def output(request: web.Request) -> web.StreamResponse:
        j = job_or_404(store, int_arg(request, "job"))
        parts = request.match_info["path"].split("/")
        for p in parts:
            plain_name(p, "output path part")
        path = JobDir(farm.jobs_root, j.id).final("out/" + "/".join(parts))
        if not path.is_file():
            raise web.HTTPNotFound(text=json.dumps({"error": "no such output"}),
                                   content_type="application/json")
        return web.FileResponse(path)

    async def log(request: web.Request) -> web.Response:
        j = job_or_404(store, int_arg(request, "job"))
        jd = JobDir(farm.jobs_root, j.id)
        wanted = request.query.get("task")
        chunks = []
        for t in store.tasks(j.id):
            if wanted and str(t.id) != wanted and str(t.idx) != wanted:
                continue
            p = jd.task_log(t.id)
            if p.is_file():
                chunks.append(p.read_text("utf-8", errors="replace"))
        return web.Response(text="".join(chunks), content_type="text/plain")

    async def slaves(request: web.Request) -> web.Response:
        rows = {s["name"]: s for s in store.slaves()}
        out = []
        for name, d in sorted(farm.dispatchers.items()):
            row: dict[str, Any] = rows.get(name, {"name": name, "last_error": ""})
            row.update({"name": name, "state": d.state, "slots": d.slots,
                        "running": sorted(d.running), "tags": d.tags,
                        "bytes_sent": farm.bytes_sent.get(name, 0)})
            out.append(row)
        return web.json_response(out)

    async def events(request: web.Request) -> web.StreamResponse:
        try:
            after = int(request.query.get("after") or 0)
            job_id = int(request.query["job"]) if request.query.get("job") else None
        except ValueError:
            raise UsageError("after and job must be numbers") from None
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        farm.listeners.append(queue.put_nowait)
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream",
                                           "Cache-Control": "no-cache"})
        await resp.prepare(request)
        try:
            for ev in store.events(after=after, job_id=job_id, limit=100_000):
                await resp.write(_sse(ev))
            while True:
                try:
                    ev = await asyncio.wait_for(queue.get(), timeout=15)
                except TimeoutError:
                    await resp.write(b": keepalive\n\n")
                    continue
                if job_id is None or ev.get("job") == job_id:
                    await resp.write(_sse(ev))
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        finally:
            farm.listeners.remove(queue.put_nowait)
        return resp

    async def index(request: web.Request) -> web.Response:
        return web.json_response({"afarm": "results port", "jobs": "/api/v1/jobs",
                                  "slaves": "/api/v1/slaves", "events": "/api/v1/events"})

    return [
        web.get("/", index),
        web.get("/api/v1/jobs", jobs),
        web.get("/api/v1/jobs/{job}", job),
        web.get("/api/v1/jobs/{job}/log", log),
        web.get("/api/v1/jobs/{job}/outputs/{path:.+}", output),
        web.get("/api/v1/slaves", slaves),
        web.get("/api/v1/events", events),
    ]


def _sse(ev: dict[str, Any]) -> bytes:
    ev_id = ev.get("id")
    head = f"id: {ev_id}\n" if ev_id is not None else ""
    return f"{head}event: {ev.get('kind', 'event')}\ndata: {json.dumps(ev)}\n\n".encode()
