# SPDX-License-Identifier: MIT
"""The slave side of the `serve` channel: JSON lines in on stdin, replies out on stdout.

One agent runs per master connection. It builds every argv itself from its own application
definitions, runs it without a shell in a scratch directory of its work dir, and reports
back. When its stdin closes (the master died or the connection dropped) it stops every
process it started, so a slave never keeps rendering for a master that is gone.
"""

import argparse
import json
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from afarm import __version__
from afarm.applications.base import Application, RunContext, plain_name, relative_name
from afarm.applications.registry import load_applications
from afarm.digest import sha256_file
from afarm.errors import AfarmError
from afarm.images import verify_output
from afarm.runner.sandbox import Sandbox, SandboxSettings, open_output

log = logging.getLogger("afarm.agent")
_SHA = re.compile(r"^[0-9a-f]{64}$")
_SAVED = re.compile(r"Saved: '(.+)'")
_OUTPUT_NAME = re.compile(r"^[A-Za-z0-9_+][A-Za-z0-9._+-]{0,254}$")
LOG_TAIL = 200


class Refused(AfarmError):
    """A request the agent will not carry out; the reason goes back to the master."""


@dataclass
class Running:
    task: int
    attempt: int
    proc: subprocess.Popen[bytes] | None = None
    canceled: bool = False
    argv: list[str] = field(default_factory=list)
    lines: deque[str] = field(default_factory=lambda: deque(maxlen=LOG_TAIL))
    errors: list[str] = field(default_factory=list)


