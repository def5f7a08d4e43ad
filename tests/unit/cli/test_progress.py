# SPDX-License-Identifier: MIT
import io
from typing import Any

from afarm.cli.progress import ProgressBar


def job(done: int, total: int, status: str = "active") -> dict[str, Any]:
    return {"id": 3, "status": status, "progress": {
        "frames_total": total, "frames_done": done, "tasks": total, "completed": done,
        "active": 2, "failed": 0}}


def test_the_bar_shows_frames_done_of_total_and_an_eta() -> None:
    bar = ProgressBar(io.StringIO())
    bar.started -= 10
    assert "ETA --:--" in bar.line(job(0, 24))
    bar.started -= 10
    line = bar.line(job(12, 24))
    assert "12/24 frames" in line and " 50%" in line and "ETA 00:" in line


def test_a_finished_job_says_done() -> None:
    line = ProgressBar(io.StringIO()).line(job(24, 24, "completed"))
    assert "24/24 frames 100% done" in line and "completed" in line


def test_jobs_without_frames_count_tasks() -> None:
    j = job(0, 0)
    j["progress"].update(tasks=10, completed=4)
    assert "4/10 tasks" in ProgressBar(io.StringIO()).line(j)


def test_tasks_with_warnings_are_counted_while_the_job_runs() -> None:
    line = ProgressBar(io.StringIO()).line({**job(3, 24), "warned_tasks": 2})
    assert line.endswith("2 tasks running, 2 with warnings)")
