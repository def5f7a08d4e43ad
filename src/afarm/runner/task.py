# SPDX-License-Identifier: MIT
"""Run one task's commands in its workspace and check what it left: used by the slave agent
and by the master's own follow-up tasks, so both keep one input and output contract."""

import re
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from afarm.applications.base import HARMLESS_LINE, Application
from afarm.protocol.messages import MAX_ERRORS
from afarm.protocol.messages import MAX_LOG_LINES as LOG_TAIL
from afarm.runner import rapl
from afarm.runner.process import Process
from afarm.runner.verify import verify_output
from afarm.runner.workspace import Workspace

OUTPUT_NAME = re.compile(r"^[A-Za-z0-9_+][A-Za-z0-9._+-]{0,254}$")
_SAVED = re.compile(r"Saved: '(.+)'")
_ERROR = re.compile(r"(?i)(error|traceback|exception|cannot|failed|unable)")
# render_prep.py's "afarm: warning: ..." lines (and the older "afarm warning: " spelling):
# each is one task warning, stored with the task and shown by afarmctl status.
_WARNING = re.compile(r"^afarm:? warning: (.+)$")
MAX_TASK_WARNINGS = 20  # kept per attempt; the rest are counted in one closing line
MAX_WARNING_CHARS = 1000


@dataclass
class TaskResult:
    exit_code: int | None = None
    error: str | None = None
    timed_out: bool = False
    outputs: list[str] = field(default_factory=list)
    argv: list[str] = field(default_factory=list)
    log: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    seconds: float = 0.0
    energy_j: float | None = None  # what the CPU packages used meanwhile, where readable


class TaskRun:
    """One attempt of one task; `cancel()` may come from another thread."""

    def __init__(self, on_saved: Callable[[str], None] | None = None) -> None:
        self.canceled = False
        self.process = Process()
        self.lines: deque[str] = deque(maxlen=LOG_TAIL)
        self.errors: deque[str] = deque(maxlen=MAX_ERRORS)
        self.warnings: list[str] = []
        self.more_warnings = 0
        self.argv: list[str] = []
        self._on_saved = on_saved
        self._lock = threading.Lock()

    def cancel(self) -> None:
        self.canceled = True
        self.process.kill()

    def _line(self, line: str) -> None:
        with self._lock:
            self.lines.append(line)
            warn = _WARNING.match(line)
            if warn:
                if len(self.warnings) < MAX_TASK_WARNINGS:
                    self.warnings.append(warn.group(1)[:MAX_WARNING_CHARS])
                else:
                    self.more_warnings += 1
            elif _ERROR.search(line) and not HARMLESS_LINE.match(line):
                self.errors.append(line)
        saved = _SAVED.search(line)
        if saved and self._on_saved is not None:
            self._on_saved(Path(saved.group(1)).name)

    def execute(self, app: Application, kind: str, params: dict[str, object],
                ws: Workspace, inputs: list[Path], expected: list[str], timeout: float,
                env: dict[str, str],
                wrap: Callable[[list[str], Workspace], list[str]] | None = None,
                ) -> TaskResult:
        zones = rapl.zones()
        before = rapl.read(zones)
        started = time.monotonic()
        result = self._execute(app, kind, params, ws, inputs, expected, timeout, env, wrap)
        result.seconds = round(time.monotonic() - started, 3)
        result.energy_j = rapl.joules_between(zones, before, rapl.read(zones))
        result.argv = self.argv
        with self._lock:
            result.log = list(self.lines)
            result.errors = list(self.errors)
            result.warnings = list(self.warnings)
            if self.more_warnings:
                result.warnings.append(f"... and {self.more_warnings} more warnings"
                                       " (afarmctl logs JOB shows the output)")
        if self.canceled and not result.error:
            result.error = "canceled"
        return result

    def _execute(self, app: Application, kind: str, params: dict[str, object],
                 ws: Workspace, inputs: list[Path], expected: list[str], timeout: float,
                 env: dict[str, str],
                 wrap: Callable[[list[str], Workspace], list[str]] | None) -> TaskResult:
        ctx = ws.context(inputs, expected)
        deadline = time.monotonic() + timeout
        for cmd in app.commands(kind, dict(params), ctx):
            if self.canceled:
                return TaskResult(error="canceled")
            self.argv = cmd.argv
            argv = wrap(cmd.argv, ws) if wrap else cmd.argv
            code = self.process.run(
                argv, cwd=ws.scratch, env=env, deadline=deadline, on_line=self._line,
                stdout_path=ws.out_dir / cmd.stdout_name if cmd.stdout_name else None)
            if code is None:
                return TaskResult(error=f"timed out after {timeout:g} s", timed_out=True)
            if self.canceled:
                return TaskResult(error="canceled", exit_code=code)
            why = app.failure(code, list(self.lines))
            if why:
                return TaskResult(error=why, exit_code=code)
        produced = sorted(p.name for p in ws.out_dir.iterdir()
                          if p.is_file() and not p.is_symlink())
        # A name afarm planned itself (an mp4 named after the job, in the user's letters)
        # is fine: it never crosses the slave's shell (such follow-ups run on the master).
        odd = [n for n in produced if not OUTPUT_NAME.match(n) and n not in expected]
        if odd:
            # Such names cannot cross rsync through the slave's shell; failing loudly beats
            # a job that completes without some of its files.
            return TaskResult(exit_code=0, error=(
                f"the program wrote {odd[0]!r}: output file names may only use letters,"
                " digits, '.', '_', '+' and '-' and must not start with '.' or '-'"))
        missing = [o for o in expected if o not in produced]
        if missing:
            last = f" (last log line: {self.lines[-1]})" if self.lines else ""
            return TaskResult(exit_code=0, outputs=produced,
                              error=f"finished without writing {', '.join(missing[:5])}{last}")
        for name in expected:
            verify_output(ws.out_dir / name)
        return TaskResult(exit_code=0, outputs=produced)
