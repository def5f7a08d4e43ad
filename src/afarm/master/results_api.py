# SPDX-License-Identifier: MIT
"""The results port: read-only JSON of jobs, tasks and slaves, downloads, and live events."""

import asyncio
import json
import logging
from typing import Any

from aiohttp import web

from afarm import addon
from afarm.applications.base import plain_name
from afarm.errors import UsageError
from afarm.master import auth, metering
from afarm.master.farm import Farm
from afarm.master.files import JobDir
from afarm.master.http_util import (
    JOBS_PAGE,
    MAX_JOBS_PAGE,
    Handler,
    bounded_query,
    energy_json,
    int_arg,
    int_query,
    job_json,
    job_or_404,
    time_query,
)
from afarm.master.web.routes import wants_html
from afarm.model.slave import shown
from afarm.store import benchmarks, discovered, usage

_log = logging.getLogger("afarm.master.http")
# Events one stream may have waiting for its client; a client that falls this far behind
# (stalled, or reading slower than the farm produces) is dropped, and its queue freed.
SSE_QUEUE = 10_000
# A job's outputs are whatever its program wrote (an .html, an .svg): served on the web
# page's origin, such a file would run script there, read the page's token and drive the
# job port. sandbox gives the document an opaque origin; it runs and loads nothing.
OUTPUT_HEADERS = {"Content-Security-Policy": "default-src 'none'; img-src 'self';"
                                             " media-src 'self'; sandbox",
                  "X-Content-Type-Options": "nosniff",
                  "Cross-Origin-Resource-Policy": "same-origin"}


