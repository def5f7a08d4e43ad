# SPDX-License-Identifier: MIT
"""What afarmctl says when a job ends, and how jobs marks one with task warnings."""

import argparse
from typing import Any, cast

import pytest

from afarm.cli import commands
from afarm.cli.client import Client


def job(status: str, **kw: Any) -> dict[str, Any]:
    return {"id": 4, "status": status, "tasks": [], "warned_tasks": 0, "task_warnings": [],
            **kw}


def test_a_completed_job_ends_quietly_with_0() -> None:
    assert commands.ending(job("completed")) == (0, [])


def test_a_failed_job_names_its_first_failed_task_error_and_the_logs_command() -> None:
    tasks = [{"id": 12, "index": 2, "label": "frame 3", "status": "failed", "error": "late",
              "failures": []},
             {"id": 11, "index": 1, "label": "frame 2", "status": "failed",
              "error": "blender exited 1: Error: not a blend file",
              "failures": [{"slave": "b"}, {"slave": "a"}, {"slave": "b"}]},
             {"id": 10, "index": 0, "label": "frame 1", "status": "completed", "error": ""}]
    code, lines = commands.ending(job("failed", tasks=tasks))
    assert code == 1
    assert lines == ["job 4 failed: task 11 (frame 2) failed: blender exited 1: Error: not a"
                     " blend file",
                     "  it failed 3 times, on a, b",
                     "see afarmctl logs 4 --task 11 for the task's output"]


def test_a_job_with_task_warnings_exits_3_and_lists_them() -> None:
    warned = job("completed-with-warnings", warned_tasks=2, task_warnings=[
        {"warning": "image 'x' reads '//x.png': no such file in the job", "tasks": 2,
         "first_task": 5},
        {"warning": "scene 'S' asks for denoising, ...", "tasks": 1, "first_task": 6}])
    code, lines = commands.ending(warned)
    assert code == commands.EX_WARNINGS == 3
    assert lines == ["job 4 completed with warnings:",
                     "  image 'x' reads '//x.png': no such file in the job  [2 tasks]",
                     "  scene 'S' asks for denoising, ...  [task 6]",
                     "see afarmctl status 4; submit --strict makes such a job fail"]


def test_a_canceled_job_exits_1() -> None:
    assert commands.ending(job("canceled")) == (1, ["job 4 canceled"])


class Jobs:
    def get_with_headers(self, path: str) -> tuple[list[dict[str, Any]], dict[str, str]]:
        progress = {"completed": 2, "tasks": 2}
        return [{"id": 9, "status": "completed-with-warnings", "warned_tasks": 1,
                 "progress": progress, "application": "blender", "name": "a"},
                {"id": 8, "status": "completed", "warned_tasks": 0, "progress": progress,
                 "application": "blender", "name": "b"}], {"x-total-count": "2"}


def test_jobs_marks_a_job_with_task_warnings(capsys: pytest.CaptureFixture[str]) -> None:
    commands.cmd_jobs(argparse.Namespace(json=False, before=None, limit=None, every=False),
                      cast(Client, Jobs()))
    lines = capsys.readouterr().out.splitlines()
    assert lines[1].startswith("    9! completed-with-warnings")
    assert lines[2].startswith("    8  completed ")
    assert lines[-1].startswith("!: the job has task warnings")
