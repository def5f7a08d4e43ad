# SPDX-License-Identifier: MIT
"""A job's output files are served from the results port, the web page's own origin: one a
job wrote as HTML or SVG must not run script there (it could read the page's token from
sessionStorage and drive the job port, which lets that origin in)."""

import asyncio
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import aiohttp
from aiohttp import web

from afarm.master import results_api
from tests.aioserve import serving


class OneJob:
    def job(self, job_id: int) -> Any:
        return SimpleNamespace(id=job_id) if job_id == 1 else None

    def tasks(self, job_id: int) -> list[Any]:
        return []


async def _fetch(tmp_path: Path, names: list[str]) -> dict[str, tuple[int, Any]]:
    out = tmp_path / "1" / "out"
    out.mkdir(parents=True)
    for name in names:
        (out / name).write_text("<html><script>fetch('/x?'+sessionStorage.getItem("
                                "'afarm-token'))</script></html>")
    farm = SimpleNamespace(store=OneJob(), jobs_root=tmp_path)
    app = web.Application()
    app.add_routes(results_api.routes(farm))  # type: ignore[arg-type]
    got = {}
    async with serving(app) as port, aiohttp.ClientSession() as s:
        for name in [*names, "../log"]:
            path = "/api/v1/jobs/1/log" if name == "../log" else \
                f"/api/v1/jobs/1/outputs/{name}"
            async with s.get(f"http://127.0.0.1:{port}{path}") as r:
                got[name] = (r.status, r.headers.copy())
    return got


def test_an_output_written_as_html_or_svg_runs_no_script_on_the_results_origin(
        tmp_path: Path) -> None:
    got = asyncio.run(_fetch(tmp_path, ["page.html", "pic.svg", "frame.png"]))
    for name, (status, headers) in got.items():
        assert status == 200, name
        assert headers.get("X-Content-Type-Options") == "nosniff", name
        if name == "../log":
            continue
        policy = headers.get("Content-Security-Policy", "")
        # sandbox: the document gets an opaque origin (no sessionStorage, no same-origin
        # requests); default-src 'none': it loads and runs nothing.
        assert "sandbox" in policy and "default-src 'none'" in policy, (name, policy)
        assert headers.get("Cross-Origin-Resource-Policy") == "same-origin", name
