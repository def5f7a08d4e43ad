# SPDX-License-Identifier: MIT
"""A one-line progress bar: frames (or tasks) done of total, and the time left."""

import time
from typing import Any, TextIO

WIDTH = 30


class ProgressBar:
    def __init__(self, out: TextIO, enabled: bool = True) -> None:
        self.out = out
        self.enabled = enabled
        self.tty = out.isatty()
        self.started = time.monotonic()
        self.first_done: int | None = None
        self.last_line = ""

    def line(self, job: dict[str, Any]) -> str:
        p = job["progress"]
        total, done, unit = p["frames_total"], p["frames_done"], "frames"
        if not total:
            total, done, unit = p["tasks"], p["completed"], "tasks"
        if self.first_done is None:
            self.first_done = done
        frac = done / total if total else 1.0
        filled = int(WIDTH * frac)
        bar = "#" * filled + "-" * (WIDTH - filled)
        elapsed = time.monotonic() - self.started
        rendered_here = done - self.first_done
        if done >= total:
            eta = "done"
        elif rendered_here > 0:
            eta = "ETA " + _clock(elapsed / rendered_here * (total - done))
        else:
            eta = "ETA --:--"
        extra = f", {p['active']} tasks running" if p.get("active") else ""
        if p.get("failed"):
            extra += f", {p['failed']} failed"
        if job.get("warned_tasks"):
            extra += f", {job['warned_tasks']} with warnings"
        return (f"job {job['id']} [{bar}] {done}/{total} {unit} {frac:4.0%} {eta}"
                f" ({_clock(elapsed)} elapsed, {job['status']}{extra})")

    def update(self, job: dict[str, Any]) -> None:
        if not self.enabled:
            return
        text = self.line(job)
        if text == self.last_line:
            return
        self.last_line = text
        if self.tty:
            self.out.write("\r\x1b[K" + text)
        else:
            self.out.write(text + "\n")
        self.out.flush()

    def close(self, job: dict[str, Any]) -> None:
        if self.enabled and self.tty:
            self.out.write("\n")
            self.out.flush()


def _clock(seconds: float) -> str:
    s = int(seconds)
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}" if s >= 3600 \
        else f"{s // 60:02d}:{s % 60:02d}"