class Agent:
    def __init__(self, name: str, work_dir: Path, applications: dict[str, Application],
                 out: IO[bytes], sandbox: Sandbox | None = None) -> None:
        self.name = name
        self.work = work_dir.resolve()
        self.apps = applications
        self.out = out
        self.lock = threading.Lock()
        self.running: dict[tuple[int, int], Running] = {}
        (self.work / "cache").mkdir(parents=True, exist_ok=True)
        (self.work / "jobs").mkdir(parents=True, exist_ok=True)
        # Issue 9 hook: every task process runs in the sandbox; where it cannot be set up,
        # every task fails with its reason (SandboxError), never unsandboxed.
        self.sandbox = sandbox if sandbox is not None else Sandbox()

    # -- channel --------------------------------------------------------------------------
    def send(self, message: dict[str, Any]) -> None:
        data = json.dumps(message, separators=(",", ":")).encode() + b"\n"
        with self.lock:
            self.out.write(data)
            self.out.flush()

    def serve(self, stdin: IO[bytes]) -> None:
        for raw in stdin:
            try:
                msg = json.loads(raw)
                if not isinstance(msg, dict):
                    raise Refused("a request must be a JSON object")
                self.handle(msg)
            except (ValueError, Refused) as exc:
                log.warning("refused request: %s", exc)
                self.send({"op": "refused", "reason": str(exc)})
        self.stop_all()

    def handle(self, msg: dict[str, Any]) -> None:
        op = msg.get("op")
        if op == "hello":
            self.send({**self.hello(), "id": msg.get("id")})
        elif op == "run":
            job, task, attempt = _ints(msg, "job", "task", "attempt")
            key = (task, attempt)
            with self.lock:
                self.running[key] = Running(task, attempt)
            threading.Thread(target=self.run_task, args=(msg, job, task, attempt),
                             daemon=True, name=f"task-{task}").start()
        elif op == "cancel":
            task, attempt = _ints(msg, "task", "attempt")
            self.cancel(task, attempt)
        elif op == "has":
            shas = msg.get("sha256")
            if not isinstance(shas, list) or not all(isinstance(s, str) and _SHA.match(s)
                                                     for s in shas):
                raise Refused("has: sha256 must be a list of sha256 hex digests")
            self.send({"op": "has", "id": msg.get("id"), "present": [s for s in shas
                                                if (self.work / "cache" / s).is_file()]})
        elif op == "gc":
            keep = msg.get("keep_jobs", [])
            if not isinstance(keep, list) or not all(isinstance(j, int) for j in keep):
                raise Refused("gc: keep_jobs must be a list of job ids")
            self.send({"op": "gc", "id": msg.get("id"), "removed": self.gc(set(keep))})
        elif op == "ping":
            self.send({"op": "pong", "id": msg.get("id"), "at": time.time()})
        else:
            raise Refused(f"unknown op {op!r}; known: hello, run, cancel, has, gc, ping")

    def hello(self) -> dict[str, Any]:
        usage = shutil.disk_usage(self.work)
        try:
            mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        except (ValueError, OSError):
            mem = 0
        return {"op": "hello", "name": self.name, "version": __version__,
                "applications": sorted(self.apps), "cpus": os.cpu_count() or 1,
                "memory": mem, "disk_free": usage.free, "pid": os.getpid()}

    # -- tasks ----------------------------------------------------------------------------
    def cancel(self, task: int, attempt: int) -> None:
        with self.lock:
            run = self.running.get((task, attempt))
            if run is None:
                return
            run.canceled = True
            proc = run.proc
        if proc is not None:
            _kill_group(proc)

    def stop_all(self) -> None:
        with self.lock:
            runs = list(self.running.values())
        for run in runs:
            run.canceled = True
            if run.proc is not None:
                _kill_group(run.proc)

    def task_dir(self, job: int, task: int, attempt: int) -> Path:
        return self.work / "jobs" / str(job) / f"{task}-{attempt}"

    def run_task(self, msg: dict[str, Any], job: int, task: int, attempt: int) -> None:
        run = self.running[(task, attempt)]
        reply: dict[str, Any] = {"op": "done", "task": task, "attempt": attempt,
                                 "exit_code": None, "error": None, "outputs": []}
        started = time.monotonic()
        try:
            reply.update(self._run(msg, run, job, task, attempt))
        except (Refused, AfarmError) as exc:
            log.warning("task %s: refused or failed: %s", task, exc)
            reply["error"] = str(exc)
        except OSError as exc:
            reply["error"] = f"{exc.strerror or exc} ({exc.filename or 'work dir'})"
        except Exception as exc:  # a bug must not kill the agent and strand the task
            log.exception("task %s failed inside the agent", task)
            reply["error"] = f"internal error in the slave agent: {exc!r}"
        if run.canceled and not reply["error"]:
            reply["error"] = "canceled"
        reply["seconds"] = round(time.monotonic() - started, 3)
        reply["argv"] = run.argv
        reply["log"] = list(run.lines)
        reply["errors"] = run.errors[-50:]
        with self.lock:
            self.running.pop((task, attempt), None)
        self.send(reply)

    def _run(self, msg: dict[str, Any], run: Running, job: int, task: int,
             attempt: int) -> dict[str, Any]:
        app_name = msg.get("app")
        app = self.apps.get(app_name) if isinstance(app_name, str) else None
        if app is None:
            raise Refused(f"application {app_name!r} is not defined on slave {self.name}")
        kind = msg.get("kind")
        params = msg.get("params")
        outputs = msg.get("outputs", [])
        timeout = msg.get("timeout") or app.timeout
        if not isinstance(kind, str) or not isinstance(params, dict):
            raise Refused("run: kind must be a string and params an object")
        if not isinstance(outputs, list) or not isinstance(timeout, int | float):
            raise Refused("run: outputs must be a list and timeout a number")
        expected = [plain_name(str(o), "output") for o in outputs]

        base = self.task_dir(job, task, attempt)
        if base.exists():
            shutil.rmtree(base)
        in_dir, out_dir, scratch = base / "in", base / "out", base / "scratch"
        for d in (in_dir, out_dir, scratch):
            d.mkdir(parents=True)
        inputs = [self._link_input(spec, in_dir) for spec in msg.get("inputs", [])]
        ctx = RunContext(inputs=inputs, out_dir=out_dir, scratch=scratch, outputs=expected)
        commands = app.commands(kind, params, ctx)
        deadline = time.monotonic() + float(timeout)
        for cmd in commands:
            if run.canceled:
                return {"error": "canceled"}
            code = self._spawn(run, cmd.argv, scratch, out_dir / cmd.stdout_name
                               if cmd.stdout_name else None, deadline)
            if code is None:
                return {"error": f"timed out after {timeout} s", "timed_out": True}
            if run.canceled:
                return {"error": "canceled", "exit_code": code}
            why = app.failure(code, list(run.lines))
            if why:
                return {"error": why, "exit_code": code}
        produced = sorted(p.name for p in out_dir.iterdir() if p.is_file()
                          and not p.is_symlink())
        odd = [n for n in produced if not _OUTPUT_NAME.match(n)]
        if odd:
            # Such names cannot cross rsync through the slave's shell; failing loudly beats
            # a job that completes without some of its files.
            return {"exit_code": 0, "outputs": [],
                    "error": f"the program wrote {odd[0]!r}: output file names may only use"
                             " letters, digits, '.', '_', '+' and '-' and must not start with"
                             " '.' or '-'"}
        missing = [o for o in expected if o not in produced]
        if missing:
            return {"exit_code": 0, "outputs": produced,
                    "error": f"finished without writing {', '.join(missing[:5])}"
                             + (" (last log line: " + run.lines[-1] + ")" if run.lines else "")}
        for name in expected:
            verify_output(out_dir / name)
        rel = str(out_dir.relative_to(self.work))
        return {"exit_code": 0, "outputs": produced, "out_dir": rel}

    def _link_input(self, spec: Any, in_dir: Path) -> Path:
        if not isinstance(spec, dict):
            raise Refused("run: each input must be an object with name and sha256")
        name = relative_name(str(spec.get("name", "")), "input")
        sha = str(spec.get("sha256", ""))
        if not _SHA.match(sha):
            raise Refused(f"run: input {name!r} has no valid sha256")
        cached = self.work / "cache" / sha
        if not cached.is_file():
            raise Refused(f"input {name!r} ({sha[:12]}) is not in the slave's cache")
        ok_marker = self.work / "cache" / f"{sha}.ok"
        if not ok_marker.exists():
            # Checked once per file, not per task: a 200 MB file costs ~0.5 s to hash.
            if sha256_file(cached) != sha:
                cached.unlink()
                raise Refused(f"input {name!r} arrived corrupted (sha256 mismatch); it will"
                              " be sent again")
            ok_marker.touch()
        target = in_dir / name
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(cached, target)
        except OSError:
            shutil.copyfile(cached, target)
        return target

    def _spawn(self, run: Running, argv: list[str], cwd: Path, stdout_path: Path | None,
               deadline: float) -> int | None:
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(cwd),
               "TMPDIR": str(cwd), "LANG": "C.UTF-8"}
        # Issue 9 hook: in/ and out/ are scratch's siblings (task_dir); raises SandboxError.
        sandboxed = self.sandbox.wrap(argv, cwd.parent / "in", cwd.parent / "out", cwd)
        # Issue 9 hook: out/ is the task's; a name it left there is replaced, not followed.
        out_file = open_output(stdout_path) if stdout_path else None
        try:
            proc = subprocess.Popen(
                sandboxed, cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                stdout=out_file if out_file else subprocess.PIPE,
                stderr=subprocess.PIPE if out_file else subprocess.STDOUT,
                start_new_session=True)
        except OSError as exc:
            if out_file:
                out_file.close()
            raise Refused(f"cannot start {argv[0]}: {exc.strerror}") from exc
        run.proc = proc
        run.argv = argv
        if run.canceled:
            _kill_group(proc)
        stream = proc.stderr if out_file else proc.stdout
        reader = threading.Thread(target=self._read_lines, args=(run, stream), daemon=True)
        reader.start()
        # Popen.wait(timeout) polls with sleeps of up to 50 ms, which would be most of a
        # short task's overhead; a timer thread kills on the deadline and wait() blocks.
        expired = threading.Event()

        def expire() -> None:
            expired.set()
            _kill_group(proc)

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
        run.proc = None
        return code

    def _read_lines(self, run: Running, stream: IO[bytes] | None) -> None:
        if stream is None:
            return
        app_error = re.compile(r"(?i)(error|traceback|exception|cannot|failed|unable)")
        for raw in stream:
            line = raw.decode(errors="replace").rstrip()
            run.lines.append(line)
            if app_error.search(line):
                run.errors.append(line)
            saved = _SAVED.search(line)
            if saved:
                self.send({"op": "progress", "task": run.task, "attempt": run.attempt,
                           "saved": Path(saved.group(1)).name})

    def gc(self, keep: set[int]) -> int:
        removed = 0
        with self.lock:
            busy = {str(k) for k in keep}
        for d in (self.work / "jobs").iterdir():
            if d.name not in busy:
                shutil.rmtree(d, ignore_errors=True)
                removed += 1
        return removed


