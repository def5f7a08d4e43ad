# SPDX-License-Identifier: MIT
"""Small helpers shared by the job port and the results port."""

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime
from typing import Any

from aiohttp import web

from afarm.errors import AfarmError, IllegalTransition, OperationFailed, UsageError
from afarm.model.job import Job
from afarm.model.status import shown_job_status
from afarm.store import usage
from afarm.store.db import Store

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
MAX_ID = (1 << 63) - 1  # SQLite's largest integer
JOBS_PAGE, MAX_JOBS_PAGE = 200, 1000  # jobs GET /api/v1/jobs lists by default, at most
log = logging.getLogger("afarm.master.http")


@web.middleware
async def errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except UsageError as exc:
        # Every refusal leaves a line (the log filter keeps a flood of them short).
        log.info("refused %s %s from %s: %s", request.method, request.path, request.remote,
                 str(exc)[:300])
        return web.json_response({"error": str(exc), "kind": "usage"}, status=400)
    except IllegalTransition as exc:
        return web.json_response({"error": str(exc), "kind": "conflict"}, status=409)
    except (OperationFailed, AfarmError) as exc:
        return web.json_response({"error": str(exc), "kind": "failed"}, status=422)
    except web.HTTPException as exc:
        if exc.status < 400 or exc.content_type == "application/json":
            raise
        # aiohttp's own refusals (no such route, wrong method, body too large) as JSON with
        # a message, like every other error of this API.
        text = (exc.text or exc.reason).strip()
        log.info("refused %s %s from %s: %d %s", request.method, request.path[:200],
                 request.remote, exc.status, text[:200])
        headers = {k: v for k, v in exc.headers.items()
                   if k.lower() not in ("content-type", "content-length")}
        return web.json_response({"error": text, "kind": "http"}, status=exc.status,
                                 headers=headers)


def int_arg(request: web.Request, name: str) -> int:
    raw = request.match_info[name]
    if not (raw.isascii() and raw.isdigit() and len(raw) <= 19) or int(raw) > MAX_ID:
        raise UsageError(f"{name} {raw[:40]!r} is not a number from 0 to {MAX_ID}")
    return int(raw)


def int_query(request: web.Request, name: str) -> int | None:
    """An optional whole-number query parameter, 0 to MAX_ID."""
    raw = request.query.get(name)
    if not raw:
        return None
    if not (raw.isascii() and raw.isdigit() and len(raw) <= 19) or int(raw) > MAX_ID:
        raise UsageError(f"{name} must be a whole number from 0 to {MAX_ID}")
    return int(raw)


def bounded_query(request: web.Request, name: str, low: int, high: int, default: int) -> int:
    """An optional whole-number query parameter from ``low`` to ``high``."""
    raw = request.query.get(name)
    if not raw:
        return default
    if not (raw.isascii() and raw.isdigit() and len(raw) <= 19) or not low <= int(raw) <= high:
        raise UsageError(f"{name} {raw[:40]!r} is not a whole number from {low} to {high}")
    return int(raw)


def time_query(request: web.Request, name: str) -> float | None:
    """A date or date and time query parameter (ISO 8601: 2026-12-01, 2026-12-01T18:00,
    2026-12-01T18:00+01:00; without an offset in the master's local time) as epoch seconds."""
    raw = request.query.get(name)
    if not raw:
        return None
    try:
        when = datetime.fromisoformat(raw[:40])
        if len(raw) > 40:
            raise ValueError(raw)
        return (when if when.tzinfo else when.astimezone()).timestamp()
    except (ValueError, OverflowError, OSError):
        raise UsageError(f"{name} {raw[:40]!r} is not a date; give YYYY-MM-DD or"
                         " YYYY-MM-DDTHH:MM[+HH:MM]") from None


def job_or_404(store: Store, job_id: int) -> Job:
    job = store.job(job_id)
    if job is None:
        raise web.HTTPNotFound(text=json.dumps({
            "error": f"there is no job {job_id}; list jobs with afarmctl jobs"}),
            content_type="application/json")
    return job


def energy_json(totals: usage.Totals | None, currency: str) -> tuple[dict[str, Any], list[str]]:
    """A job's energy and cost for its JSON, and the warnings for what is unknown: a partial
    sum is never passed off as the whole (kwh or cost is then null)."""
    t = totals or usage.Totals()
    warnings = [f"energy unknown: slave {s} has no watts_busy (set it in the slave's"
                " definition or [energy] watts_busy)" for s in t.unknown_slaves]
    if t.unknown_cost and not t.unknown_energy:
        warnings.append("cost unknown: no price per kWh (set [energy] price_per_kwh, a"
                        " tariff or the slave's price)")
    return {"kwh": None if t.unknown_energy else t.kwh,
            "cost": None if t.unknown_cost else t.cost, "currency": currency,
            "estimated": t.measured < t.attempts, "attempts": t.attempts,
            "busy_hours": t.seconds / 3600}, warnings


def job_json(store: Store, job: Job, warnings: list[str] | None = None,
             currency: str = "") -> dict[str, Any]:
    energy, unknown = energy_json(usage.of_jobs(store.db, [job.id]).get(job.id), currency)
    task_warnings, warned = store.task_warnings(job.id)
    return {"id": job.id, "name": job.name, "application": job.application,
            "tags": job.tags, "scheduling": job.scheduling, "app_version": job.app_version,
            "warnings": [*(warnings or []), *unknown], "energy": energy,
            "task_warnings": task_warnings, "warned_tasks": warned,
            "strict": store.job_is_strict(job.id),
            "status": shown_job_status(job.status, warned), "priority": job.priority,
            "created": job.created,
            "updated": job.updated, "params": job.params,
            "files": [{"name": f.name, "sha256": f.sha256, "size": f.size} for f in job.files],
            "progress": store.job_progress(job.id)}


async def upload_chunks(request: web.Request, idle_timeout: float) -> AsyncIterator[bytes]:
    """A request body as it arrives; an upload that sends nothing for ``idle_timeout``
    seconds is dropped (a stalled client must not hold a connection and a temp file)."""
    while True:
        try:
            data = await asyncio.wait_for(request.content.readany(), idle_timeout)
        except TimeoutError:
            raise UsageError(f"the upload sent nothing for {idle_timeout:g} s;"
                             " it was dropped") from None
        if not data:
            return
        yield data
