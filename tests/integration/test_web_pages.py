# SPDX-License-Identifier: MIT
"""The web page on the results port, over HTTP against a real master (no browser): views,
escaping, security headers, thumbnails, zip, logs and the token rules."""

import io
import json
import re
import urllib.error
import urllib.request
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from afarm.errors import UsageError
from afarm.master import auth
from tests.farm import MasterProcess

NASTY = "<img src=x onerror=alert(1)>\"'&</title><script>alert(2)</script>"
APPS = {
    "echo": "kind = command\nexecutable = /bin/echo\nargv = {item},\n",
    # Two red frames and a blue one: thumbnails are cached by content, so two files.
    "paint": "kind = command\nexecutable = /usr/bin/ffmpeg\nargv = -nostdin, -v, error,"
             " -f, lavfi, -i, {item}, -frames:v, 1, {out}/frame.png\ncapture_stdout = false\n",
    "talk": "kind = command\nexecutable = /usr/bin/python3\nargv = -c, {item},\n",
}


@pytest.fixture(scope="module")
def farm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MasterProcess]:
    m = MasterProcess(tmp_path_factory.mktemp("web"), slaves=2, apps=APPS).start()
    yield m
    m.stop()


def get(m: MasterProcess, path: str, accept: str = "text/html",
        headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    req = urllib.request.Request(f"http://127.0.0.1:{m.results_port}{path}",
                                 headers={"Accept": accept, **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def page(m: MasterProcess, path: str) -> str:
    status, headers, body = get(m, path)
    assert status == 200, body[:500]
    assert headers["Content-Type"].startswith("text/html")
    return body.decode()


def test_every_view_is_html_under_a_strict_content_security_policy(
        farm: MasterProcess) -> None:
    job = farm.submit("--app", "echo", "--items", "a,b")
    farm.wait(job)
    for path in ("/", "/jobs", f"/jobs/{job}", f"/jobs/{job}/frames/1", "/slaves",
                 f"/jobs/{job}/tasks/{farm.client.get(f'/api/v1/jobs/{job}')['tasks'][0]['id']}/log"):
        status, headers, body = get(farm, path)
        assert status == 200, (path, body[:300])
        policy = headers["Content-Security-Policy"]
        assert "script-src 'self'" in policy and "default-src 'none'" in policy
        assert "unsafe-inline" not in policy
        assert f"connect-src 'self' http://127.0.0.1:{farm.job_port}" in policy
        assert "frame-ancestors 'none'" in policy
        assert headers["X-Content-Type-Options"] == "nosniff"
        assert headers["Cross-Origin-Resource-Policy"] == "same-origin"
        html = body.decode()
        # No inline script, handler or style: only <script src> from this origin.
        assert re.findall(r"<script(?![^>]*\ssrc=\"/static/)", html) == []
        assert not re.search(r"\son[a-z]+=", html)
        assert " style=" not in html


def test_a_job_name_with_markup_is_escaped_in_every_view(farm: MasterProcess) -> None:
    job = farm.submit("--app", "echo", "--items", "x", "--name", NASTY)
    farm.wait(job)
    for path in ("/", f"/jobs/{job}", f"/jobs/{job}/frames/1"):
        html = page(farm, path)
        assert "<img src=x" not in html and "<script>alert" not in html
        assert "&lt;img src=x onerror=alert(1)&gt;&quot;&#x27;&amp;&lt;/title&gt;" in html


def test_api_clients_still_get_json_at_the_root(farm: MasterProcess) -> None:
    status, headers, body = get(farm, "/", accept="application/json")
    assert status == 200 and json.loads(body)["jobs"] == "/api/v1/jobs"


def test_an_item_job_lists_its_outputs_with_deep_links_and_a_zip(farm: MasterProcess) -> None:
    job = farm.submit("--app", "echo", "--items", "one,two,three")
    farm.wait(job)
    html = page(farm, f"/jobs/{job}")
    assert f'href="/jobs/{job}/frames/3"' in html
    frame = page(farm, f"/jobs/{job}/frames/2")
    assert "item_000002.out" in frame and 'rel="prev"' in frame and 'rel="next"' in frame
    status, headers, body = get(farm, f"/jobs/{job}/download.zip", accept="*/*")
    assert status == 200 and headers["Content-Type"] == "application/zip"
    with zipfile.ZipFile(io.BytesIO(body)) as z:
        assert sorted(z.namelist()) == [f"job-{job}/item_00000{i}.out" for i in (1, 2, 3)]
        assert z.read(f"job-{job}/item_000002.out") == b"two\n"
    status, _, _ = get(farm, f"/jobs/{job}/frames/99")
    assert status == 404
    status, _, _ = get(farm, "/jobs/999999")
    assert status == 404


def test_frames_get_thumbnails_made_by_ffmpeg_and_cached_by_content(
        farm: MasterProcess) -> None:
    items = "color=c=red:s=64x36,color=c=red:s=64x36,color=c=blue:s=64x36"
    job = farm.submit("--app", "paint", "--items", items)
    assert farm.wait(job)["status"] == "completed", farm.logtext()[-2000:]
    outputs = farm.client.get(f"/api/v1/jobs/{job}")["outputs"]
    html = page(farm, f"/jobs/{job}")
    thumbs = re.findall(rf'<img src="(/jobs/{job}/thumbs/[^"]+)"', html)
    assert len(thumbs) == len(outputs) == 3
    for src in thumbs:
        status, headers, body = get(farm, src, accept="image/*")
        assert status == 200 and headers["Content-Type"] == "image/jpeg"
        assert body[:2] == b"\xff\xd8"  # a JPEG
    cached = list((farm.state / "thumbs").rglob("*.jpg"))
    assert len(cached) == 2  # the two red frames share one thumbnail


def test_paths_outside_the_job_get_no_thumbnail_or_file(farm: MasterProcess) -> None:
    job = farm.submit("--app", "echo", "--items", "z")
    farm.wait(job)
    for bad in ("..%2F..%2Fafarm.db", "../../afarm.db", ".hidden", "a%00b"):
        status, _, body = get(farm, f"/jobs/{job}/thumbs/{bad}", accept="*/*")
        assert status in (400, 404), (bad, status, body[:200])
        assert b"SQLite" not in body


def test_a_task_log_highlights_warnings_and_errors(farm: MasterProcess) -> None:
    code = (r"import sys; sys.stderr.write('Warning: the denoiser is missing\n');"
            r" sys.stderr.write('Error: <b>out of memory</b>\n'); print('fine')")
    job = farm.submit("--app", "talk", "--items", code)
    farm.wait(job)
    task = farm.client.get(f"/api/v1/jobs/{job}")["tasks"][0]["id"]
    html = page(farm, f"/jobs/{job}/tasks/{task}/log")
    assert '<span class="warn">Warning: the denoiser is missing</span>' in html
    assert '<span class="err">Error: &lt;b&gt;out of memory&lt;/b&gt;</span>' in html


def preflight(m: MasterProcess, origin: str) -> tuple[int, dict[str, Any]]:
    req = urllib.request.Request(
        f"http://127.0.0.1:{m.job_port}/api/v1/jobs/1/cancel", method="OPTIONS",
        headers={"Origin": origin, "Access-Control-Request-Method": "POST",
                 "Access-Control-Request-Headers": "authorization, content-type"})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, dict(r.headers)
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers)


def test_the_job_port_takes_actions_from_the_results_page_and_no_other(
        farm: MasterProcess) -> None:
    status, headers = preflight(farm, f"http://127.0.0.1:{farm.results_port}")
    assert status == 204
    assert headers["Access-Control-Allow-Origin"] == f"http://127.0.0.1:{farm.results_port}"
    assert "Authorization" in headers["Access-Control-Allow-Headers"]
    status, headers = preflight(farm, "http://evil.example")
    assert status == 403 and "Access-Control-Allow-Origin" not in headers


def test_with_tokens_the_views_ask_for_one_and_answer_with_it(tmp_path: Path) -> None:
    token = auth.new_token(tmp_path / "tokens", "web test")
    m = MasterProcess(tmp_path, slaves=1, apps=APPS)
    m.client.token = token
    m.start()
    try:
        status, headers, body = get(m, "/")
        assert status == 401 and b'data-locked="1"' in body and token.encode() not in body
        status, _, body = get(m, "/jobs/1/download.zip", accept="*/*")
        assert status == 401
        status, _, body = get(m, "/", headers={"Authorization": f"Bearer {token}"})
        assert status == 200 and b'id="jobs-body"' in body
        status, _, body = get(m, "/", headers={"Authorization": "Bearer wrong"})
        assert status == 401
        status, _, body = get(m, "/static/app.js", accept="*/*")
        assert status == 200 and b"sessionStorage" in body
        status, _, _ = get(m, "/api/v1/jobs", accept="application/json")
        assert status == 401  # the JSON stays closed
    finally:
        m.stop()


def test_the_static_assets_are_only_the_shipped_files(farm: MasterProcess) -> None:
    for name, kind in (("app.js", "text/javascript"), ("app.css", "text/css"),
                       ("favicon-busy.svg", "image/svg+xml")):
        status, headers, _ = get(farm, f"/static/{name}", accept="*/*")
        assert status == 200 and headers["Content-Type"].startswith(kind)
    for bad in ("..%2Fpages.py", "pages.py", "__init__.py", "nope.js"):
        status, _, _ = get(farm, f"/static/{bad}", accept="*/*")
        assert status == 404, bad


def test_the_job_port_sets_a_jobs_priority_within_bounds(farm: MasterProcess) -> None:
    job = farm.submit("--app", "echo", "--items", "p", "--require-tag", "nowhere")
    done = farm.client.post(f"/api/v1/jobs/{job}/priority", {"priority": 90})
    assert done["priority"] == 90
    assert farm.client.get(f"/api/v1/jobs/{job}")["priority"] == 90
    for bad in ({"priority": 101}, {"priority": -1}, {"priority": "9"}, {"priority": True},
                {}):
        with pytest.raises(UsageError, match="0 to 100"):
            farm.client.post(f"/api/v1/jobs/{job}/priority", bad)



def test_the_page_can_read_every_refusal_of_the_job_port(farm: MasterProcess) -> None:
    """A refusal (409, 400, 404) carries the CORS headers, so the page shows its message."""
    origin = f"http://127.0.0.1:{farm.results_port}"
    job = farm.submit("--app", "echo", "--items", "r", "--require-tag", "nowhere")
    farm.client.post(f"/api/v1/jobs/{job}/cancel", {})

    def post(path: str, body: bytes = b"{}") -> tuple[int, dict[str, str], Any]:
        req = urllib.request.Request(
            f"http://127.0.0.1:{farm.job_port}{path}", data=body, method="POST",
            headers={"Origin": origin, "Content-Type": "application/json",
                     "Authorization": f"Bearer {farm.local_token()}"})
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                return r.status, dict(r.headers), json.loads(r.read())
        except urllib.error.HTTPError as exc:
            return exc.code, dict(exc.headers), json.loads(exc.read())

    for path, body, status in ((f"/api/v1/jobs/{job}/cancel", b"{}", 409),
                               (f"/api/v1/jobs/{job}/priority", b'{"priority": 500}', 400),
                               ("/api/v1/jobs/999999/cancel", b"{}", 404),
                               ("/api/v1/slaves/local-1/no-such-verb", b"{}", 404)):
        got, headers, answer = post(path, body)
        assert got == status, (path, got, answer)
        assert headers.get("Access-Control-Allow-Origin") == origin, path
        assert answer["error"]


def test_an_event_stream_resumes_after_the_last_event_id_a_browser_saw(
        farm: MasterProcess) -> None:
    job = farm.submit("--app", "echo", "--items", "e1,e2")
    farm.wait(job)
    ids = []
    for header in ({}, {"Last-Event-ID": "5"}):
        req = urllib.request.Request(
            f"http://127.0.0.1:{farm.results_port}/api/v1/events?after=2", headers=header)
        with urllib.request.urlopen(req, timeout=30) as r:
            for raw in r:
                if raw.startswith(b"id: "):
                    ids.append(int(raw[4:]))
                    break
    assert ids == [3, 6]


def test_the_zip_leaves_out_a_link_that_leads_out_of_the_job(farm: MasterProcess) -> None:
    job = farm.submit("--app", "echo", "--items", "kept")
    farm.wait(job)
    (farm.job_dir(job) / "out" / "db.out").symlink_to(farm.state / "afarm.db")
    status, _, body = get(farm, f"/jobs/{job}/download.zip", accept="*/*")
    assert status == 200
    with zipfile.ZipFile(io.BytesIO(body)) as z:
        assert z.namelist() == [f"job-{job}/item_000001.out"]


def test_assets_and_thumbnails_are_sent_again_only_when_they_changed(
        farm: MasterProcess) -> None:
    status, headers, _ = get(farm, "/static/app.js", accept="*/*")
    assert status == 200 and headers["Cache-Control"] == "no-cache"
    status, _, body = get(farm, "/static/app.js", accept="*/*",
                          headers={"If-None-Match": headers["ETag"]})
    assert status == 304 and body == b""
    job = farm.submit("--app", "paint", "--items", "color=c=green:s=64x36")
    farm.wait(job)
    src = re.findall(rf'<img src="(/jobs/{job}/thumbs/[^"]+)"', page(farm, f"/jobs/{job}"))[0]
    status, headers, _ = get(farm, src, accept="image/*")
    etag = next(v for k, v in headers.items() if k.lower() == "etag")
    assert status == 200 and headers["Cache-Control"] == "private, no-cache"
    assert headers["Cross-Origin-Resource-Policy"] == "same-origin"
    status, _, body = get(farm, src, accept="image/*", headers={"If-None-Match": etag})
    assert status == 304


def test_a_job_whose_tasks_warned_is_never_shown_as_plainly_completed(
        farm: MasterProcess) -> None:
    # A command's stderr is its log, where the runner reads task warnings from.
    warn = (r"import sys; sys.stderr.write('afarm: warning: image <b>wood</b> reads"
            r" //tex/wood.png: no such file\n')")
    job = farm.submit("--app", "talk", "--items", warn)
    assert farm.wait(job)["status"] == "completed-with-warnings", farm.logtext()[-2000:]
    listed = page(farm, "/jobs")
    row = re.search(rf'<tr id="job-row-{job}".*?</tr>', listed, re.S)
    assert row is not None
    assert 'data-status="completed-with-warnings"' in row.group(0)
    assert "status-completed-with-warnings" in row.group(0)
    assert f'href="/jobs/{job}#task-warnings">1 task with warnings' in row.group(0)
    html = page(farm, f"/jobs/{job}")
    title = re.search(r"<title>(.*?)</title>", html)
    assert title is not None and title.group(1).startswith("⚠ [100%]")
    assert "favicon-warnings.svg" in html
    assert 'class="status status-completed-with-warnings"' in html
    task = farm.client.get(f"/api/v1/jobs/{job}")["tasks"][0]["id"]
    assert (f'<li id="task-warnings-{task}"><a href="/jobs/{job}/tasks/{task}/log">') in html
    assert ('<li class="warn">image &lt;b&gt;wood&lt;/b&gt; reads //tex/wood.png: no such'
            " file</li>") in html
    assert "1 task completed with warnings" in html
    status, headers, _ = get(farm, "/static/favicon-warnings.svg", accept="*/*")
    assert status == 200 and headers["Content-Type"] == "image/svg+xml"
    # The event the page's script listens for (a named SSE event) is sent.
    req = urllib.request.Request(
        f"http://127.0.0.1:{farm.results_port}/api/v1/events?after=0&job={job}")
    with urllib.request.urlopen(req, timeout=30) as r:
        kinds = []
        for raw in r:
            if raw.startswith(b"event: "):
                kinds.append(raw[7:].strip().decode())
            if "job-completed" in kinds:
                break
    assert "task-warnings" in kinds
    assert '"task-warnings"' in get(farm, "/static/app.js", accept="*/*")[2].decode()


def test_a_job_without_task_warnings_stays_plainly_completed(farm: MasterProcess) -> None:
    job = farm.submit("--app", "talk", "--items",
                      r"import sys; sys.stderr.write('a warning: not one of afarm\'s\n')")
    assert farm.wait(job)["status"] == "completed"
    html = page(farm, f"/jobs/{job}")
    assert "No task has warnings." in html and "favicon-warnings" not in html
    assert "status-completed-with-warnings" not in html


def test_the_slaves_page_and_the_json_show_the_same_state(farm: MasterProcess) -> None:
    rows = {s["name"]: s for s in farm.client.get("/api/v1/slaves")}
    text = page(farm, "/slaves")
    for name, row in rows.items():
        assert f'id="slave-{name}" data-state="{row["shown_state"]}"' in text
    assert any(r["state"] == "online" and r["shown_state"] == "idle" for r in rows.values())
