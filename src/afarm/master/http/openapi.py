# SPDX-License-Identifier: MIT
"""The OpenAPI 3 description of both ports, served at ``GET /api/v1/openapi.json`` on each.

Written by hand next to the handlers it describes (it is the contract clients and the
schemathesis test hold the master to): every error answer is JSON with an ``error`` text.
"""

from typing import Any

from aiohttp import web

from afarm import __version__
from afarm.master import auth
from afarm.master.http_util import JOBS_PAGE, MAX_JOBS_PAGE

PATH = "/api/v1/openapi.json"
SHA = {"type": "string", "pattern": "^[0-9a-f]{64}$"}
ID = {"type": "integer", "minimum": 0, "maximum": (1 << 63) - 1}

ERROR = {"type": "object", "required": ["error"],
         "properties": {"error": {"type": "string", "minLength": 1},
                        "kind": {"type": "string"}}}
PROGRESS = {"type": "object", "required": ["tasks", "completed", "frames_total",
                                           "frames_done"],
            "additionalProperties": {"type": "integer"}}
JOB = {"type": "object",
       "required": ["id", "name", "application", "status", "priority", "progress"],
       "properties": {
           "id": {"type": "integer"}, "name": {"type": "string"},
           "application": {"type": "string"},
           "app_version": {"type": "string", "description": "the pool version the job"
                           " runs, fixed at submit; empty: the slaves' own program"},
           "status": {"type": "string", "enum": ["queued", "active", "paused", "completed",
                                                 "completed-with-warnings", "failed",
                                                 "canceled"],
                      "description": "completed-with-warnings: every task completed, some"
                                     " with task_warnings (a file the job needs was"
                                     " missing); its frames may be wrong"},
           "task_warnings": {"type": "array", "items": {
               "type": "object", "properties": {"warning": {"type": "string"},
                                                "tasks": {"type": "integer"},
                                                "first_task": {"type": "integer"}}}},
           "warned_tasks": {"type": "integer"},
           "strict": {"type": "boolean"},
           "priority": {"type": "integer"}, "created": {"type": "number"},
           "updated": {"type": "number"},
           "params": {"type": "object", "nullable": True},
           "files": {"type": "array", "items": {"type": "object"}},
           "warnings": {"type": "array", "items": {"type": "string"}},
           "energy": {"type": "object", "required": ["kwh", "cost", "currency", "estimated"],
                      "description": "what the job's attempts used so far; kwh or cost is"
                                     " null when a slave's watts or the price are unknown",
                      "properties": {"kwh": {"type": "number", "nullable": True},
                                     "cost": {"type": "number", "nullable": True},
                                     "currency": {"type": "string"},
                                     "estimated": {"type": "boolean"},
                                     "attempts": {"type": "integer"},
                                     "busy_hours": {"type": "number"}}},
           "progress": PROGRESS}}
TOTALS = {"type": "object", "required": ["kwh", "cost", "busy_hours", "tasks", "attempts"],
          "properties": {"kwh": {"type": "number", "nullable": True},
                         "cost": {"type": "number", "nullable": True},
                         "kwh_known": {"type": "number"}, "cost_known": {"type": "number"},
                         "busy_hours": {"type": "number"}, "tasks": {"type": "integer"},
                         "attempts": {"type": "integer"},
                         "warnings": {"type": "array", "items": {"type": "string"}}}}
REPORT = {"type": "object", "required": ["since", "until", "currency", "total", "jobs",
                                         "slaves"],
          "properties": {"since": {"type": "number"}, "until": {"type": "number"},
                         "currency": {"type": "string"}, "total": TOTALS,
                         "jobs": {"type": "array", "items": TOTALS},
                         "slaves": {"type": "array", "items": TOTALS},
                         # the machines' draw per local day, awake versus asleep
                         "days": {"type": "array", "items": {"type": "object", "properties": {
                             "day": {"type": "string"}, "kwh_awake": {"type": "number"},
                             "kwh_asleep": {"type": "number"},
                             "awake_hours": {"type": "number"},
                             "asleep_hours": {"type": "number"}}}}}}
DATE = {"type": "string", "maxLength": 40,
        "description": "ISO 8601 date or date and time (2026-12-01, 2026-12-01T18:00,"
                       " 2026-12-01T18:00+01:00); without an offset the master's local time"}
