# SPDX-License-Identifier: MIT
"""The web page's routes on the results port: HTML views, static assets, thumbnails, zip.

Reading needs what the results port's JSON needs: nothing on a loopback master, else a
token. A browser cannot send a token when it follows a link, so where one is needed the
views answer with a page that asks for it; the page's script keeps it in sessionStorage and
fetches the same view with it in a header (never in a URL or cookie, which another origin's
page could make the browser send).
"""

import asyncio
import hashlib
import re
from collections.abc import Callable
from importlib import resources
from pathlib import Path

from aiohttp import web

from afarm.applications.base import plain_name
from afarm.errors import AfarmError, UsageError
from afarm.master import auth
from afarm.master.farm import Farm
from afarm.master.files import JobDir
from afarm.master.http.guard import split_host
from afarm.master.http_util import Handler, int_arg, int_query
from afarm.master.web import pages, views
from afarm.master.web.thumbs import Thumbnails
from afarm.master.web.zipstream import zip_chunks

STATIC_TYPES = {".js": "text/javascript", ".css": "text/css", ".svg": "image/svg+xml"}
LOG_TAIL = 512 << 10  # bytes of a task log one page shows
ZIPS = 2  # zips streamed at once: each reads the disk as fast as the client takes it
HOST_RE = re.compile(r"^[A-Za-z0-9.-]+$|^[0-9A-Fa-f:.]+$")
Authorized = Callable[[web.Request], bool]
# What the auth middleware lets through to these views: each checks the token itself.
OPEN_PATHS = frozenset({"/", "/jobs", "/slaves"})
OPEN_PREFIXES = ("/jobs/", "/static/")


def static_files() -> dict[str, bytes]:
    """The shipped assets by name (read once: they are small and never change at run time)."""
    root = resources.files("afarm.master.web") / "static"
    return {p.name: p.read_bytes() for p in root.iterdir()
            if p.is_file() and Path(p.name).suffix in STATIC_TYPES}


def csp(request: web.Request, job_port: int | None) -> str:
    """No inline script or style, nothing from elsewhere; connections to this origin and to
    the job port of the same host (where the page sends actions with the token)."""
    connect = "'self'"
    host, _ = split_host(request.host)
    if job_port and host and HOST_RE.match(host):
        shown = f"[{host}]" if ":" in host else host
        connect += f" http://{shown}:{job_port}"
    return ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob:;"
            f" media-src 'self' blob:; connect-src {connect}; base-uri 'none';"
            " form-action 'none'; frame-ancestors 'none'")


def security_headers(request: web.Request, job_port: int | None) -> dict[str, str]:
    return {"Content-Security-Policy": csp(request, job_port),
            "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer",
            "X-Frame-Options": "DENY", "Cache-Control": "no-store", **SAME_ORIGIN}


# Pictures, assets and zips are for this origin's pages only: a page elsewhere must not
# embed them (an <img> needs no CORS, and the guard sees no Origin on it).
SAME_ORIGIN = {"Cross-Origin-Resource-Policy": "same-origin"}


