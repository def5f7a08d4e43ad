# SPDX-License-Identifier: MIT
"""What the web page shows, gathered from the farm: plain data, no HTML (see pages.py)."""

import math
import re
from dataclasses import dataclass, field
from typing import Any

from afarm.master.farm import Farm
from afarm.master.files import JobDir
from afarm.master.http_util import JOBS_PAGE, energy_json
from afarm.master.slaves.waker import WAKEABLE_STATES
from afarm.master.web.thumbs import kind_of
from afarm.model.job import Job, Task
from afarm.model.slave import shown
from afarm.model.status import shown_job_status
from afarm.store import benchmarks, discovered, usage

FRAME_RE = re.compile(r"frame_(\d+)")
PAGE = 120  # frames on one page of the grid: a 10,000-frame job is never one DOM
TASK_ROWS = 100  # rows of the job page's task table (the unfinished ones first)
WARNED_ROWS = 200  # task warnings one job page lists (a 10,000-task job may have more)


@dataclass
class JobView:
    job: Job
    progress: dict[str, int]
    energy: dict[str, Any]
    fraction: float  # 0..1 of tasks completed
    eta: float | None  # seconds left, when it can be told
    version: str
    status: str = ""  # as clients see it: completed-with-warnings for a warned job
    warned: int = 0  # completed tasks with warnings


@dataclass
class Frame:
    key: int  # the frame number, or the position for outputs that are no frame
    path: str  # relative to out/
    status: str
    kind: str  # image, video or file
    published: bool
    task: int
    tiles_done: int = 0
    tiles_total: int = 0


@dataclass
class JobDetail:
    view: JobView
    frames: list[Frame]
    videos: list[str]
    tasks: list[Task]
    warnings: list[str] = field(default_factory=list)
    # Each warned task's warnings, as (task, its warnings), in task order.
    task_warnings: list[tuple[Task, list[str]]] = field(default_factory=list)
    warning_counts: dict[int, int] = field(default_factory=dict)  # task id -> warnings


def job_view(farm: Farm, job: Job, totals: usage.Totals | None, now: float) -> JobView:
    progress = farm.store.job_progress(job.id)
    energy, _ = energy_json(totals, farm.meter.site.currency)
    total = progress["tasks"] or 1
    fraction = progress["completed"] / total
    eta = None
    if job.status.value == "active" and 0 < fraction < 1:
        eta = (now - job.created) * (1 - fraction) / fraction
    warned = farm.store.warned_tasks(job.id)
    # The version the pool chose for the job ("" for an application defined on the slaves).
    return JobView(job, progress, energy, fraction, eta, job.app_version or "",
                   shown_job_status(job.status, warned), warned)


@dataclass
class Running:
    """Queued and active jobs of the whole farm, listed on this page or an older one."""

    jobs: int = 0
    done: int = 0  # their completed tasks
    tasks: int = 0  # all their tasks


def running(farm: Farm) -> Running:
    found = Running()
    for job_id in farm.store.running_job_ids():
        progress = farm.store.job_progress(job_id)  # counted once, then kept by the store
        found.jobs += 1
        found.done += progress["completed"]
        found.tasks += progress["tasks"]
    return found


@dataclass
class JobsPage:
    """A page of the jobs list, newest first, and where it stands among all jobs."""

    views: list[JobView]
    total: int  # every job
    before: int | None  # the page lists jobs below this one (None: the newest)
    older: int | None  # `before` of the next, older page (None: the oldest job is here)
    # The title and icon speak for the farm: a queued job older than the page counts too.
    running: Running = field(default_factory=Running)


def jobs(farm: Farm, now: float, before: int | None = None) -> JobsPage:
    page = farm.store.job_page(JOBS_PAGE, before)
    totals = usage.of_jobs(farm.store.db, [j.id for j in page.jobs])
    return JobsPage([job_view(farm, j, totals.get(j.id), now) for j in page.jobs],
                    page.total, before, page.older, running(farm))


def frames_of(farm: Farm, job_id: int, tasks: list[Task]) -> tuple[list[Frame], list[str]]:
    """The job's outputs in order (frames first by number), and its videos."""
    published = set(JobDir(farm.jobs_root, job_id).outputs())
    by_path: dict[str, Frame] = {}
    tiles: dict[int, list[bool]] = {}
    videos = []
    for t in tasks:
        extra = t.params.get("collect_extra")  # files a command wrote under a dir of its own
        for out in [*t.outputs, *([extra] if isinstance(extra, str) else [])]:
            if out.startswith("tiles/"):
                m = FRAME_RE.search(out)
                if m:
                    tiles.setdefault(int(m.group(1)), []).append(t.status.value == "completed")
                continue
            if not out.startswith("out/"):
                continue
            rel = out[4:].rstrip("/")
            # An output may be a directory (a command writing files of its own choosing).
            inside = [p for p in published if p.startswith(rel + "/")] \
                if rel not in published else []
            if not inside and out == extra:
                continue  # the command wrote nothing of its own there
            for path in inside or [rel]:
                kind = kind_of(path)
                if kind == "video":
                    if path in published:
                        videos.append(path)
                    continue
                m = FRAME_RE.search(path)
                by_path[path] = Frame(int(m.group(1)) if m else 0, path, t.status.value,
                                      kind, path in published, t.id)
    frames = list(by_path.values())
    numbered = all(FRAME_RE.search(f.path) for f in frames)
    if numbered:
        frames.sort(key=lambda f: f.key)
    else:
        for i, f in enumerate(frames, 1):
            f.key = i
    for f in frames:
        done = tiles.get(f.key) if numbered else None
        if done:
            f.tiles_total, f.tiles_done = len(done), sum(done)
    return frames, videos


