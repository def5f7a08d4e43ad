# SPDX-License-Identifier: MIT
"""The job port: upload inputs, submit jobs, and cancel, pause, resume or requeue them."""

from typing import Any

from aiohttp import web

from afarm.errors import IllegalTransition, UsageError
from afarm.master.farm import Farm
from afarm.master.files import check_sha
from afarm.master.http_util import int_arg, job_json, job_or_404
from afarm.model.job import JobSpec
from afarm.model.status import JobStatus

ACTIONS = ("cancel", "pause", "resume", "requeue")
# The job statuses each action may start from; anything else is a conflict, not a no-op.
ALLOWED = {
    "cancel": {JobStatus.QUEUED, JobStatus.ACTIVE, JobStatus.PAUSED},
    "pause": {JobStatus.QUEUED, JobStatus.ACTIVE},
    "resume": {JobStatus.PAUSED},
    "requeue": {JobStatus.FAILED, JobStatus.CANCELED},
}


def routes(farm: Farm, max_upload: int) -> list[web.RouteDef]:
    async def has_file(request: web.Request) -> web.Response:
        sha = check_sha(request.match_info["sha"])
        return web.Response(status=200 if farm.files.has(sha) else 404)

    async def put_file(request: web.Request) -> web.Response:
        sha = check_sha(request.match_info["sha"])
        if farm.files.has(sha):
            await request.release()
            return web.json_response({"sha256": sha, "stored": False})
        if request.content_length is not None and request.content_length > max_upload:
            raise UsageError(f"the file is {request.content_length} bytes; this master takes"
                             f" at most {max_upload} (raise [job_port] max_upload_mib)")
        upload = farm.files.writer(sha)
        try:
            async for data in request.content.iter_chunked(1 << 20):
                upload.write(data)
                if upload.size > max_upload:
                    raise UsageError(f"the file is larger than {max_upload} bytes; raise"
                                     " [job_port] max_upload_mib")
            size = upload.commit()
        except BaseException:
            upload.abort()
            raise
        farm.store.add_file(sha, size)
        return web.json_response({"sha256": sha, "stored": True, "size": size}, status=201)

    async def submit(request: web.Request) -> web.Response:
        try:
            body: Any = await request.json()
        except ValueError:
            raise UsageError("the request body is not JSON") from None
        if not isinstance(body, dict):
            raise UsageError("the request body must be a JSON object")
        name = body.get("name")
        app = body.get("application")
        params = body.get("params", {})
        if not isinstance(name, str) or not name.strip() or len(name) > 200:
            raise UsageError("name must be a non-empty text of at most 200 characters")
        if not isinstance(app, str) or not isinstance(params, dict):
            raise UsageError("application must be a name and params an object")
        priority = body.get("priority", 50)
        timeout = body.get("timeout")
        if isinstance(priority, bool) or not isinstance(priority, int) \
                or not 0 <= priority <= 100:
            raise UsageError("--priority must be a whole number from 0 to 100")
        if timeout is not None and (isinstance(timeout, bool) or not isinstance(timeout, int)
                                    or timeout < 1):
            raise UsageError("--timeout must be a whole number of seconds, at least 1")
        tags = body.get("require_tags", [])
        if not isinstance(tags, list) or len(tags) > 64 or not all(
                isinstance(t, str) and 0 < len(t) <= 64 for t in tags):
            raise UsageError("--require-tag must be a list of at most 64 tags of 1 to 64"
                             " characters")
        spec = JobSpec(name=name.strip(), application=app, params=params,
                       files=farm.input_files(body.get("files", [])), priority=priority,
                       timeout=timeout, tags=frozenset(tags))
        if request.query.get("dry_run"):
            farm.submit(spec, dry_run=True)
            return web.json_response({"dry_run": True, "ok": True})
        job_id = await farm.submit_job(spec)
        job = job_or_404(farm.store, job_id)
        return web.json_response(job_json(farm.store, job, farm.warnings(job)), status=201)

    async def action(request: web.Request) -> web.Response:
        job_id = int_arg(request, "job")
        job = job_or_404(farm.store, job_id)
        what = request.match_info["action"]
        if what in ALLOWED and job.status not in ALLOWED[what]:
            raise IllegalTransition(
                f"job {job_id} is {job.status}; {what} applies to "
                + " or ".join(sorted(s.value for s in ALLOWED[what])) + " jobs")
        if what == "cancel":
            farm.cancel_job(job_id)
        elif what == "pause":
            farm.pause_job(job_id)
        elif what == "resume":
            farm.resume_job(job_id)
        elif what == "requeue":
            farm.requeue_job(job_id)
        else:
            raise UsageError(f"unknown action {what!r}; use one of {', '.join(ACTIONS)}")
        farm.wake()
        return web.json_response(job_json(farm.store, job_or_404(farm.store, job_id)))

    async def gc(request: web.Request) -> web.Response:
        try:
            body: Any = await request.json() if request.can_read_body else {}
        except ValueError:
            raise UsageError("the request body is not JSON") from None
        days = body.get("older_than_days") if isinstance(body, dict) else None
        if days is not None and (isinstance(days, bool) or not isinstance(days, int | float)
                                 or not 0 <= days <= 36500):
            raise UsageError("older_than_days must be a number of days from 0 to 36500")
        result: dict[str, Any] = farm.collect_file_garbage(
            None if days is None else float(days) * 86400)
        result["slaves"] = await farm.collect_slave_garbage()
        return web.json_response(result)

    return [
        web.post("/api/v1/gc", gc),
        web.head("/api/v1/files/{sha}", has_file),
        web.put("/api/v1/files/{sha}", put_file),
        web.post("/api/v1/jobs", submit),
        web.post("/api/v1/jobs/{job}/{action}", action),
    ]
