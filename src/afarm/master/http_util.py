# SPDX-License-Identifier: MIT
"""Small helpers shared by the job port and the results port."""

from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from afarm.errors import AfarmError, IllegalTransition, OperationFailed, UsageError
from afarm.model.job import Job
from afarm.store.db import Store

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except UsageError as exc:
        return web.json_response({"error": str(exc), "kind": "usage"}, status=400)
    except IllegalTransition as exc:
        return web.json_response({"error": str(exc), "kind": "conflict"}, status=409)
    except (OperationFailed, AfarmError) as exc:
        return web.json_response({"error": str(exc), "kind": "failed"}, status=422)


def int_arg(request: web.Request, name: str) -> int:
    raw = request.match_info[name]
    try:
        return int(raw)
    except ValueError:
        raise UsageError(f"{name} {raw!r} is not a number") from None


def job_or_404(store: Store, job_id: int) -> Job:
    job = store.job(job_id)
    if job is None:
        raise web.HTTPNotFound(text=f'{{"error": "there is no job {job_id}; list jobs with'
                                    f' afarmctl jobs"}}', content_type="application/json")
    return job


def job_json(store: Store, job: Job, warnings: list[str] | None = None) -> dict[str, Any]:
    return {"id": job.id, "name": job.name, "application": job.application,
            "tags": job.tags, "warnings": warnings or [],
            "status": job.status.value, "priority": job.priority, "created": job.created,
            "updated": job.updated, "params": job.params,
            "files": [{"name": f.name, "sha256": f.sha256, "size": f.size} for f in job.files],
            "progress": store.job_progress(job.id)}