def routes(farm: Farm, page: Handler | None = None) -> list[web.RouteDef]:
    """``page``: the web page's view of ``/``, served to browsers (which ask for HTML)."""
    store = farm.store

    def currency() -> str:
        return farm.meter.site.currency

    async def jobs(request: web.Request) -> web.Response:
        # A page of jobs, newest first: the body stays a list (scripts read it so), the
        # headers say how many there are in all and where the next, older page is.
        limit = bounded_query(request, "limit", 1, MAX_JOBS_PAGE, JOBS_PAGE)
        page = store.job_page(limit, int_query(request, "before"))
        headers = {"X-Total-Count": str(page.total)}
        if page.older is not None:
            headers["Link"] = f'</api/v1/jobs?before={page.older}&limit={limit}>; rel="next"'
        # Parameters can be large (a million items); the listing leaves them out.
        return web.json_response([
            {**job_json(store, j, farm.warnings(j), currency()), "params": None}
            for j in page.jobs], headers=headers)

    async def job(request: web.Request) -> web.Response:
        j = job_or_404(store, int_arg(request, "job"))
        data = job_json(store, j, farm.warnings(j), currency())
        failures = store.failures_of_job(j.id)
        warned = store.task_warning_counts(j.id)
        data["tasks"] = [{
            "id": t.id, "index": t.idx, "kind": t.kind, "label": t.label,
            "application": t.application, "status": t.status.value, "attempt": t.attempt,
            "slave": t.slave, "started": t.started, "finished": t.finished,
            "error": t.error, "outputs": t.outputs, "failures": failures.get(t.id, []),
            "warnings": warned.get(t.id, 0) if t.status.value == "completed" else 0,
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
        return web.FileResponse(path, headers=OUTPUT_HEADERS)

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
        return web.Response(text="".join(chunks), content_type="text/plain",
                            headers={"X-Content-Type-Options": "nosniff"})

    async def addon_zip(request: web.Request) -> web.Response:
        # The Blender add-on, for Edit > Preferences > Add-ons > Install (no token needed:
        # it is the code the package ships, and a browser must be able to download it).
        return web.Response(body=addon.addon_zip(), content_type="application/zip",
                            headers={"Content-Disposition":
                                     f'attachment; filename="{addon.NAME}.zip"'})

    async def slaves(request: web.Request) -> web.Response:
        rows = {s["name"]: s for s in store.slaves()}
        measured = benchmarks.latest(store.db)
        out = []
        for name, d in sorted(farm.dispatchers.items()):
            row: dict[str, Any] = rows.get(name, {"name": name, "last_error": ""})
            row.update({"name": name, "state": d.state, "slots": d.slots,
                        "running": sorted(d.running), "tags": d.tags,
                        "bytes_sent": farm.bytes_sent.get(name, 0),
                        "benchmark": measured[name].as_json() if name in measured else None})
            # `state` is the stored word (online for a connected idle slave, kept for
            # scripts written against it); `shown_state` is what afarmctl slaves shows.
            row["shown_state"] = shown(d.state)
            row["drained"] = bool(getattr(d, "drained", False))
            # Pool versions it failed the acceptance test of (NAME/VERSION -> why).
            row["quarantined_versions"] = dict(getattr(d, "quarantined", {}))
            since = row.get("state_since")  # time in state (the power states among them)
            row["seconds_in_state"] = farm.clock() - since if since is not None else None
            out.append(row)
        # Slaves found by Avahi: pending ones (no work until accepted), and warnings about
        # enrolled ones announced with another host key.
        for found in discovered.all_rows(store.db):
            if found.name in farm.dispatchers:
                if found.warning:
                    for row in out:
                        if row["name"] == found.name:
                            row["discovery_warning"] = found.warning
                continue
            if found.state == discovered.KNOWN:
                continue  # its definition was removed: nothing to show
            out.append({"name": found.name, "state": found.state,
                        "shown_state": found.state, "drained": False, "slots": 0,
                        "running": [], "tags": [], "bytes_sent": 0, "benchmark": None,
                        "last_error": found.warning, "discovered": found.as_json()})
        return web.json_response(out)

    async def slave_rank(request: web.Request) -> web.Response:
        job_id = int_query(request, "job")
        name = request.query.get("policy")
        sched = farm.scheduler
        policy = sched.policies.get(name) if name else sched.ranking_policy
        if policy is None:
            raise UsageError(f"policy {str(name)[:40]!r} is not defined on this master; it has: "
                             + ", ".join(sorted(sched.policies)))
        job = job_or_404(store, job_id) if job_id is not None else None
        return web.json_response(sched.ranking(policy, job).to_json())

    async def events(request: web.Request) -> web.StreamResponse:
        after = int_query(request, "after") or 0
        # A browser's EventSource reconnects with the last id it saw: go on from there.
        seen = request.headers.get("Last-Event-ID", "")
        if seen.isascii() and seen.isdigit() and len(seen) <= 19:
            after = max(after, int(seen))
        job_id = int_query(request, "job")
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(SSE_QUEUE)

        dropped = False

        def listener(event: dict[str, Any]) -> None:
            nonlocal dropped
            if dropped or (job_id is not None and event.get("job") != job_id):
                return
            try:
                queue.put_nowait(event)
            except asyncio.QueueFull:
                # The handler is stuck writing to a client that does not read: cut the
                # connection, which ends that write, the handler and its queue.
                dropped = True
                if listener in farm.listeners:
                    farm.listeners.remove(listener)
                _log.warning("event stream to %s dropped: %d events waiting, the client does"
                            " not read them", request.remote, SSE_QUEUE)
                if request.transport is not None:
                    request.transport.abort()

        farm.listeners.append(listener)
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream",
                                           "Cache-Control": "no-cache"})
        try:
            await resp.prepare(request)
            # The past in pages, so a long history never sits in memory at once.
            last = after
            while batch := store.events(after=last, job_id=job_id, limit=1000):
                for ev in batch:
                    await resp.write(_sse(ev))
                last = batch[-1]["id"]
            while True:
                try:
                    ev = await asyncio.wait_for(queue.get(), timeout=15)
                except TimeoutError:
                    await resp.write(b": keepalive\n\n")
                    continue
                if isinstance(ev.get("id"), int) and ev["id"] <= last:
                    continue  # already sent from the store
                await resp.write(_sse(ev))
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            if listener in farm.listeners:
                farm.listeners.remove(listener)
        return resp

    async def report(request: web.Request) -> web.Response:
        since = time_query(request, "since")
        until = time_query(request, "until")
        if since is None:
            raise UsageError("since is missing; give it as a date, e.g. since=2026-12-01")
        if until is None:
            until = farm.clock() + 1
        if until <= since:
            raise UsageError("until must be later than since")
        total, per_job, per_slave = usage.report(store.db, since, until)
        names = usage.job_names(store.db, list(per_job))

        def entry(t: usage.Totals) -> dict[str, Any]:
            energy, warnings = energy_json(t, currency())
            return {**t.as_json(), "kwh": energy["kwh"], "cost": energy["cost"],
                    "kwh_known": t.kwh, "cost_known": t.cost, "warnings": warnings}

        return web.json_response({
            "since": since, "until": until, "currency": currency(), "total": entry(total),
            "jobs": [{"job": j, "name": names.get(j, ""), **entry(t)}
                     for j, t in per_job.items()],
            "slaves": [{"slave": s, **entry(t)} for s, t in per_slave.items()],
            "days": metering.energy_by_day(farm.meter, since, until)})

    async def index(request: web.Request) -> web.StreamResponse:
        if page is not None and wants_html(request):
            return await page(request)
        return web.json_response({"afarm": "results port", "jobs": "/api/v1/jobs",
                                  "slaves": "/api/v1/slaves", "events": "/api/v1/events",
                                  "report": "/api/v1/report?since=DATE"})

    # The results port only reads: every token may (and none where it needs none).
    return auth.for_submit(
        web.get("/", index),
        web.get("/api/v1/jobs", jobs),
        web.get("/api/v1/jobs/{job}", job),
        web.get("/api/v1/jobs/{job}/log", log),
        web.get("/api/v1/jobs/{job}/outputs/{path:.+}", output),
        web.get("/api/v1/slaves", slaves),
        web.get("/api/v1/slaves/rank", slave_rank),
        web.get("/api/v1/events", events),
        web.get("/api/v1/report", report),
        web.get(addon.PATH, addon_zip))


def _sse(ev: dict[str, Any]) -> bytes:
    ev_id = ev.get("id")
    head = f"id: {ev_id}\n" if ev_id is not None else ""
    return f"{head}event: {ev.get('kind', 'event')}\ndata: {json.dumps(ev)}\n\n".encode()
