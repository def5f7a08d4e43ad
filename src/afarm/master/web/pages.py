# SPDX-License-Identifier: MIT
"""The HTML of each view, escaped everywhere: job names, labels, errors and logs are user
input. No inline script or style: the Content-Security-Policy forbids them."""

import re
from datetime import UTC, datetime
from html import escape
from typing import Any
from urllib.parse import quote

from afarm.master.web.views import (
    PAGE,
    Frame,
    JobDetail,
    JobsPage,
    JobView,
    Running,
    SlaveView,
    pages,
)

ACTIONS = {"cancel": ("queued", "active", "paused"), "pause": ("queued", "active"),
           "resume": ("paused",), "requeue": ("failed", "canceled")}
LOG_ERROR = re.compile(r"\b(error|fatal|traceback|exception|failed|segmentation fault)\b", re.I)
LOG_WARNING = re.compile(r"\bwarn(ing)?s?\b", re.I)


def e(value: Any) -> str:
    return escape(str(value), quote=True)


def when(ts: float | None) -> str:
    """A time as ISO UTC in <time>, which the page's script shows in the browser's zone."""
    if not ts:
        return ""
    iso = datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return f'<time datetime="{iso}">{iso.replace("T", " ").replace("Z", " UTC")}</time>'


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    s = int(seconds)
    if s < 90:
        return f"{s} s"
    if s < 5400:
        return f"{round(s / 60)} min"
    return f"{s // 3600} h {s % 3600 // 60} min"


def figure(value: float | None, digits: int) -> str:
    if value is None:
        return "?"
    if value and abs(value) < 10 ** -digits:
        return f"{value:.2g}"
    return f"{value:.{digits}f}"


def layout(title: str, main: str, *, view: str, job_port: int | None, favicon: str,
           job: int | None = None, locked: bool = False, last_event: int = 0) -> str:
    attrs = f' data-view="{e(view)}" data-last-event="{int(last_event)}"'
    if job_port:
        attrs += f' data-job-port="{job_port}"'
    if job is not None:
        attrs += f' data-job="{job}"'
    if locked:
        attrs += ' data-locked="1"'
    return f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="color-scheme" content="light dark">
<title>{e(title)}</title>
<link rel="icon" id="favicon" type="image/svg+xml" href="/static/favicon-{e(favicon)}.svg">
<link rel="stylesheet" href="/static/app.css">
<script src="/static/sha256.js" defer></script>
<script src="/static/app.js" defer></script>
</head>
<body{attrs}>
<header class="top">
<nav aria-label="Main"><a href="/" class="brand">afarm</a> <a href="/">Jobs</a>
<a href="/slaves">Slaves</a></nav>
<form id="token-form" class="js-only" autocomplete="off">
<label for="token">Token</label>
<input type="password" id="token" name="token" size="20" placeholder="kept for this tab only">
<button type="submit">Use</button>
<button type="button" id="token-forget">Forget</button>
<span id="token-state" role="status"></span>
</form>
<span id="live-state" class="js-only" role="status" aria-live="polite"></span>
</header>
<main id="main">
{main}
</main>
<div id="toast" role="alert" aria-live="assertive"></div>
</body>
</html>
"""


def status_badge(status: str) -> str:
    return f'<span class="status status-{e(status)}">{e(status)}</span>'


def progress_bar(fraction: float, label: str) -> str:
    pct = round(fraction * 100)
    return (f'<progress max="100" value="{pct}" aria-label="{e(label)}">{pct}%</progress>'
            f' <span class="pct">{pct}%</span>')


def action_buttons(job_id: int, status: str) -> str:
    out = [f'<button type="button" class="act" data-job-action="{a}" data-job-id="{job_id}">'
           f"{a.capitalize()}</button>" for a, allowed in ACTIONS.items() if status in allowed]
    return f'<span class="js-only actions">{"".join(out)}</span>' if out else ""


def priority_form(job_id: int, priority: int) -> str:
    return (f' <span class="js-only"><input type="number" min="0" max="100" size="4"'
            f' id="priority-{job_id}" value="{priority}" aria-label="new priority of job'
            f' {job_id}"> <button type="button" class="act" data-priority-job="{job_id}">'
            "Set priority</button></span>")


WARNED = "completed-with-warnings"


def jobs_title(views: list[JobView], total: int | None = None,
               running: Running | None = None) -> str:
    """The jobs list's title: the progress of every queued and active job (``running``:
    the farm's, else those in ``views``), or how many jobs there are."""
    if running is not None:
        if running.jobs:
            return (f"[{round(100 * running.done / (running.tasks or 1))}%] afarm ·"
                    f" {running.jobs} running")
        active = []
    else:
        active = [v for v in views if v.job.status.value in ("active", "queued")]
    if not active:
        warned = sum(1 for v in views if v.status == WARNED)
        shown = f"{len(views)} of {total}" if total is not None and total > len(views) \
            else f"{len(views)}"
        return f"afarm · {shown} jobs" + (f", {warned} with warnings" if warned else "")
    done = sum(v.progress["completed"] for v in active)
    total = sum(v.progress["tasks"] for v in active) or 1
    return f"[{round(100 * done / total)}%] afarm · {len(active)} running"