RANKING = {
    "type": "object", "required": ["policy", "kind", "description", "columns", "slaves"],
    "properties": {
        "policy": {"type": "string"}, "kind": {"type": "string"},
        "description": {"type": "string"},
        "columns": {"type": "array", "items": {"type": "string"}},
        "slaves": {"type": "array", "items": {
            "type": "object", "required": ["slave", "position", "why", "held", "properties"],
            "properties": {
                "slave": {"type": "string"},
                "position": {"type": "integer", "minimum": 1, "nullable": True},
                "why": {"type": "string"}, "held": {"type": "boolean"},
                "properties": {"type": "object", "additionalProperties": {
                    "type": "number", "nullable": True}}}}}}}
JOB_REQUEST = {
    "type": "object", "required": ["name", "application"], "additionalProperties": False,
    "properties": {
        "name": {"type": "string", "minLength": 1, "maxLength": 200},
        "application": {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$",
                        "description": "an application defined on the master"},
        "params": {"type": "object", "description": "the application's parameters, e.g."
                   " frames, chunk, tiles, engine, format, encode, fps, scene (Blender) or"
                   " items, chunk (command applications)"},
        "files": {"type": "array", "maxItems": 10000, "items": {
            "type": "object", "required": ["name", "sha256"],
            "properties": {"name": {"type": "string"}, "sha256": SHA}}},
        "priority": {"type": "integer", "minimum": 0, "maximum": 100, "default": 50},
        "timeout": {"type": "integer", "minimum": 1, "maximum": 604800, "nullable": True,
                    "description": "seconds a task may run"},
        "require_tags": {"type": "array", "maxItems": 64, "items": {
            "type": "string", "minLength": 1, "maxLength": 64}},
        "policy": {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$",
                   "description": "the ranking policy for this job's tasks"},
        "deadline": {"type": "number", "exclusiveMinimum": True, "minimum": 0,
                     "maximum": 1e11, "description": "when the job must be done (seconds"
                     " since 1970), for the cheapest-within-deadline policy"},
        "min_memory_mib": {"type": "integer", "minimum": 0, "maximum": 1 << 30,
                           "description": "only slaves with this much memory"},
        "gpus": {"type": "integer", "minimum": 0, "maximum": 64,
                 "description": "only slaves with at least this many GPUs"},
        "device": {"type": "string", "enum": ["CPU", "GPU"], "default": "CPU",
                   "description": "GPU: each task takes one of a slave's GPU slots (one"
                   " per GPU) and renders on that device only"},
        "app": {"type": "string", "maxLength": 512,
                "description": "which pool version: a constraint written like a Debian"
                " dependency, 'blender (>= 4.2), blender (<< 5)'; the newest version"
                " that satisfies it is fixed at submit (app_version)"}}}
POOL_ENTRY = {"type": "object", "required": ["package", "version", "arch", "sha256", "size"],
              "properties": {"package": {"type": "string"}, "version": {"type": "string"},
                             "arch": {"type": "string"}, "filename": {"type": "string"},
                             "sha256": SHA, "size": {"type": "integer"},
                             "unpacked": {"type": "integer"},
                             "executable": {"type": "string", "nullable": True},
                             "slaves": {"type": "array", "items": {"type": "string"}},
                             "definition": {"type": "object"},
                             "quarantined": {"type": "object", "additionalProperties": {
                                 "type": "string"}}}}
_POOL_KEY = [{"name": "name", "in": "path", "required": True,
              "schema": {"type": "string", "maxLength": 63}},
             {"name": "version", "in": "path", "required": True,
              "schema": {"type": "string", "maxLength": 64}}]


# The {name} of /api/v1/slaves/{name}/... routes.
_SLAVE_NAME = [{"name": "name", "in": "path", "required": True,
                "schema": {"type": "string", "minLength": 1, "maxLength": 255}}]


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