def job_detail(farm: Farm, job: Job, now: float) -> JobDetail:
    tasks = farm.store.tasks(job.id)
    totals = usage.of_jobs(farm.store.db, [job.id]).get(job.id)
    frames, videos = frames_of(farm, job.id, tasks)
    counts = farm.store.task_warning_counts(job.id)
    # Completed tasks with warnings come right after the unfinished and failed ones: their
    # frames may be wrong.
    order = {"active": 0, "failed": 1, "soft-failed": 2, "queued": 3, "paused": 4}
    rows = sorted(tasks, key=lambda t: (order.get(t.status.value, 6 - (t.id in counts)),
                                        t.idx))[:TASK_ROWS]
    _, unknown = energy_json(totals, farm.meter.site.currency)
    return JobDetail(job_view(farm, job, totals, now), frames, videos, rows,
                     [*farm.warnings(job), *unknown], warned_tasks(farm, tasks, counts),
                     counts)


def warned_tasks(farm: Farm, tasks: list[Task], counts: dict[int, int]
                 ) -> list[tuple[Task, list[str]]]:
    """The warnings of the job's completed tasks (those that make it
    completed-with-warnings), at most WARNED_ROWS tasks."""
    by_id = {t.id: t for t in tasks if t.id in counts and t.status.value == "completed"}
    ids = sorted(by_id, key=lambda i: by_id[i].idx)[:WARNED_ROWS]
    texts: dict[int, list[str]] = {i: [] for i in ids}
    for chunk in (ids[i:i + 500] for i in range(0, len(ids), 500)):
        marks = ",".join("?" * len(chunk))
        for task_id, text in farm.store.db.execute(
                f"SELECT task_id, text FROM task_warnings WHERE task_id IN ({marks})"
                " ORDER BY task_id, seq", chunk):
            texts[task_id].append(text)
    return [(by_id[i], texts[i]) for i in ids]


def pages(n: int) -> int:
    return max(1, math.ceil(n / PAGE))


@dataclass
class SlaveView:
    name: str
    state: str
    running: list[tuple[int, int, str]]  # the tasks it runs: (job, task, label)
    speed: float | None  # seconds per frame of the benchmark scene
    watts: float | None
    position: int | None
    why: str
    last_error: str
    slots: int
    actions: list[str]
    fingerprint: str = ""  # a pending slave's host key, which accepting it trusts
    since: float | None = None  # seconds in this state (asleep for 3 h, ...)


def pending(farm: Farm) -> list[discovered.Discovered]:
    """Slaves found on the network and waiting to be accepted."""
    return [r for r in discovered.all_rows(farm.store.db) if r.state == discovered.PENDING]


def wakeable(farm: Farm, name: str, state: str) -> bool:
    """Whether Wake would work: the master manages power, the slave has a mac and is in a
    state the waker wakes from (asleep, down, ...)."""
    power = farm.power
    return power is not None and name in power.machines and state in WAKEABLE_STATES


def slaves(farm: Farm) -> tuple[list[SlaveView], str]:
    """Every slave the master knows, with its ranking position under the site's policy."""
    rows = {s["name"]: s for s in farm.store.slaves()}
    now = farm.clock()
    measured = benchmarks.latest(farm.store.db)
    try:
        ranking: dict[str, Any] = farm.scheduler.ranking().to_json()
    except Exception:  # a ranking that cannot be computed must not take the page down
        ranking = {"slaves": [], "description": "unknown"}
    ranked = {r["slave"]: r for r in ranking.get("slaves", [])}
    out = []
    for name in sorted(set(rows) | set(farm.dispatchers)):
        row = rows.get(name, {})
        d = farm.dispatchers.get(name)
        state = shown(d.state if d is not None else str(row.get("state", "unknown")))
        bench = measured.get(name)
        place = farm.meter.places.get(name)
        watts = place.watts_busy if place and place.watts_busy else None
        r = ranked.get(name, {})
        actions = []
        if wakeable(farm, name, d.state if d is not None else state):
            actions.append("wake")
        if d is not None and state in ("idle", "busy", "quarantined"):
            actions.append("test")
        running = []
        for task_id in sorted(d.running) if d is not None else []:
            task = farm.store.task(task_id)
            if task is not None:
                running.append((task.job_id, task.id, task.label))
        out.append(SlaveView(
            name, state, running,  # shown as afarmctl slaves and shown_state say
            bench.seconds_per_frame if bench is not None else None, watts,
            r.get("position"), str(r.get("why", "")), str(row.get("last_error") or ""),
            d.slots if d is not None else 0, actions,
            since=now - row["state_since"] if row.get("state_since") is not None else None))
    for found in pending(farm):
        if found.name not in farm.dispatchers:
            out.append(SlaveView(found.name, "pending", [], None, None, None,
                                 f"found at {found.address}, host key {found.fingerprint}",
                                 found.warning, 0, ["accept"], found.fingerprint,
                                 since=now - found.first_seen if found.first_seen else None))
    return out, str(ranking.get("description", ""))
