# SPDX-License-Identifier: MIT
"""Token scopes: which route each token may use, decided for every route of both ports."""

import asyncio
import re
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from afarm import addon
from afarm.master import auth, blend_deps, discovered, enroll, job_api, pool_api, results_api
from afarm.master.farm import Farm
from afarm.master.http import openapi
from afarm.master.http_util import Handler
from afarm.master.web import routes as web_routes

ADMIN_TOKEN, SUBMIT_TOKEN = "admin-secret", "submit-secret"
TOKENS = {auth.digest(ADMIN_TOKEN): auth.Token(auth.ADMIN, "boss"),
          auth.digest(SUBMIT_TOKEN): auth.Token(auth.SUBMIT, "alice")}

# The decision for every route, written out: a route added without a line here fails
# test_every_route_of_both_ports_has_the_scope_this_table_gives_it.
SUBMIT_ROUTES = {
    # job port
    ("HEAD", "/api/v1/files/{sha}"), ("PUT", "/api/v1/files/{sha}"),
    ("POST", "/api/v1/files/{sha}/dependencies"), ("POST", "/api/v1/jobs"),
    ("POST", "/api/v1/jobs/{job}/{action}"), ("GET", "/api/v1/apps"),
    ("GET", openapi.PATH),
    # results port (reads only)
    ("GET", "/"), ("GET", "/api/v1/jobs"), ("GET", "/api/v1/jobs/{job}"),
    ("GET", "/api/v1/jobs/{job}/log"), ("GET", "/api/v1/jobs/{job}/outputs/{path}"),
    ("GET", "/api/v1/slaves"), ("GET", "/api/v1/slaves/rank"), ("GET", "/api/v1/events"),
    ("GET", "/api/v1/report"), ("GET", addon.PATH),
    ("GET", "/jobs"), ("GET", "/jobs/{job}"), ("GET", "/jobs/{job}/frames/{frame}"),
    ("GET", "/jobs/{job}/tasks/{task}/log"), ("GET", "/jobs/{job}/thumbs/{path}"),
    ("GET", "/jobs/{job}/download.zip"), ("GET", "/slaves"), ("GET", "/static/{name}"),
}
ADMIN_ROUTES = {
    ("POST", "/api/v1/slaves/{name}/drain"), ("POST", "/api/v1/slaves/{name}/undrain"),
    ("POST", "/api/v1/slaves/{name}/test"), ("POST", "/api/v1/slaves/{name}/wake"),
    ("POST", "/api/v1/slaves/{name}/accept"), ("POST", "/api/v1/slaves/{name}/reject"),
    ("POST", "/api/v1/gc"), ("PUT", "/api/v1/apps/{name}/{version}"),
    ("POST", "/api/v1/apps/{name}/{version}/remove"), ("POST", "/api/v1/enroll-tokens"),
    # The slave's own enrolment: its signature is checked instead (enroll.skip_client_auth),
    # so the bearer scope never applies; admin is what it would need otherwise.
    ("POST", "/api/v1/enroll"),
}
EXAMPLE = {"sha": "a" * 64, "job": "1", "action": "cancel", "name": "x", "version": "1",
           "path": "a.png", "frame": "1", "task": "1"}


def farm_in(tmp_path: Path) -> Farm:
    (tmp_path / "state").mkdir(exist_ok=True)
    return Farm(tmp_path / "state", {})


def port_routes(tmp_path: Path) -> list[web.RouteDef]:
    """Both ports' routes, assembled as afarm.master.daemon.serve assembles them."""
    farm = farm_in(tmp_path)
    page_routes, page_index = web_routes.routes(farm, job_port=1)
    d: Any = object()  # the handlers are never called here
    return [*job_api.routes(farm, 1 << 20), *enroll.routes(farm, tmp_path / "state"),
            *pool_api.routes(farm, 1 << 20), openapi.route(openapi.job_port()),
            *discovered.routes(d), *blend_deps.routes(farm),
            *results_api.routes(farm, page_index), *page_routes]


def canonical(path: str) -> str:
    return re.sub(r"\{(\w+):[^}]*\}", r"{\1}", path)


def concrete(path: str) -> str:
    return re.sub(r"\{(\w+)(:[^}]*)?\}", lambda m: EXAMPLE[m.group(1)], path)