# A slave in GET /api/v1/slaves (more keys come with it: info, last_error, benchmark, ...).
SLAVE_ROW = {"type": "object", "required": ["name", "state", "shown_state"], "properties": {
    "name": {"type": "string"},
    "state": {"type": "string", "description": "the stored state; a connected slave without"
              " a task is online here (kept for scripts written against it)"},
    "shown_state": {"type": "string", "description": "the state as afarmctl slaves shows"
                    " it: pending, asleep, waking, testing, idle, busy, draining, down,"
                    " quarantined, offline, connecting, unreachable, refused or gone"},
    "drained": {"type": "boolean", "description": "afarmctl slave drain: takes no new"
                " task until undrained"},
    "seconds_in_state": {"type": "number", "nullable": True}}}


def _responses(ok: dict[str, Any]) -> dict[str, Any]:
    return {**ok, "4XX": _json(ERROR, "refused; the error says why")}


def _job_param() -> dict[str, Any]:
    return {"name": "job", "in": "path", "required": True, "schema": ID}


def _doc(title: str, paths: dict[str, Any], secured: bool) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "openapi": "3.0.3",
        "info": {"title": title, "version": __version__,
                 "description": "Host must name the master; a browser's Origin must be the"
                                " master's own; bodies are application/json (uploads"
                                " application/octet-stream). A token is admin or"
                                " submit-only; a submit token is refused (403) where an"
                                " operation needs an admin token."},
        "paths": {PATH: {"get": {"summary": "this description", "security": [],
                                 "responses": {"200": _json({"type": "object"},
                                                            "OpenAPI 3")}}},
                  **paths},
        "components": {"securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}},
    }
    if secured:
        doc["security"] = [{"bearer": []}]
    return doc


DEPS_REQUEST = {
    "type": "object", "required": ["blend"],
    "properties": {
        "blend": {"type": "string", "description": "the .blend's name in the job"
                  " (shots/a.blend)"},
        "files": {"type": "array", "maxItems": 10000, "items": {
            "type": "object", "required": ["name", "sha256"],
            "properties": {"name": {"type": "string"}, "sha256": SHA}}}}}
DEPS = {
    "type": "object", "required": ["blend", "dependencies", "missing"],
    "properties": {
        "blend": {"type": "string"},
        "missing": {"type": "integer", "description": "how many are not present"},
        "dependencies": {"type": "array", "items": {
            "type": "object",
            "required": ["path", "raw", "present", "files", "wanted_by", "reason"],
            "properties": {
                "path": {"type": "string", "description": "relative to the .blend's"
                         " directory (as stored, where it leaves the uploaded files)"},
                "raw": {"type": "string", "description": "as stored in the .blend"},
                "sequence": {"type": "boolean", "description": "UDIM tiles, an image"
                             " sequence or a cache directory"},
                "present": {"type": "boolean"},
                "files": {"type": "array", "items": {"type": "string"},
                          "description": "the uploaded names that satisfy it"},
                "wanted_by": {"type": "array", "items": {"type": "string"}},
                "reason": {"type": "string", "description": "why it is missing: not"
                           " uploaded, outside the uploaded files"}}}}}}


# The job port's operations a submit-only token may not use (afarm.master.auth); a unit
# test holds this list to the routes' own declarations.
ADMIN_ONLY = frozenset({
    ("post", "/api/v1/slaves/{name}/drain"), ("post", "/api/v1/slaves/{name}/undrain"),
    ("post", "/api/v1/slaves/{name}/test"), ("post", "/api/v1/slaves/{name}/wake"),
    ("post", "/api/v1/slaves/{name}/accept"), ("post", "/api/v1/slaves/{name}/reject"),
    ("post", "/api/v1/gc"), ("put", "/api/v1/apps/{name}/{version}"),
    ("post", "/api/v1/apps/{name}/{version}/remove"), ("post", "/api/v1/enroll-tokens")})


def _admin_only(paths: dict[str, Any]) -> dict[str, Any]:
    for method, path in ADMIN_ONLY:
        if path not in paths:
            continue  # not described (POST /api/v1/gc)
        paths[path][method]["responses"]["403"] = _json(
            ERROR, "the token is submit-only (kind forbidden): this needs an admin token")
        paths[path][method]["description"] = "Needs an admin token."
    return paths