def favicon_of(statuses: list[str]) -> str:
    """The icon of the statuses as clients see them (completed-with-warnings among them)."""
    if "failed" in statuses:
        return "failed"
    if any(s in ("active", "queued") for s in statuses):
        return "busy"
    if WARNED in statuses:
        return "warnings"
    return "idle"


def job_title(v: JobView, what: str = "") -> str:
    """A job's page title: progress, and a mark when its frames may be wrong."""
    mark = "⚠ " if v.status == WARNED else ""
    return f"{mark}[{round(v.fraction * 100)}%] {v.job.name}{what} · afarm"


def tasks(n: int) -> str:
    return f"{n} task" if n == 1 else f"{n} tasks"


def job_row(v: JobView) -> str:
    j, p = v.job, v.progress
    frames = (f"{p['frames_done']}/{p['frames_total']}" if p["frames_total"]
              else f"{p['completed']}/{p['tasks']} tasks")
    cur = v.energy.get("currency", "")
    warned = (f' <a class="warned" href="/jobs/{j.id}#task-warnings">{tasks(v.warned)} with'
              " warnings</a>" if v.warned else "")
    return (f'<tr id="job-row-{j.id}" data-status="{e(v.status)}">'
            f'<td><a href="/jobs/{j.id}">{j.id}</a></td>'
            f'<td class="name"><a href="/jobs/{j.id}">{e(j.name)}</a></td>'
            f"<td>{status_badge(v.status)}{warned}</td>"
            f"<td>{progress_bar(v.fraction, f'progress of job {j.id}')}</td>"
            f"<td>{frames}</td><td>{duration(v.eta)}</td><td>{j.priority}</td>"
            f"<td>{e(v.version) or '—'}</td>"
            f"<td>{figure(v.energy.get('kwh'), 3)}</td>"
            f"<td>{figure(v.energy.get('cost'), 2)} {e(cur)}</td>"
            f"<td>{action_buttons(j.id, j.status.value)}</td></tr>")


def jobs_pager(page: JobsPage) -> str:
    """How many jobs the list shows of all, and plain links to older and newest ones. Always
    there (the live refresh swaps it): a list that grows past a page gets its link."""
    links = []
    if page.before is not None:
        links.append('<a href="/">Newest jobs</a>')
    if page.older is not None:
        links.append(f'<a href="/?before={page.older}" rel="next">Older jobs</a>')
    return (f'<nav id="jobs-pages" class="pager" aria-label="Job pages" data-swap>'
            f'<span class="hint">{len(page.views)} of {page.total} jobs</span> '
            + " ".join(links) + "</nav>")