def routes(farm: Farm, *, job_port: int | None = None,
           authorized: Authorized = lambda request: True,
           ffmpeg: str = "/usr/bin/ffmpeg") -> tuple[list[web.RouteDef], Handler]:
    """The routes, and the handler of ``/`` (the results port decides when ``/`` is HTML)."""
    assets = static_files()
    thumbs = Thumbnails(farm.state_dir / "thumbs", ffmpeg)
    zips = asyncio.Semaphore(ZIPS)

    def html(request: web.Request, title: str, main: str, *, view: str, favicon: str = "idle",
             job: int | None = None, status: int = 200) -> web.Response:
        # The newest event before the view read the store: the page listens from there, so
        # nothing that happens while it renders is missed.
        mark = request.get("afarm.last_event", farm.store.last_event_id())
        text = pages.layout(title, main, view=view, job_port=job_port, favicon=favicon,
                            job=job, last_event=mark)
        return web.Response(text=text, status=status, content_type="text/html",
                            charset="utf-8", headers=security_headers(request, job_port))

    def locked(request: web.Request, view: str) -> web.Response:
        text = pages.layout("afarm · token needed", pages.locked_page(), view=view,
                            job_port=job_port, favicon="idle", locked=True)
        return web.Response(text=text, status=401, content_type="text/html", charset="utf-8",
                            headers={**security_headers(request, job_port),
                                     "WWW-Authenticate": "Bearer"})

    def missing(request: web.Request, what: str) -> web.Response:
        return html(request, "afarm · not found", pages.not_found(what), view="none",
                    status=404)

    async def index(request: web.Request) -> web.Response:
        if not authorized(request):
            return locked(request, "jobs")
        request["afarm.last_event"] = farm.store.last_event_id()
        # ?before=ID: an older page (the link at the bottom of a cut list); the live
        # refresh fetches the same URL, so the page it shows stays the one asked for.
        found = views.jobs(farm, farm.clock(), int_query(request, "before"))
        busy = ["active"] if found.running.jobs else []
        return html(request, pages.jobs_title(found.views, found.total, found.running),
                    pages.jobs_page(found, sorted(farm.apps)), view="jobs",
                    favicon=pages.favicon_of([v.status for v in found.views] + busy))

    async def job(request: web.Request) -> web.Response:
        if not authorized(request):
            return locked(request, "job")
        request["afarm.last_event"] = farm.store.last_event_id()
        job_id = int_arg(request, "job")
        found = farm.store.job(job_id)
        if found is None:
            return missing(request, f"There is no job {job_id}.")
        detail = views.job_detail(farm, found, farm.clock())
        page = int_query(request, "page") or 1
        return html(request, pages.job_title(detail.view),
                    pages.job_page(detail, page), view="job", job=job_id,
                    favicon=pages.favicon_of([detail.view.status]))

    async def frame(request: web.Request) -> web.Response:
        if not authorized(request):
            return locked(request, "frame")
        request["afarm.last_event"] = farm.store.last_event_id()
        job_id, key = int_arg(request, "job"), int_arg(request, "frame")
        found = farm.store.job(job_id)
        if found is None:
            return missing(request, f"There is no job {job_id}.")
        frames, _ = views.frames_of(farm, job_id, farm.store.tasks(job_id))
        at = next((i for i, f in enumerate(frames) if f.key == key), None)
        if at is None:
            return missing(request, f"Job {job_id} has no frame {key}.")
        prev = frames[at - 1].key if at > 0 else None
        nxt = frames[at + 1].key if at + 1 < len(frames) else None
        seen = views.job_view(farm, found, None, farm.clock())
        return html(request, pages.job_title(seen, f" frame {key}"),
                    pages.frame_page(job_id, frames[at], prev, nxt, at // views.PAGE + 1),
                    view="frame", job=job_id, favicon=pages.favicon_of([seen.status]))

    async def task_log(request: web.Request) -> web.Response:
        if not authorized(request):
            return locked(request, "log")
        request["afarm.last_event"] = farm.store.last_event_id()
        job_id, task_id = int_arg(request, "job"), int_arg(request, "task")
        task = farm.store.task(task_id)
        if task is None or task.job_id != job_id:
            return missing(request, f"Job {job_id} has no task {task_id}.")
        path = JobDir(farm.jobs_root, job_id).task_log(task_id)
        text, cut = "", 0
        if path.is_file():
            with open(path, "rb") as f:
                size = f.seek(0, 2)
                cut = max(0, size - LOG_TAIL)
                f.seek(cut)
                text = f.read().decode("utf-8", errors="replace")
        return html(request, f"log of task {task_id} · afarm",
                    pages.log_page(job_id, task_id, task.label, text, cut), view="log",
                    job=job_id)

    async def slaves(request: web.Request) -> web.Response:
        if not authorized(request):
            return locked(request, "slaves")
        request["afarm.last_event"] = farm.store.last_event_id()
        found, policy = views.slaves(farm)
        states = {s.state for s in found}
        icon = "failed" if states & {"unreachable", "refused", "quarantined"} else \
            "busy" if "busy" in states else "idle"
        busy = sum(1 for s in found if s.state == "busy")
        return html(request, f"afarm · {busy}/{len(found)} slaves busy",
                    pages.slaves_page(found, policy), view="slaves", favicon=icon)

    tags = {name: '"' + hashlib.sha256(data).hexdigest()[:32] + '"'
            for name, data in assets.items()}

    async def static(request: web.Request) -> web.Response:
        name = request.match_info["name"]
        data = assets.get(name)
        if data is None:
            raise web.HTTPNotFound(text='{"error": "no such file"}',
                                   content_type="application/json")
        # Asked again on every load (an upgrade shows at once), sent again only if changed.
        headers = {"X-Content-Type-Options": "nosniff", "Cache-Control": "no-cache",
                   "ETag": tags[name], **SAME_ORIGIN}
        if request.headers.get("If-None-Match") == tags[name]:
            return web.Response(status=304, headers=headers)
        return web.Response(body=data, content_type=STATIC_TYPES[Path(name).suffix],
                            headers=headers)

    def output_path(request: web.Request) -> Path:
        job_id = int_arg(request, "job")
        if farm.store.job(job_id) is None:
            raise UsageError(f"there is no job {job_id}")
        parts = request.match_info["path"].split("/")
        for p in parts:
            plain_name(p, "output path part")
        return JobDir(farm.jobs_root, job_id).final("out/" + "/".join(parts))

    async def thumb(request: web.Request) -> web.StreamResponse:
        if not authorized(request):
            raise web.HTTPUnauthorized(text='{"error": "a token is needed"}',
                                       content_type="application/json")
        src = output_path(request)
        if not src.is_file():
            raise web.HTTPNotFound(text='{"error": "no such output"}',
                                   content_type="application/json")
        try:
            path = await thumbs.get(src)
        except AfarmError:
            raise web.HTTPNotFound(text='{"error": "no thumbnail"}',
                                   content_type="application/json") from None
        # A thumbnail file per frame content: when the frame is rendered again the URL
        # stays, the file (and so aiohttp's ETag) changes; the browser asks each time and
        # mostly hears 304.
        return web.FileResponse(path, headers={"Content-Type": "image/jpeg",
                                               "Cache-Control": "private, no-cache",
                                               **SAME_ORIGIN})

    async def download(request: web.Request) -> web.StreamResponse:
        if not authorized(request):
            raise web.HTTPUnauthorized(text='{"error": "a token is needed"}',
                                       content_type="application/json")
        job_id = int_arg(request, "job")
        if farm.store.job(job_id) is None:
            raise UsageError(f"there is no job {job_id}")
        jd = JobDir(farm.jobs_root, job_id)
        files = []
        for rel in jd.outputs():
            try:
                files.append((f"job-{job_id}/{rel}", jd.final("out/" + rel)))
            except AfarmError:
                continue  # a link out of the job: never followed
        if zips.locked():
            raise web.HTTPServiceUnavailable(
                text='{"error": "other zips are being sent; try again in a moment"}',
                content_type="application/json", headers={"Retry-After": "10"})
        async with zips:
            resp = web.StreamResponse(headers={
                **SAME_ORIGIN,
                "Content-Type": "application/zip", "X-Content-Type-Options": "nosniff",
                "Content-Disposition": f'attachment; filename="job-{job_id}.zip"'})
            await resp.prepare(request)
            async for chunk in zip_chunks(files):
                if chunk:
                    await resp.write(chunk)
            await resp.write_eof()
            return resp

    # The page only reads (its buttons call the job port): every token may.
    return auth.for_submit(
        web.get("/jobs", index),
        web.get("/jobs/{job}", job),
        web.get("/jobs/{job}/frames/{frame}", frame),
        web.get("/jobs/{job}/tasks/{task}/log", task_log),
        web.get("/jobs/{job}/thumbs/{path:.+}", thumb),
        web.get("/jobs/{job}/download.zip", download),
        web.get("/slaves", slaves),
        web.get("/static/{name}", static),
    ), index


def wants_html(request: web.Request) -> bool:
    """Whether ``/`` should answer with the page: browsers ask for text/html first."""
    accept = request.headers.get("Accept", "")
    return "text/html" in accept.split(",")[0] or accept.startswith("text/html")