def job_port() -> dict[str, Any]:
    sha = {"name": "sha", "in": "path", "required": True, "schema": SHA}
    stored = {"type": "object", "required": ["sha256", "stored"],
              "properties": {"sha256": SHA, "stored": {"type": "boolean"},
                             "size": {"type": "integer"}}}
    return _doc("afarm job port", _admin_only({
        "/api/v1/files/{sha}": {
            "head": {"summary": "whether the master has a file", "parameters": [sha],
                     "responses": {"200": {"description": "it has it"},
                                   "404": {"description": "it does not"},
                                   "400": {"description": "not a sha256"},
                                   "401": {"description": "no valid token"}}},
            "put": {"summary": "upload a file by its sha256 (kind=blend: refused, and not"
                               " kept, unless it is a complete .blend Blender reads)",
                    "parameters": [sha, {"name": "kind", "in": "query",
                                         "schema": {"type": "string", "enum": ["blend"]}}],
                    "requestBody": {"required": True, "content": {
                        "application/octet-stream": {"schema": {"type": "string",
                                                                "format": "binary"}}}},
                    "responses": _responses({"200": _json(stored, "already there"),
                                             "201": _json(stored, "stored")})}},
        "/api/v1/files/{sha}/dependencies": {
            "post": {"summary": "the dependency report of an uploaded .blend (sha): every"
                                " path it needs, traced by the master among the uploaded"
                                " files as the job names them, present or missing",
                     "parameters": [sha],
                     "requestBody": {"required": True, "content": {"application/json": {
                         "schema": DEPS_REQUEST}}},
                     "responses": _responses({"200": _json(DEPS, "the report")})}},
        "/api/v1/jobs": {
            "post": {"summary": "submit a job",
                     "parameters": [{"name": "dry_run", "in": "query",
                                     "schema": {"type": "string", "enum": ["1"]}}],
                     "requestBody": {"required": True, "content": {
                         "application/json": {"schema": JOB_REQUEST}}},
                     "responses": _responses({
                         "200": _json({"type": "object"}, "dry run: the job would be"
                                                          " accepted"),
                         "201": _json(JOB, "accepted, with all its tasks")})}},
        "/api/v1/jobs/{job}/{action}": {
            "post": {"summary": "cancel, pause, resume or requeue a job, or set its"
                                " priority (body {\"priority\": 0..100})",
                     "parameters": [_job_param(), {
                         "name": "action", "in": "path", "required": True,
                         "schema": {"type": "string",
                                    "enum": ["cancel", "pause", "resume", "requeue",
                                             "priority"]}}],
                     "requestBody": {"content": {"application/json": {
                         "schema": {"type": "object"}}}},
                     "responses": _responses({"200": _json(JOB, "the job afterwards")})}},
        "/api/v1/slaves/{name}/wake": {
            "post": {"summary": "send a sleeping slave its Wake-on-LAN magic packet now",
                     "parameters": _SLAVE_NAME,
                     "requestBody": {"content": {"application/json": {
                         "schema": {"type": "object"}}}},
                     "responses": _responses({"200": _json({
                         "type": "object", "required": ["name", "state", "mac"],
                         "properties": {"name": {"type": "string"},
                                        "state": {"type": "string"},
                                        "mac": {"type": "string"}}},
                         "the slave, now waking")})}},
        **{f"/api/v1/slaves/{{name}}/{verb}": {
            "post": {"summary": summary,
                     "parameters": _SLAVE_NAME,
                     "requestBody": {"content": {"application/json": {
                         "schema": {"type": "object"}}}},
                     "responses": _responses({"200": _json({
                         "type": "object", "required": ["name", "state", "drained"],
                         "properties": {"name": {"type": "string"},
                                        "state": {"type": "string"},
                                        "drained": {"type": "boolean"},
                                        "running": {"type": "integer"}}},
                         "the slave afterwards")})}}
            for verb, summary in (
                ("drain", "give a slave no new tasks: its running tasks finish, then"
                          " (with [power] enabled and a MAC) it may be suspended"),
                ("undrain", "let a drained slave take tasks again"))},
        "/api/v1/slaves/{name}/test": {
            "post": {"summary": "run a slave's acceptance test again now: it is online when"
                                " it passes, quarantined (no tasks) with the reason when not",
                     "parameters": _SLAVE_NAME,
                     "requestBody": {"content": {"application/json": {
                         "schema": {"type": "object"}}}},
                     "responses": _responses({"200": _json({
                         "type": "object", "required": ["name", "state", "passed"],
                         "properties": {"name": {"type": "string"},
                                        "state": {"type": "string"},
                                        "passed": {"type": "boolean"},
                                        "reason": {"type": "string"},
                                        "checks": {"type": "array",
                                                   "items": {"type": "object"}}}},
                         "the acceptance record")})}},
        "/api/v1/slaves/{name}/accept": {
            "post": {"summary": "accept a slave found by Avahi (pending): the master enrols it"
                                " with a token bound to its name and the host-key"
                                " fingerprint given here, which must be the one announced",
                     "parameters": _SLAVE_NAME,
                     "requestBody": {"required": True, "content": {"application/json": {
                         "schema": {"type": "object", "required": ["fingerprint"],
                                    "properties": {"fingerprint": {
                                        "type": "string", "maxLength": 100}}}}}},
                     "responses": _responses({"200": _json({
                         "type": "object", "required": ["name", "fingerprint", "state"],
                         "properties": {"name": {"type": "string"},
                                        "fingerprint": {"type": "string"},
                                        "address": {"type": "string"},
                                        "state": {"type": "string"},
                                        "master": {"type": "string"}}},
                         "the slave enrolled")})}},
        "/api/v1/slaves/{name}/reject": {
            "post": {"summary": "forget a slave found by Avahi (pending, or the warning"
                                " about another host key announced under its name)",
                     "parameters": _SLAVE_NAME,
                     "requestBody": {"content": {"application/json": {
                         "schema": {"type": "object"}}}},
                     "responses": _responses({"200": _json({
                         "type": "object", "required": ["name", "forgotten"]},
                         "forgotten")})}},
        "/api/v1/apps": {
            "get": {"summary": "the pool's application versions and the slaves holding each",
                    "responses": _responses({"200": _json({
                        "type": "object", "required": ["versions"], "properties": {
                            "versions": {"type": "array", "items": POOL_ENTRY}}},
                        "the versions")})}},
        "/api/v1/apps/{name}/{version}": {
            "put": {"summary": "add a version to the pool: the body is its archive",
                    "parameters": [*_POOL_KEY,
                                   {"name": "filename", "in": "query", "required": True,
                                    "schema": {"type": "string", "maxLength": 201}},
                                   {"name": "arch", "in": "query",
                                    "schema": {"type": "string",
                                               "enum": ["amd64", "arm64", "all"]}},
                                   {"name": "executable", "in": "query",
                                    "schema": {"type": "string", "maxLength": 501}},
                                   {"name": "definition", "in": "query",
                                    "schema": {"type": "string", "maxLength": 4096}}],
                    "requestBody": {"required": True, "content": {
                        "application/octet-stream": {"schema": {"type": "string",
                                                                "format": "binary"}}}},
                    "responses": _responses({"201": _json(POOL_ENTRY, "added")})}},
        "/api/v1/apps/{name}/{version}/remove": {
            "post": {"summary": "remove a version (refused while an unfinished job needs it)",
                     "parameters": _POOL_KEY,
                     "requestBody": {"content": {"application/json": {
                         "schema": {"type": "object"}}}},
                     "responses": _responses({"200": _json({"type": "object"},
                                                           "removed")})}},
        "/api/v1/enroll-tokens": {
            "post": {"summary": "make a one-time slave enrolment token",
                     "requestBody": {"content": {"application/json": {"schema": {
                         "type": "object", "properties": {
                             "ttl": {"type": "integer", "minimum": 60, "maximum": 604800},
                             "label": {"type": "string", "maxLength": 60}}}}}},
                     "responses": _responses({"201": _json({
                         "type": "object", "required": ["token", "command"]}, "the token,"
                         " shown once")})}},
        "/api/v1/enroll": {
            "post": {"summary": "a slave enrols (signed with its enrolment token)",
                     "security": [],
                     "parameters": [{"name": "X-Afarm-Enroll-MAC", "in": "header",
                                     "required": True, "schema": {"type": "string"}}],
                     "requestBody": {"required": True, "content": {"application/json": {
                         "schema": {"type": "object", "required": ["token_id", "name",
                                                                   "address", "host_key"]}}}},
                     "responses": _responses({"200": _json({"type": "object"},
                                                           "enrolled")})}},
    }), secured=True)