def jobs_page(page: JobsPage, apps: list[str]) -> str:
    views = page.views
    empty = ("No jobs yet. Submit one below or with afarmctl submit." if page.before is None
             else f"No jobs older than job {page.before}.")
    rows = "\n".join(job_row(v) for v in views) or f'<tr><td colspan="11">{empty}</td></tr>'
    options = "".join(f'<option value="{e(a)}">{e(a)}</option>' for a in apps)
    caption = "Jobs, newest first" if page.before is None else \
        f"Jobs older than job {page.before}, newest first"
    return f"""<h1>Jobs</h1>
<div class="scroll"><table id="jobs">
<caption>{caption}</caption>
<thead><tr><th scope="col">ID</th><th scope="col">Name</th><th scope="col">Status</th>
<th scope="col">Progress</th><th scope="col">Frames</th><th scope="col">ETA</th>
<th scope="col">Priority</th><th scope="col">Version</th><th scope="col">kWh</th>
<th scope="col">Cost</th><th scope="col">Actions</th></tr></thead>
<tbody id="jobs-body" data-swap>
{rows}
</tbody></table></div>
{jobs_pager(page)}
<section id="submit" class="js-only" aria-labelledby="submit-h">
<h2 id="submit-h">Submit a job</h2>
<form id="submit-form">
<p><label for="s-app">Application</label>
<select id="s-app" name="application">{options}</select></p>
<p><label for="s-file">Input file</label> <input type="file" id="s-file" name="file"></p>
<p><label for="s-extra">Files beside it</label> <input type="file" id="s-extra" name="extra"
multiple> <label for="s-dir">a folder beside it, or the project's folder</label>
<input type="file" id="s-dir" name="dir" multiple webkitdirectory></p>
<p><label for="s-name">Name</label> <input id="s-name" name="name" maxlength="200"></p>
<p><label for="s-frames">Frames</label> <input id="s-frames" name="frames" placeholder="1-24">
<label for="s-chunk">Chunk</label> <input id="s-chunk" name="chunk" type="number" min="1" size="4">
<label for="s-tiles">Tiles</label> <input id="s-tiles" name="tiles" placeholder="2x2" size="5">
<label for="s-encode">Encode</label> <select id="s-encode" name="encode">
<option value="">none</option><option value="mp4">mp4</option></select></p>
<p class="hint">A .blend with libraries in sibling folders (//../assets/): choose the
project's folder and pick the .blend from inside it; the files keep their places.</p>
<div id="deps" aria-live="polite" hidden></div>
<p><input type="checkbox" id="s-allow-missing" name="allow_missing">
<label for="s-allow-missing">render anyway when files are missing (the frames may be
wrong: the job ends completed-with-warnings)</label></p>
<p><label for="s-items">Items (one a line, for command applications)</label><br>
<textarea id="s-items" name="items" rows="3" cols="40"></textarea></p>
<p><label for="s-priority">Priority</label>
<input id="s-priority" name="priority" type="number" min="0" max="100" value="50">
<button type="submit" id="s-submit">Submit</button>
<span id="submit-state" role="status"></span></p>
</form>
</section>"""


def frame_cell(job_id: int, f: Frame) -> str:
    link = f"/jobs/{job_id}/frames/{f.key}"
    label = f"frame {f.key}" if f.kind == "image" else f.path
    tiles = f" · tiles {f.tiles_done}/{f.tiles_total}" if f.tiles_total else ""
    if f.published and f.kind == "image":
        inner = (f'<img src="/jobs/{job_id}/thumbs/{quote(f.path)}" alt="{e(label)}"'
                 ' loading="lazy" width="160" height="90">')
    else:
        inner = f'<span class="ph">{e(f.status)}{e(tiles)}</span>'
    return (f'<li id="frame-{f.key}" data-status="{e(f.status)}"'
            f' data-published="{int(f.published)}"><a href="{link}">{inner}'
            f"<span class=\"cap\">{e(label)}</span></a></li>")


def pager(job_id: int, page: int, count: int) -> str:
    n = pages(count)
    if n == 1:
        return ""
    links = []
    for p in sorted({1, max(1, page - 1), page, min(n, page + 1), n}):
        cur = ' aria-current="page"' if p == page else ""
        links.append(f'<a href="/jobs/{job_id}?page={p}#frames"{cur}>{p}</a>')
    return (f'<nav class="pager" aria-label="Frame pages">Page {page} of {n}: '
            + " ".join(links) + "</nav>")


def job_summary(d: JobDetail) -> str:
    v = d.view
    j, p = v.job, v.progress
    frames = (f"{p['frames_done']}/{p['frames_total']} frames" if p["frames_total"]
              else f"{p['completed']}/{p['tasks']} tasks")
    if d.frames and not p["frames_total"]:  # tiles: frames count once stitched
        done = sum(1 for f in d.frames if f.published)
        frames += f", {done}/{len(d.frames)} outputs"
    warn = "".join(f"<li>{e(w)}</li>" for w in d.warnings)
    if v.warned:
        warn = (f'<li><a href="#task-warnings">{tasks(v.warned)} completed with warnings</a>:'
                " their frames may be wrong (a file the scene needs was missing, ...).</li>"
                + warn)
    cur = v.energy.get("currency", "")
    return f"""<section id="job-summary" data-swap aria-label="Summary">
<dl class="facts">
<dt>Status</dt><dd>{status_badge(v.status)} {action_buttons(j.id, j.status.value)}</dd>
<dt>Progress</dt><dd>{progress_bar(v.fraction, f"progress of job {j.id}")} {frames}</dd>
<dt>ETA</dt><dd>{duration(v.eta)}</dd>
<dt>Priority</dt><dd>{j.priority}{priority_form(j.id, j.priority)
                                   if j.status.value in ("queued", "active", "paused")
                                   else ""}</dd>
<dt>Application</dt><dd>{e(j.application)}{f" {e(v.version)} (from the pool)"
                                             if v.version else ""}</dd>
<dt>Energy</dt><dd>{figure(v.energy.get("kwh"), 3)} kWh,
{figure(v.energy.get("cost"), 2)} {e(cur)}</dd>
<dt>Submitted</dt><dd>{when(j.created)}</dd>
<dt>Updated</dt><dd>{when(j.updated)}</dd>
</dl>
{f'<ul class="warnings">{warn}</ul>' if warn else ""}
{f'<p class="error">{e(j.error)}</p>' if j.error else ""}
<p><a href="/jobs/{j.id}/download.zip" download>Download all outputs (zip)</a></p>
</section>"""