def _ints(msg: dict[str, Any], *keys: str) -> tuple[int, ...]:
    values = []
    for k in keys:
        v = msg.get(k)
        if isinstance(v, bool) or not isinstance(v, int) or v < 0:
            raise Refused(f"{msg.get('op')}: {k} must be a non-negative integer")
        values.append(v)
    return tuple(values)


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def serve(name: str, work_dir: Path, applications_dir: Path,
          sandbox: SandboxSettings | None = None) -> int:
    """Run the agent on this process's stdin/stdout until the master goes away."""
    apps = load_applications(applications_dir)
    agent = Agent(name, work_dir, apps, sys.stdout.buffer, Sandbox(sandbox))
    agent.serve(sys.stdin.buffer)
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="afarm-agent", description=__doc__)
    p.add_argument("--name", default=os.uname().nodename)
    p.add_argument("--work-dir", type=Path, required=True)
    p.add_argument("--applications-dir", type=Path, required=True)
    p.add_argument("--sandbox", type=SandboxSettings.from_json, default=None,
                   help="the [sandbox] settings as JSON (SandboxSettings.to_json)")
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format=f"afarm-agent[{a.name}] %(levelname)s %(message)s")
    return serve(a.name, a.work_dir, a.applications_dir, a.sandbox)


if __name__ == "__main__":
    sys.exit(main())
