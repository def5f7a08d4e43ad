# SPDX-License-Identifier: MIT
"""afarmctl jobs says when the master's list is cut and how to see the rest; --all follows
the pages to the oldest job."""

import argparse
import json
import urllib.parse
from typing import Any, cast

import pytest

from afarm.cli import commands, ops
from afarm.cli.client import Client
from afarm.errors import OperationFailed, UsageError


class PagedMaster:
    """Answers GET /api/v1/jobs as the master does: keyset pages with Link and count."""

    def __init__(self, n: int, page: int = 200) -> None:
        self.ids = list(range(n, 0, -1))
        self.page = page
        self.asked: list[str] = []

    def get_with_headers(self, path: str) -> tuple[list[dict[str, Any]], dict[str, str]]:
        self.asked.append(path)
        url = urllib.parse.urlsplit(path)
        q = {k: int(v[0]) for k, v in urllib.parse.parse_qs(url.query).items()}
        limit, before = q.get("limit", self.page), q.get("before", 1 << 62)
        below = [i for i in self.ids if i < before]
        shown = below[:limit]
        headers = {"x-total-count": str(len(self.ids))}
        if len(below) > limit:
            headers["link"] = f'</api/v1/jobs?before={shown[-1]}&limit={limit}>; rel="next"'
        return [job(i) for i in shown], headers


def job(i: int) -> dict[str, Any]:
    return {"id": i, "status": "completed", "progress": {"completed": 1, "tasks": 1},
            "application": "blender", "name": f"j{i}"}


def run(master: Any, json_out: bool = False, before: int | None = None,
        limit: int | None = None, every: bool = False) -> int:
    args = argparse.Namespace(json=json_out, before=before, limit=limit, every=every)
    return commands.cmd_jobs(args, cast(Client, master))


def test_a_cut_list_ends_with_a_line_saying_so(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(PagedMaster(512)) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 1 + 200 + 1
    assert lines[-1] == ("showing the 200 newest of 512 jobs; afarmctl jobs --all lists"
                         " every one (or --before 313 the next page)")


def test_a_whole_list_has_no_such_line(capsys: pytest.CaptureFixture[str]) -> None:
    run(PagedMaster(200))
    out = capsys.readouterr().out
    assert "showing" not in out and len(out.splitlines()) == 201


def test_before_and_limit_show_that_page_and_name_the_next(
        capsys: pytest.CaptureFixture[str]) -> None:
    m = PagedMaster(10)
    run(m, before=8, limit=3)
    assert m.asked == ["/api/v1/jobs?before=8&limit=3"]
    lines = capsys.readouterr().out.splitlines()
    assert [int(x.split()[0]) for x in lines[1:4]] == [7, 6, 5]
    assert lines[-1] == ("showing 3 of 10 jobs (those below job 8); afarmctl jobs --all"
                         " lists every one (or --before 5 --limit 3 the next page)")


def test_in_json_the_output_stays_a_list_and_the_note_goes_to_stderr(
        capsys: pytest.CaptureFixture[str]) -> None:
    run(PagedMaster(300), json_out=True)
    out, err = capsys.readouterr()
    data = json.loads(out)
    assert isinstance(data, list) and len(data) == 200
    assert err.startswith("showing the 200 newest of 300 jobs")


def test_all_follows_the_pages_to_the_oldest_job(capsys: pytest.CaptureFixture[str]) -> None:
    m = PagedMaster(2500)
    run(m, json_out=True, every=True)
    out, err = capsys.readouterr()
    assert [j["id"] for j in json.loads(out)] == list(range(2500, 0, -1))
    assert err == ""
    assert m.asked == ["/api/v1/jobs?limit=1000", "/api/v1/jobs?before=1501&limit=1000",
                       "/api/v1/jobs?before=501&limit=1000"]


def test_all_with_a_limit_asks_pages_of_that_size(capsys: pytest.CaptureFixture[str]) -> None:
    m = PagedMaster(5)
    run(m, every=True, limit=2)
    assert len(m.asked) == 3
    assert "showing" not in capsys.readouterr().out


def test_a_master_whose_pages_do_not_go_back_stops_all() -> None:
    class Stuck(PagedMaster):
        def get_with_headers(self, path: str) -> tuple[list[dict[str, Any]], dict[str, str]]:
            return [job(5)], {"link": '</api/v1/jobs?before=9&limit=1>; rel="next"'}

    with pytest.raises(OperationFailed, match="does not go back"):
        ops.jobs(cast(Client, Stuck(0)), before=9, limit=1, every=True)


def test_a_master_that_does_not_page_is_listed_as_it_answers(
        capsys: pytest.CaptureFixture[str]) -> None:
    class Old:
        def get_with_headers(self, path: str) -> tuple[list[dict[str, Any]], dict[str, str]]:
            return [job(2), job(1)], {}

    listed = ops.jobs(cast(Client, Old()), every=True)
    assert [j["id"] for j in listed.jobs] == [2, 1] and listed.total is None


@pytest.mark.parametrize("limit", [0, 1001])
def test_a_limit_out_of_range_is_refused_before_asking(limit: int) -> None:
    m = PagedMaster(5)
    with pytest.raises(UsageError, match="--limit"):
        ops.jobs(cast(Client, m), limit=limit)
    assert m.asked == []


def test_an_empty_page_below_the_oldest_job_says_where_the_jobs_are(
        capsys: pytest.CaptureFixture[str]) -> None:
    run(PagedMaster(3), before=1)
    assert capsys.readouterr().out.strip() == (
        "showing 0 of 3 jobs (those below job 1); afarmctl jobs --all lists every one")