def job_page(d: JobDetail, page: int) -> str:
    j = d.view.job
    page = min(max(page, 1), pages(len(d.frames)))
    shown = d.frames[(page - 1) * PAGE: page * PAGE]
    grid = "\n".join(frame_cell(j.id, f) for f in shown) or '<li class="none">No outputs yet.</li>'
    videos = "".join(
        f'<figure><video controls preload="metadata" src="/api/v1/jobs/{j.id}/outputs/'
        f'{quote(v)}"></video><figcaption><a href="/api/v1/jobs/{j.id}/outputs/{quote(v)}"'
        f" download>{e(v)}</a></figcaption></figure>" for v in d.videos)
    rows = "\n".join(
        f'<tr><td>{t.idx}</td><td>{e(t.label)}</td><td>{status_badge(t.status.value)}</td>'
        f"<td>{e(t.slave or '')}</td><td>{t.attempt}</td><td>{when(t.started)}</td>"
        f"<td>{when(t.finished)}</td><td class=\"err\">{e(t.error)}</td>"
        + (f'<td class="warn"><a href="#task-warnings-{t.id}">{d.warning_counts[t.id]}</a></td>'
           if t.id in d.warning_counts else "<td></td>")
        + f'<td><a href="/jobs/{j.id}/tasks/{t.id}/log">log</a></td></tr>' for t in d.tasks)
    return f"""<h1>Job {j.id}: <span class="name">{e(j.name)}</span></h1>
{job_summary(d)}
<section id="preview" data-swap aria-label="Preview">{videos}</section>
<section id="frames" data-swap data-page="{page}" aria-labelledby="frames-h">
<h2 id="frames-h">Frames</h2>
{pager(j.id, page, len(d.frames))}
<ul class="grid">
{grid}
</ul>
</section>
<section id="tasks" data-swap aria-labelledby="tasks-h">
<h2 id="tasks-h">Tasks</h2>
<div class="scroll"><table>
<caption>Unfinished and failed tasks first (at most {len(d.tasks)} shown)</caption>
<thead><tr><th scope="col">#</th><th scope="col">Task</th><th scope="col">Status</th>
<th scope="col">Slave</th><th scope="col">Attempt</th><th scope="col">Started</th>
<th scope="col">Finished</th><th scope="col">Error</th><th scope="col">Warnings</th>
<th scope="col">Log</th></tr></thead>
<tbody>
{rows}
</tbody></table></div>
</section>
{task_warnings(j.id, d)}"""


def task_warnings(job_id: int, d: JobDetail) -> str:
    """Each warned task's warnings, highlighted: why the job is completed-with-warnings."""
    items = "\n".join(
        f'<li id="task-warnings-{t.id}"><a href="/jobs/{job_id}/tasks/{t.id}/log">task'
        f" {t.idx}: {e(t.label)}</a><ul>"
        + "".join(f'<li class="warn">{e(w)}</li>' for w in texts) + "</ul></li>"
        for t, texts in d.task_warnings)
    more = (f"<p>The first {len(d.task_warnings)} of {d.view.warned} tasks with warnings are"
            f' listed; <a href="/api/v1/jobs/{job_id}">the job\'s JSON</a> has them all.</p>'
            if d.view.warned > len(d.task_warnings) else "")
    body = (f'<ul class="task-warnings">\n{items}\n</ul>{more}' if items
            else "<p>No task has warnings.</p>")
    return f"""<section id="task-warnings" data-swap aria-labelledby="task-warnings-h">
<h2 id="task-warnings-h">Task warnings</h2>
{body}
</section>"""


