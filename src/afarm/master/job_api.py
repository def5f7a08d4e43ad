# SPDX-License-Identifier: MIT
"""The job port: upload inputs, submit jobs, and cancel, pause, resume or requeue them."""


from aiohttp import web

from afarm.errors import IllegalTransition, UsageError
from afarm.master import auth
from afarm.master.farm import Farm
from afarm.master.files import check_sha
from afarm.master.http import job_request
from afarm.master.http.limits import json_body
from afarm.master.http_util import int_arg, job_json, job_or_404, upload_chunks
from afarm.model.job import JobSpec
from afarm.model.status import JobStatus
from afarm.project.header import BadBlend, StreamCheck

ACTIONS = ("cancel", "pause", "resume", "requeue", "priority")
# The job statuses each action may start from; anything else is a conflict, not a no-op.
ALLOWED = {
    "cancel": {JobStatus.QUEUED, JobStatus.ACTIVE, JobStatus.PAUSED},
    "pause": {JobStatus.QUEUED, JobStatus.ACTIVE},
    "resume": {JobStatus.PAUSED},
    "requeue": {JobStatus.FAILED, JobStatus.CANCELED},
}


def routes(farm: Farm, max_upload: int, *, idle_timeout: float = 60.0,
           max_tasks: int = 100_000) -> list[web.RouteDef]:
    """``idle_timeout``: seconds an upload may send nothing before it is dropped;
    ``max_tasks``: the most tasks one job may make."""
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
        # ?kind=blend: afarmctl says this is a .blend; a broken one (truncated, corrupt,
        # compressed in a way Blender does not read) is refused now and not kept, so it
        # never reaches a slave.
        blend = StreamCheck("the uploaded .blend") if request.query.get("kind") == "blend" \
            else None
        try:
            async for data in upload_chunks(request, idle_timeout):
                upload.write(data)
                if blend is not None:
                    blend.feed(data)
                if upload.size > max_upload:
                    raise UsageError(f"the file is larger than {max_upload} bytes; raise"
                                     " [job_port] max_upload_mib")
            if blend is not None:
                try:
                    blend.done()
                except BadBlend as exc:
                    raise UsageError(str(exc)) from None
            size = upload.commit()
        except BaseException:
            upload.abort()
            raise
        farm.store.add_file(sha, size)
        return web.json_response({"sha256": sha, "stored": True, "size": size}, status=201)

    async def submit(request: web.Request) -> web.Response:
        body = job_request.check(await json_body(request), max_tasks)
        spec = JobSpec(name=body["name"], application=body["application"],
                       params=body["params"], files=farm.input_files(body["files"]),
                       priority=body["priority"], timeout=body["timeout"],
                       tags=frozenset(body["require_tags"]), scheduling=body["scheduling"])
        spec.app_version = farm.choose_version(spec.application, body["app"])
        policy = spec.scheduling.get("policy")
        if policy is not None and policy not in farm.scheduler.policies:
            raise UsageError(f"--policy {policy}: no such ranking policy on this master; it"
                             " has: " + ", ".join(sorted(farm.scheduler.policies)))
        spec.strict = body["strict"]
        if request.query.get("dry_run"):
            farm.submit(spec, dry_run=True)
            return web.json_response({"dry_run": True, "ok": True})
        job_id = await farm.submit_job(spec)
        job = job_or_404(farm.store, job_id)
        return web.json_response(job_json(farm.store, job, farm.warnings(job),
                                          farm.meter.site.currency), status=201)

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
        elif what == "priority":
            body = await json_body(request)
            value = body.get("priority") if isinstance(body, dict) else None
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 100:
                raise UsageError('priority takes a body {"priority": N}, N a whole number'
                                 " from 0 to 100 (higher runs first)")
            farm.set_priority(job_id, value)
        else:
            raise UsageError(f"unknown action {what!r}; use one of {', '.join(ACTIONS)}")
        farm.wake()
        return web.json_response(job_json(farm.store, job_or_404(farm.store, job_id),
                                          currency=farm.meter.site.currency))

    async def gc(request: web.Request) -> web.Response:
        body = await json_body(request)
        days = body.get("older_than_days") if isinstance(body, dict) else None
        if days is not None and (isinstance(days, bool) or not isinstance(days, int | float)
                                 or not 0 <= days <= 36500):
            raise UsageError("older_than_days must be a number of days from 0 to 36500")
        files = farm.collect_file_garbage(None if days is None else float(days) * 86400)
        slaves = await farm.collect_slave_garbage()
        return web.json_response({**files, "slaves": slaves})

    async def test_slave(request: web.Request) -> web.Response:
        return web.json_response(await farm.test_slave(request.match_info["name"]))

    async def wake_slave(request: web.Request) -> web.Response:
        return web.json_response(farm.wake_slave(request.match_info["name"]))

    async def drain_slave(request: web.Request) -> web.Response:
        return web.json_response(farm.drain_slave(request.match_info["name"], True))

    async def undrain_slave(request: web.Request) -> web.Response:
        return web.json_response(farm.drain_slave(request.match_info["name"], False))

    return [
        # The farm's machines and store: admin tokens only (the default).
        web.post("/api/v1/slaves/{name}/drain", drain_slave),
        web.post("/api/v1/slaves/{name}/undrain", undrain_slave),
        web.post("/api/v1/gc", gc),
        web.post("/api/v1/slaves/{name}/test", test_slave),
        web.post("/api/v1/slaves/{name}/wake", wake_slave),
        # An artist's work: submit tokens too.
        *auth.for_submit(
            web.head("/api/v1/files/{sha}", has_file),
            web.put("/api/v1/files/{sha}", put_file),
            web.post("/api/v1/jobs", submit),
            web.post("/api/v1/jobs/{job}/{action}", action)),
    ]