def results_port(secured: bool) -> dict[str, Any]:
    text = {"description": "text", "content": {"text/plain": {"schema": {"type": "string"}}}}
    return _doc("afarm results port", {
        "/": {"get": {"summary": "what this port serves",
                      "responses": _responses({"200": _json({"type": "object"}, "links")})}},
        "/api/v1/jobs": {"get": {
            "summary": "a page of jobs, newest first (params left out)",
            "description": "Keyset paging: the newest `limit` jobs with an id below"
                           " `before`. X-Total-Count counts every job; while older ones"
                           " remain, a Link header with rel=\"next\" names the next page.",
            "parameters": [
                {"name": "before", "in": "query", "description": "only jobs with a smaller"
                 " id (the next page's, from the Link header)", "schema": ID},
                {"name": "limit", "in": "query", "description": "jobs on the page",
                 "schema": {"type": "integer", "minimum": 1, "maximum": MAX_JOBS_PAGE,
                            "default": JOBS_PAGE}}],
            "responses": _responses({"200": {
                **_json({"type": "array", "items": JOB}, "jobs"),
                "headers": {
                    "X-Total-Count": {"description": "every job, on this page or another",
                                      "schema": {"type": "integer", "minimum": 0}},
                    "Link": {"description": "the next, older page while there is one:"
                             ' </api/v1/jobs?before=ID&limit=N>; rel="next"',
                             "schema": {"type": "string"}}}}})}},
        "/api/v1/jobs/{job}": {"get": {
            "summary": "a job with its tasks and outputs", "parameters": [_job_param()],
            "responses": _responses({"200": _json({**JOB, "required": [
                *JOB["required"], "tasks", "outputs"]}, "the job")})}},
        "/api/v1/jobs/{job}/log": {"get": {
            "summary": "the task logs of a job",
            "parameters": [_job_param(), {"name": "task", "in": "query",
                                          "schema": {"type": "string", "maxLength": 20}}],
            "responses": _responses({"200": text})}},
        "/api/v1/jobs/{job}/outputs/{path}": {"get": {
            "summary": "download an output",
            "parameters": [_job_param(), {"name": "path", "in": "path", "required": True,
                                          "schema": {"type": "string"}}],
            "responses": _responses({"200": {"description": "the file", "content": {
                "application/octet-stream": {"schema": {"type": "string",
                                                        "format": "binary"}}}}})}},
        "/api/v1/slaves": {"get": {"summary": "the slaves and their state",
                                   "responses": _responses({"200": _json(
                                       {"type": "array", "items": SLAVE_ROW},
                                       "slaves")})}},
        "/api/v1/report": {"get": {
            "summary": "kWh, cost, busy hours and tasks per job and per slave of the attempts"
                       " that ended in [since, until)",
            "parameters": [{"name": "since", "in": "query", "required": True, "schema": DATE},
                           {"name": "until", "in": "query", "schema": DATE}],
            "responses": _responses({"200": _json(REPORT, "the totals")})}},
        "/api/v1/slaves/rank": {"get": {
            "summary": "the slaves ranked by a policy: the matrix, the order and why",
            "parameters": [{"name": "job", "in": "query", "schema": ID,
                            "description": "rank for this job (its tags, application and"
                                           " inputs)"},
                           {"name": "policy", "in": "query",
                            "schema": {"type": "string", "maxLength": 64},
                            "description": "a policy name (default: the master's)"}],
            "responses": _responses({"200": _json(RANKING, "the ranking")})}},
        "/api/v1/events": {"get": {
            "summary": "live events as server-sent events (a stream that does not end)",
            "parameters": [{"name": "after", "in": "query", "schema": ID},
                           {"name": "job", "in": "query", "schema": ID}],
            "responses": _responses({"200": {"description": "the stream", "content": {
                "text/event-stream": {"schema": {"type": "string"}}}}})}},
        "/addon/afarm_blender.zip": {"get": {
            "summary": "the Blender add-on, to install with Blender's add-on preferences",
            "security": [],
            "responses": {"200": {"description": "the add-on", "content": {
                "application/zip": {"schema": {"type": "string", "format": "binary"}}}}}}},
    }, secured=secured)


def route(doc: dict[str, Any]) -> web.RouteDef:
    async def serve(request: web.Request) -> web.Response:
        return web.json_response(doc)

    return auth.for_submit(web.get(PATH, serve))[0]