def frame_page(job_id: int, frame: Frame, prev: int | None, nxt: int | None,
               grid_page: int) -> str:
    src = f"/api/v1/jobs/{job_id}/outputs/{quote(frame.path)}"
    body = (f'<a href="{src}"><img class="full" src="{src}" alt="frame {frame.key} of job'
            f' {job_id}"></a>' if frame.published and frame.kind == "image"
            else f'<p class="ph">{e(frame.status)}</p>')
    nav = []
    if prev is not None:
        nav.append(f'<a href="/jobs/{job_id}/frames/{prev}" rel="prev">Previous</a>')
    nav.append(f'<a href="/jobs/{job_id}?page={grid_page}#frame-{frame.key}">'
               "All frames</a>")
    if nxt is not None:
        nav.append(f'<a href="/jobs/{job_id}/frames/{nxt}" rel="next">Next</a>')
    return f"""<h1><a href="/jobs/{job_id}">Job {job_id}</a>: {e(frame.path)}</h1>
<section id="frame" data-swap aria-label="Frame">
<p>{status_badge(frame.status)}
{f'<a href="{src}" download>Download</a>' if frame.published else ""}
<a href="/jobs/{job_id}/tasks/{frame.task}/log">Task log</a></p>
{body}
</section>
<nav class="pager" aria-label="Frames">{" ".join(nav)}</nav>"""


def log_page(job_id: int, task_id: int, label: str, text: str, cut: int) -> str:
    lines = []
    for line in text.splitlines():
        cls = "err" if LOG_ERROR.search(line) else "warn" if LOG_WARNING.search(line) else ""
        lines.append(f'<span class="{cls}">{e(line)}</span>' if cls else e(line))
    note = (f"<p>The first {cut} bytes are left out; download the whole log from"
            f' <a href="/api/v1/jobs/{job_id}/log?task={task_id}">the API</a>.</p>'
            if cut else "")
    count = sum(1 for ln in lines if ln.startswith('<span class="err"'))
    warns = sum(1 for ln in lines if ln.startswith('<span class="warn"'))
    return f"""<h1><a href="/jobs/{job_id}">Job {job_id}</a>:
log of task {task_id} ({e(label)})</h1>
<p>{count} error lines, {warns} warning lines (highlighted).</p>
{note}
<pre class="log" tabindex="0">{chr(10).join(lines) or "(empty)"}</pre>"""


def slaves_page(slaves: list[SlaveView], policy: str) -> str:
    rows = []
    for s in slaves:
        key = f' data-fingerprint="{e(s.fingerprint)}"' if s.fingerprint else ""
        buttons = "".join(
            f'<button type="button" class="act" data-slave-action="{a}"'
            f' data-slave="{e(s.name)}"{key if a == "accept" else ""}>{a.capitalize()}</button>'
            for a in s.actions)
        running = ", ".join(f'<a href="/jobs/{j}">job {j}</a>: {e(label)}'
                            for j, _, label in s.running)
        rows.append(
            f'<tr id="slave-{e(s.name)}" data-state="{e(s.state)}"><th scope="row">{e(s.name)}</th>'
            f"<td>{status_badge(s.state)}</td><td>{duration(s.since)}</td>"
            f"<td>{running or '—'}</td>"
            f"<td>{'—' if s.speed is None else f'{s.speed:.3g} s/frame'}</td>"
            f"<td>{'—' if s.watts is None else f'{s.watts:g} W'}</td>"
            f"<td>{'—' if s.position is None else s.position}</td><td>{e(s.why)}</td>"
            f'<td class="err">{e(s.last_error)}</td>'
            f'<td><span class="js-only actions">{buttons}</span></td></tr>')
    body = "\n".join(rows) or '<tr><td colspan="10">No slaves.</td></tr>'
    return f"""<h1>Slaves</h1>
<p>Ranked by {e(policy)}.</p>
<div class="scroll"><table id="slaves">
<caption>Slaves and their ranking</caption>
<thead><tr><th scope="col">Name</th><th scope="col">State</th><th scope="col">For</th>
<th scope="col">Tasks</th>
<th scope="col">Benchmark</th><th scope="col">Watts</th><th scope="col">Rank</th>
<th scope="col">Why</th><th scope="col">Last error</th><th scope="col">Actions</th></tr></thead>
<tbody id="slaves-body" data-swap>
{body}
</tbody></table></div>"""


def locked_page() -> str:
    return """<h1>A token is needed</h1>
<p id="locked">This master shares its results only with holders of a token. Type it in
the Token field above: it is kept in this tab only (sessionStorage), sent in a header, and
forgotten when the tab closes.</p>"""


def not_found(what: str) -> str:
    return f"<h1>Not found</h1><p>{e(what)}</p><p><a href=\"/\">All jobs</a></p>"
