# SPDX-License-Identifier: MIT
"""The one place a task's program is started, timed out, read and reaped.

Always an argv list, never a shell; the program gets its own session, so cancelling kills
everything it started. Its output is read line by line (bounded) for the task log.
"""

import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO

from afarm.errors import AfarmError
from afarm.protocol.messages import MAX_LINE
from afarm.runner.sandbox import open_output


class CannotStart(AfarmError):
    """The program could not be started at all (missing, not executable)."""


class Process:
    """One running program; `kill()` may be called from any thread."""

    def __init__(self) -> None:
        self.proc: subprocess.Popen[bytes] | None = None
        self.killed = False
        self._lock = threading.Lock()

    def kill(self) -> None:
        with self._lock:
            self.killed = True
            if self.proc is not None:
                kill_group(self.proc)

    def run(self, argv: list[str], *, cwd: Path, env: dict[str, str],
            stdout_path: Path | None, deadline: float,
            on_line: Callable[[str], None]) -> int | None:
        """Run to the end; returns the exit code, or None if the deadline killed it."""
        # out/ belongs to the task: a name it left there is replaced, never followed.
        out_file = open_output(stdout_path) if stdout_path else None
        try:
            proc = subprocess.Popen(
                argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                stdout=out_file if out_file else subprocess.PIPE,
                stderr=subprocess.PIPE if out_file else subprocess.STDOUT,
                start_new_session=True)
        except OSError as exc:
            if out_file:
                out_file.close()
            raise CannotStart(f"cannot start {argv[0]}: {exc.strerror}") from exc
        with self._lock:
            self.proc = proc
            if self.killed:
                kill_group(proc)
        stream = proc.stderr if out_file else proc.stdout
        reader = threading.Thread(target=_read_lines, args=(stream, on_line), daemon=True)
        reader.start()
        # Popen.wait(timeout) polls with sleeps of up to 50 ms, which would be most of a
        # short task's overhead; a timer thread kills on the deadline and wait() blocks.
        expired = threading.Event()

        def expire() -> None:
            expired.set()
            kill_group(proc)

        timer = threading.Timer(max(0.0, deadline - time.monotonic()), expire)
        timer.daemon = True
        timer.start()
        code: int | None = proc.wait()
        timer.cancel()
        if expired.is_set():
            code = None
        reader.join(timeout=5)
        if out_file:
            out_file.close()
        with self._lock:
            self.proc = None
        return code


def _read_lines(stream: IO[bytes] | None, on_line: Callable[[str], None]) -> None:
    if stream is None:
        return
    for raw in stream:
        on_line(raw[:MAX_LINE].decode(errors="replace").rstrip())


def kill_group(proc: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