def test_every_route_of_both_ports_has_the_scope_this_table_gives_it(tmp_path: Path) -> None:
    decided = {(r.method, canonical(r.path)): auth.route_scope(r.handler)
               for r in port_routes(tmp_path)}
    assert {k for k, v in decided.items() if v == auth.SUBMIT} == SUBMIT_ROUTES
    assert {k for k, v in decided.items() if v == auth.ADMIN} == ADMIN_ROUTES


def test_a_route_nobody_declared_is_admin_only() -> None:
    async def new_feature(request: web.Request) -> web.Response:
        return web.Response()

    assert auth.route_scope(web.post("/api/v1/new", new_feature).handler) == auth.ADMIN


def test_the_openapi_description_gives_403_to_exactly_the_admin_operations() -> None:
    doc = openapi.job_port()
    with403 = {(m.upper(), p) for p, ops in doc["paths"].items() for m, op in ops.items()
               if "403" in op["responses"]}
    described = {(m.upper(), p) for p, ops in doc["paths"].items() for m in ops}
    assert with403 == (ADMIN_ROUTES - {("POST", "/api/v1/enroll")}) & described
    assert {(m.upper(), p) for m, p in openapi.ADMIN_ONLY} \
        == ADMIN_ROUTES - {("POST", "/api/v1/enroll")}


async def _statuses(tmp_path: Path, token: str) -> dict[tuple[str, str], tuple[int, Any]]:
    """What each route answers ``token``, with the handlers replaced by "reached" (204): the
    decision alone, without the handlers' work."""
    @web.middleware
    async def reached(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.match_info.http_exception is not None:
            raise request.match_info.http_exception
        return web.Response(status=204)

    routes = port_routes(tmp_path)
    app = web.Application(middlewares=[enroll.skip_client_auth(auth.middleware(TOKENS, True)),
                                       reached])
    app.add_routes(routes)
    answers = {}
    async with TestClient(TestServer(app)) as client:
        for r in routes:
            resp = await client.request(r.method, concrete(r.path),
                                        headers={"Authorization": f"Bearer {token}"})
            body = await resp.json() if resp.status == 403 else None
            answers[(r.method, canonical(r.path))] = (resp.status, body)
    return answers


def test_a_submit_token_is_refused_every_admin_route_with_403_and_the_way_out(
        tmp_path: Path) -> None:
    answers = asyncio.run(_statuses(tmp_path, SUBMIT_TOKEN))
    for route, (status, body) in answers.items():
        if route in ADMIN_ROUTES - {("POST", "/api/v1/enroll")}:
            assert status == 403, route
            assert body["kind"] == "forbidden"
            assert "submit and manage jobs only" in body["error"]
            assert "afarm-master new-token LABEL --scope admin" in body["error"]
        else:
            assert status == 204, route


def test_an_admin_token_reaches_every_route(tmp_path: Path) -> None:
    answers = asyncio.run(_statuses(tmp_path, ADMIN_TOKEN))
    assert {route for route, (status, _) in answers.items() if status != 204} == set()


def test_an_unknown_path_is_not_found_for_a_submit_token_too(tmp_path: Path) -> None:
    async def go() -> int:
        app = web.Application(middlewares=[auth.middleware(TOKENS, True)])
        app.add_routes(job_api.routes(farm_in(tmp_path), 1 << 20))
        async with TestClient(TestServer(app)) as client:
            resp = await client.post("/api/v1/nothing-here",
                                     headers={"Authorization": f"Bearer {SUBMIT_TOKEN}"})
            return resp.status

    assert asyncio.run(go()) == 404


@pytest.mark.parametrize("token", ["", "wrong"])
def test_without_a_valid_token_the_answer_stays_401(tmp_path: Path, token: str) -> None:
    async def go() -> int:
        app = web.Application(middlewares=[auth.middleware(TOKENS, True)])
        app.add_routes(pool_api.routes(farm_in(tmp_path), 1 << 20))
        async with TestClient(TestServer(app)) as client:
            resp = await client.post("/api/v1/apps/blender/9.9/remove",
                                     headers={"Authorization": f"Bearer {token}"})
            return resp.status

    assert asyncio.run(go()) == 401
