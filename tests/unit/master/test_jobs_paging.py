# SPDX-License-Identifier: MIT
"""GET /api/v1/jobs lists a page of jobs: the body stays a list, X-Total-Count and a
rel="next" Link say when it is cut and where the older jobs are."""

import asyncio
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from afarm.cli import ops
from afarm.cli.client import Client
from afarm.master import results_api
from afarm.master.http_util import errors
from afarm.model.job import JobSpec, TaskSpec
from afarm.store.db import Store
from tests.aioserve import serving


def fill(store: Store, n: int) -> list[int]:
    spec = JobSpec(name="j", application="app", params={}, files=[], priority=50)
    task = TaskSpec(kind="render", label="t", application="app", params={}, outputs=[])
    return [store.add_job(spec, [task]) for _ in range(n)]


Answer = tuple[int, Any, dict[str, str]]


async def _get(tmp_path: Path, store: Store, paths: list[str]) -> list[Answer]:
    farm = SimpleNamespace(store=store, jobs_root=tmp_path, warnings=lambda job: [],
                           meter=SimpleNamespace(site=SimpleNamespace(currency="EUR")))
    app = web.Application(middlewares=[errors])
    app.add_routes(results_api.routes(farm))  # type: ignore[arg-type]
    got = []
    async with serving(app) as port, aiohttp.ClientSession() as s:
        for path in paths:
            async with s.get(f"http://127.0.0.1:{port}{path}") as r:
                got.append((r.status, await r.json(), dict(r.headers)))
    return got


@pytest.fixture
def store(tmp_path: Path) -> Store:
    s = Store(tmp_path / "afarm.db")
    yield s
    s.close()


def test_a_cut_list_names_the_next_page_and_the_total(tmp_path: Path, store: Store) -> None:
    ids = fill(store, 5)
    (status, body, headers), = asyncio.run(_get(tmp_path, store, ["/api/v1/jobs?limit=2"]))
    assert status == 200 and [j["id"] for j in body] == [ids[4], ids[3]]
    assert headers["X-Total-Count"] == "5"
    assert headers["Link"] == f'</api/v1/jobs?before={ids[3]}&limit=2>; rel="next"'


def test_following_the_links_lists_every_job_once(tmp_path: Path, store: Store) -> None:
    ids = fill(store, 5)
    seen: list[int] = []
    path: str | None = "/api/v1/jobs?limit=2"
    while path:
        (status, body, headers), = asyncio.run(_get(tmp_path, store, [path]))
        assert status == 200
        seen += [j["id"] for j in body]
        link = headers.get("Link")
        path = link[1:link.index(">")] if link else None
    assert seen == ids[::-1]


def test_the_default_page_is_200_jobs_and_the_last_page_has_no_link(
        tmp_path: Path, store: Store) -> None:
    fill(store, 201)
    (_, first, h1), (_, rest, h2) = asyncio.run(_get(tmp_path, store, [
        "/api/v1/jobs", "/api/v1/jobs?before=2"]))
    assert len(first) == 200 and h1["X-Total-Count"] == "201"
    assert h1["Link"] == '</api/v1/jobs?before=2&limit=200>; rel="next"'
    assert [j["id"] for j in rest] == [1] and "Link" not in h2


@pytest.mark.parametrize("query", ["limit=0", "limit=1001", "limit=-5", "limit=ten",
                                   "limit=1e3"])
def test_a_limit_out_of_range_is_refused_naming_the_range(
        tmp_path: Path, store: Store, query: str) -> None:
    (status, body, _), = asyncio.run(_get(tmp_path, store, [f"/api/v1/jobs?{query}"]))
    assert status == 400
    assert body["error"].startswith("limit ") and "from 1 to 1000" in body["error"]


def test_a_bad_before_is_refused(tmp_path: Path, store: Store) -> None:
    (status, body, _), = asyncio.run(_get(tmp_path, store, ["/api/v1/jobs?before=-1"]))
    assert status == 400 and "before" in body["error"]


def test_before_the_first_job_is_an_empty_list(tmp_path: Path, store: Store) -> None:
    ids = fill(store, 2)
    got = asyncio.run(_get(tmp_path, store, [f"/api/v1/jobs?before={ids[0]}",
                                             "/api/v1/jobs?before=0"]))
    for status, body, headers in got:
        assert status == 200 and body == []
        assert headers["X-Total-Count"] == "2" and "Link" not in headers


def test_afarmctl_follows_the_real_pages_to_the_oldest_job(tmp_path: Path,
                                                           store: Store) -> None:
    ids = fill(store, 7)

    async def listed() -> tuple[ops.JobList, ops.JobList]:
        farm = SimpleNamespace(store=store, jobs_root=tmp_path, warnings=lambda job: [],
                               meter=SimpleNamespace(site=SimpleNamespace(currency="EUR")))
        app = web.Application(middlewares=[errors])
        app.add_routes(results_api.routes(farm))  # type: ignore[arg-type]
        async with serving(app) as port:
            client = Client("127.0.0.1:9", f"127.0.0.1:{port}")
            one = await asyncio.to_thread(ops.jobs, client, None, 3)
            every = await asyncio.to_thread(ops.jobs, client, None, 3, True)
        return one, every

    one, every = asyncio.run(listed())
    assert [j["id"] for j in one.jobs] == ids[:-4:-1]
    assert one.total == 7 and one.older == ids[4]
    assert [j["id"] for j in every.jobs] == ids[::-1] and every.older is None
