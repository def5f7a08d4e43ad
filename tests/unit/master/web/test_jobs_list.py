# SPDX-License-Identifier: MIT
"""The web page's jobs list is a page of the newest jobs: it says how many of all it shows,
and plain links (no script needed) lead to older jobs and back to the newest."""

import asyncio
import re
from pathlib import Path
from types import SimpleNamespace

import aiohttp
import pytest
from aiohttp import web

from afarm.master import results_api
from afarm.master.http_util import JOBS_PAGE, errors
from afarm.master.web import pages
from afarm.master.web import routes as web_routes
from afarm.master.web.views import JobsPage
from afarm.model.job import JobSpec, TaskSpec
from afarm.store.db import Store
from tests.aioserve import serving


@pytest.fixture
def store(tmp_path: Path) -> Store:
    s = Store(tmp_path / "afarm.db")
    yield s
    s.close()


def fill(store: Store, n: int) -> list[int]:
    spec = JobSpec(name="j", application="app", params={}, files=[], priority=50)
    task = TaskSpec(kind="render", label="t", application="app", params={}, outputs=[])
    return [store.add_job(spec, [task]) for _ in range(n)]


async def _pages(tmp_path: Path, store: Store, paths: list[str]) -> list[tuple[int, str]]:
    farm = SimpleNamespace(store=store, jobs_root=tmp_path, state_dir=tmp_path,
                           warnings=lambda job: [], apps={"blender": None},
                           clock=lambda: 1000.0,
                           meter=SimpleNamespace(site=SimpleNamespace(currency="EUR")))
    page_routes, index = web_routes.routes(farm)  # type: ignore[arg-type]
    app = web.Application(middlewares=[errors])
    app.add_routes(page_routes)
    app.add_routes(results_api.routes(farm, index))  # type: ignore[arg-type]
    got = []
    async with serving(app) as port, aiohttp.ClientSession() as s:
        for path in paths:
            async with s.get(f"http://127.0.0.1:{port}{path}",
                             headers={"Accept": "text/html"}) as r:
                got.append((r.status, await r.text()))
    return got


def row_ids(html: str) -> list[int]:
    return [int(i) for i in re.findall(r'<tr id="job-row-(\d+)"', html)]


def test_a_cut_list_links_to_older_jobs_and_says_how_many_it_shows(
        tmp_path: Path, store: Store) -> None:
    fill(store, JOBS_PAGE + 5)
    (status, html), = asyncio.run(_pages(tmp_path, store, ["/"]))
    assert status == 200
    assert row_ids(html) == list(range(JOBS_PAGE + 5, 5, -1))
    assert '<a href="/?before=6" rel="next">Older jobs</a>' in html
    assert f"{JOBS_PAGE} of {JOBS_PAGE + 5} jobs" in html
    assert "Newest jobs" not in html


def test_the_older_page_lists_the_rest_and_links_back_to_the_newest(
        tmp_path: Path, store: Store) -> None:
    fill(store, JOBS_PAGE + 5)
    (status, html), (_, same) = asyncio.run(_pages(tmp_path, store, [
        "/?before=6", "/jobs?before=6"]))
    assert status == 200 and row_ids(html) == [5, 4, 3, 2, 1]
    assert '<a href="/">Newest jobs</a>' in html and "Older jobs" not in html
    assert "Jobs older than job 6, newest first" in html
    assert f"5 of {JOBS_PAGE + 5} jobs" in html
    assert row_ids(same) == [5, 4, 3, 2, 1]


def test_a_whole_list_has_no_links_but_its_count_for_the_live_refresh(
        tmp_path: Path, store: Store) -> None:
    fill(store, 3)
    (_, html), = asyncio.run(_pages(tmp_path, store, ["/"]))
    # The count's element is there on every page, so a refresh can swap in a link later.
    assert '<nav id="jobs-pages" class="pager" aria-label="Job pages" data-swap>' in html
    assert "3 of 3 jobs" in html and "Older jobs" not in html and "Newest jobs" not in html


def test_before_the_first_job_says_there_are_none_older(tmp_path: Path, store: Store) -> None:
    fill(store, 2)
    (status, html), = asyncio.run(_pages(tmp_path, store, ["/?before=1"]))
    assert status == 200 and row_ids(html) == []
    assert "No jobs older than job 1." in html and '<a href="/">Newest jobs</a>' in html


def test_a_bad_before_is_refused(tmp_path: Path, store: Store) -> None:
    (status, text), = asyncio.run(_pages(tmp_path, store, ["/?before=x"]))
    assert status == 400 and "before" in text


def test_the_pager_links_have_text_and_no_script() -> None:
    html = pages.jobs_pager(JobsPage([], 900, 500, 300))
    assert html == ('<nav id="jobs-pages" class="pager" aria-label="Job pages" data-swap>'
                    '<span class="hint">0 of 900 jobs</span> <a href="/">Newest jobs</a>'
                    ' <a href="/?before=300" rel="next">Older jobs</a></nav>')


def test_the_title_of_a_cut_list_of_finished_jobs_counts_all() -> None:
    assert pages.jobs_title([], 900) == "afarm · 0 of 900 jobs"
    assert pages.jobs_title([], 0) == "afarm · 0 jobs"


def test_title_and_icon_count_a_queued_job_older_than_the_page(
        tmp_path: Path, store: Store) -> None:
    ids = fill(store, JOBS_PAGE + 5)
    for job_id in ids[1:]:
        store.cancel_job(job_id)  # only job 1, far below the newest page, still waits
    (_, html), = asyncio.run(_pages(tmp_path, store, ["/"]))
    assert 1 not in row_ids(html)
    assert "<title>[0%] afarm · 1 running</title>" in html
    assert 'href="/static/favicon-busy.svg"' in html


def test_the_title_of_a_farm_with_nothing_running_counts_the_jobs() -> None:
    from afarm.master.web.views import Running

    assert pages.jobs_title([], 900, Running()) == "afarm · 0 of 900 jobs"
    assert pages.jobs_title([], 900, Running(2, 3, 12)) == "[25%] afarm · 2 running"
