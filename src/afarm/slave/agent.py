# SPDX-License-Identifier: MIT
"""The slave side of the `serve` channel: JSON lines in on stdin, replies out on stdout.

One agent runs per master connection. It builds every argv itself from its own application
definitions and runs tasks through afarm.runner, the same runner the master's follow-ups
use. When its stdin closes (the master died or the connection dropped) it stops every
process it started, so a slave never keeps rendering for a master that is gone.
"""

import argparse
import json
import logging
import os
import shutil
import sys
import threading
import time
from pathlib import Path
from typing import IO, Any

from afarm import __version__
from afarm.applications.base import Application, plain_name, relative_name
from afarm.applications.registry import load_applications
from afarm.digest import sha256_file
from afarm.errors import AfarmError
from afarm.gpu import gpu_device, pinned_env
from afarm.protocol.messages import (
    PROTOCOL_VERSION,
    InputRef,
    ProtocolError,
    RunRequest,
    TaskReply,
)
from afarm.runner.sandbox import Sandbox, SandboxSettings
from afarm.runner.task import TaskRun
from afarm.runner.workspace import Input, Workspace
from afarm.slave import acceptance
from afarm.slave.apps import AppStore, InstallError
from afarm.slave.power import TaskGuard

log = logging.getLogger("afarm.agent")
MAX_REQUEST = 64 << 20  # one JSON line from the master; a million-item chunk fits
MAX_RUNS = 64  # concurrent runs one agent accepts, whatever the master asks: the most
#               slots a slave definition may have
PROGRESS_INTERVAL = 0.05  # at most 20 progress messages a second per task


class Refused(AfarmError):
    """A request the agent will not carry out; the reason goes back to the master."""


class Agent:
    def __init__(self, name: str, work_dir: Path, applications: dict[str, Application],
                 out: IO[bytes], *, cache_max_bytes: int = 0,
                 sandbox: Sandbox | None = None, software: str = "",
                 max_unpacked_bytes: int = 16 << 30) -> None:
        self.name = name
        self.software = software
        self.work = work_dir.resolve()
        self.apps = applications
        self.out = out
        self.cache_max_bytes = cache_max_bytes
        # Every task process runs in the sandbox; where it cannot be set up, every task
        # fails with its reason, never unsandboxed.
        self.sandbox = sandbox if sandbox is not None else Sandbox()
        self.lock = threading.Lock()
        self.running: dict[tuple[int, int], TaskRun] = {}
        self.running_jobs: dict[tuple[int, int], int] = {}
        self.in_use: dict[str, int] = {}  # cached sha256 -> runs using it
        self.cache = self.work / "cache"
        self.cache.mkdir(parents=True, exist_ok=True)
        self.verified = self.work / "verified"
        self.verified.mkdir(exist_ok=True)
        (self.work / "jobs").mkdir(parents=True, exist_ok=True)
        self.guard = TaskGuard(self.work)  # a sleep inhibitor while tasks run
        self.app_store = AppStore(self.work, max_unpacked_bytes)
        self.versions_in_use: dict[tuple[int, int], str] = {}  # run -> "NAME/VERSION"

    # -- channel --------------------------------------------------------------------------
    def send(self, message: dict[str, Any]) -> None:
        data = json.dumps(message, separators=(",", ":")).encode() + b"\n"
        with self.lock:
            self.out.write(data)
            self.out.flush()

    def serve(self, stdin: IO[bytes]) -> None:
        while True:
            raw = stdin.readline(MAX_REQUEST + 1)
            if not raw:
                break
            msg: Any = None
            try:
                if len(raw) > MAX_REQUEST:
                    raise Refused(f"a request line is longer than {MAX_REQUEST} bytes")
                msg = json.loads(raw)
                if not isinstance(msg, dict):
                    raise Refused("a request must be a JSON object")
                self.handle(msg)
            except (ValueError, Refused, ProtocolError) as exc:
                log.warning("refused request: %s", exc)
                rid = msg.get("id") if isinstance(msg, dict) else None
                self.send({"op": "refused", "reason": str(exc), "id": rid})
                if len(raw) > MAX_REQUEST:
                    break  # the rest of that line cannot be told from a new request
        self.stop_all()

    def handle(self, msg: dict[str, Any]) -> None:
        op = msg.get("op")
        if op == "hello":
            theirs = msg.get("protocol")
            if theirs != PROTOCOL_VERSION:
                raise Refused(f"the master speaks afarm protocol {theirs!r}, this slave"
                              f" ({__version__}) {PROTOCOL_VERSION}: install the same afarm"
                              " version on both")
            self.send({**self.hello(), "id": msg.get("id")})
        elif op == "run":
            try:
                req = RunRequest.from_wire(msg)
            except ProtocolError as exc:
                task, attempt = msg.get("task"), msg.get("attempt")
                if isinstance(task, int) and isinstance(attempt, int):
                    # The master waits for this attempt's done: answer it, do not strand it.
                    self.send(TaskReply(task, attempt, error=str(exc)).to_wire())
                    return
                raise
            key = (req.task, req.attempt)
            with self.lock:
                if key in self.running:
                    raise Refused(f"task {req.task} attempt {req.attempt} is already running")
                full = len(self.running) >= MAX_RUNS
                if not full:
                    run = self.running[key] = TaskRun(self._progress(req))
                    self.running_jobs[key] = req.job
            if full:  # answered as done, so the master moves the task on at once
                self.send(TaskReply(req.task, req.attempt, error=(
                    f"this slave already runs {MAX_RUNS} tasks, the most it takes")).to_wire())
                return
            threading.Thread(target=self.run_task, args=(req, run), daemon=True,
                             name=f"task-{req.task}").start()
        elif op == "cancel":
            task, attempt = msg.get("task"), msg.get("attempt")
            if not isinstance(task, int) or not isinstance(attempt, int) or task < 0:
                raise Refused("cancel: task and attempt must be non-negative integers")
            with self.lock:
                found = self.running.get((task, attempt))
            if found is not None:
                found.cancel()
        elif op == "has":
            shas = msg.get("sha256")
            if not isinstance(shas, list) or len(shas) > 100_000 or not all(
                    isinstance(s, str) and len(s) == 64 for s in shas):
                raise Refused("has: sha256 must be a list of sha256 hex digests")
            self.send({"op": "has", "id": msg.get("id"), "present": [
                s for s in shas if s.isalnum() and (self.cache / s).is_file()]})
        elif op == "gc":
            keep = msg.get("keep_jobs", [])
            if not isinstance(keep, list) or not all(isinstance(j, int) for j in keep):
                raise Refused("gc: keep_jobs must be a list of job ids")
            removed = self.gc(set(keep))
            days = msg.get("app_keep_days", 0)
            with self.lock:
                in_use = set(self.versions_in_use.values())
            apps = self.app_store.collect(float(days), in_use) \
                if isinstance(days, int | float) and not isinstance(days, bool) else []
            self.send({"op": "gc", "id": msg.get("id"), "removed": removed,
                       "evicted": self.evict_cache(), "apps_removed": apps})
        elif op in ("test", "bench"):
            self._start_check(op, msg)
        elif op == "install-app":
            self._start_install(msg)
        elif op == "ping":
            self.send({"op": "pong", "id": msg.get("id"), "at": time.time()})
        else:
            raise Refused(f"unknown op {op!r}; known: hello, run, cancel, has, gc, ping,"
                          " test, bench, install-app")

    def hello(self) -> dict[str, Any]:
        usage = shutil.disk_usage(self.work)
        try:
            mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        except (ValueError, OSError):
            mem = 0
        return {"op": "hello", "name": self.name, "version": __version__,
                "protocol": PROTOCOL_VERSION, "applications": sorted(self.apps),
                "cpus": os.cpu_count() or 1, "memory": mem, "disk_free": usage.free,
                "pid": os.getpid(), "software": self.software,
                "installed": self.app_store.installed(), "arch": debian_arch()}

    def _start_install(self, msg: dict[str, Any]) -> None:
        """`install-app`: unpack a pool version from the cache and run its acceptance
        test in the sandbox; a version that fails its test is removed again and the reply
        says `quarantine`, so the master keeps this slave off that version only."""
        rid = msg.get("id")
        name, version, sha = (str(msg.get(k)) for k in ("package", "version", "sha256"))
        definition = msg.get("definition")
        if not all(isinstance(msg.get(k), str) for k in ("package", "version", "sha256")) \
                or not isinstance(definition, dict):
            raise Refused("install-app: package, version, sha256 (text) and definition"
                          " (object) are required")
        conf: dict[str, Any] = definition

        def run() -> None:
            reply: dict[str, Any] = {"op": "install-app", "id": rid,
                                     "installed": f"{name}/{version}"}
            try:
                d, new = self.app_store.install(name, version, sha, conf)
                if new or not (d / "tested").exists():
                    app = self.app_store.application(name, version)
                    check = acceptance.check_application(
                        app, self.work / "jobs" / f"test-{name}-{version}", self.sandbox,
                        acceptance.SceneInfo())
                    reply["check"] = check.detail
                    if not check.ok:
                        self.app_store.remove(name, version)
                        reply.update(error=f"{name} {version} failed its acceptance test:"
                                     f" {check.detail}", quarantine=True)
                    else:
                        (d / "tested").touch()
            except InstallError as exc:
                reply["error"] = str(exc)
            except Exception as exc:  # a bug must not kill the agent or strand the master
                log.exception("install-app failed inside the agent")
                reply["error"] = f"internal error: {exc!r}"
            self.send(reply)

        threading.Thread(target=run, daemon=True, name=f"install-{name}").start()

    def _start_check(self, op: str, msg: dict[str, Any]) -> None:
        """`test` and `bench` take seconds: they run in a thread, the channel stays open."""
        def whole(key: str, lo: int, hi: int) -> int:
            v = msg.get(key, lo)
            if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
                raise Refused(f"{op}: {key} must be a whole number from {lo} to {hi}")
            return v

        rid = msg.get("id")
        if op == "test":
            disk, memory = whole("min_disk_mib", 0, 1 << 40), whole("min_memory_mib", 0, 1 << 40)

            def work() -> dict[str, Any]:
                return acceptance.run_tests(self.apps, self.work, self.sandbox, disk,
                                            memory).to_wire()
        else:
            frames = whole("frames", 1, 100)

            def work() -> dict[str, Any]:
                return acceptance.run_bench(self.apps, self.work, self.sandbox,
                                            frames).to_wire()

        def run() -> None:
            try:
                reply = work()
            except Exception as exc:  # a bug must not kill the agent or strand the master
                log.exception("%s failed inside the agent", op)
                reply = {"op": op, "checks": [{"name": "agent", "ok": False,
                                               "detail": f"internal error: {exc!r}"}],
                         "error": f"internal error: {exc!r}"}
            self.send({**reply, "id": rid})

        threading.Thread(target=run, daemon=True, name=op).start()

    def _progress(self, req: RunRequest) -> Any:
        last = [0.0]

        def saved(name: str) -> None:
            now = time.monotonic()
            if now - last[0] < PROGRESS_INTERVAL:
                return
            last[0] = now
            self.send({"op": "progress", "task": req.task, "attempt": req.attempt,
                       "saved": name[:255]})
        return saved

    # -- tasks ----------------------------------------------------------------------------
    def stop_all(self) -> None:
        with self.lock:
            runs = list(self.running.values())
        for run in runs:
            run.cancel()

    def task_dir(self, job: int, task: int, attempt: int) -> Path:
        return self.work / "jobs" / str(job) / f"{task}-{attempt}"

    def run_task(self, req: RunRequest, run: TaskRun) -> None:
        reply = TaskReply(task=req.task, attempt=req.attempt)
        shas = [i.sha256 for i in req.inputs]
        with self.lock:
            for s in shas:
                self.in_use[s] = self.in_use.get(s, 0) + 1
        started = time.monotonic()
        held = self.guard.begin(req.task, req.attempt)
        try:
            reply = self._run(req, run)
        except (Refused, AfarmError) as exc:
            log.warning("task %s: refused or failed: %s", req.task, exc)
            reply.error = str(exc)
        except OSError as exc:
            reply.error = f"{exc.strerror or exc} ({exc.filename or 'work dir'})"
        except Exception as exc:  # a bug must not kill the agent and strand the task
            log.exception("task %s failed inside the agent", req.task)
            reply.error = f"internal error in the slave agent: {exc!r}"
        if run.canceled and not reply.error:
            reply.error = "canceled"
        reply.seconds = round(time.monotonic() - started, 3)
        self.guard.end(req.task, req.attempt, held)
        with self.lock:
            self.running.pop((req.task, req.attempt), None)
            self.running_jobs.pop((req.task, req.attempt), None)
            self.versions_in_use.pop((req.task, req.attempt), None)
            for s in shas:
                self.in_use[s] -= 1
                if not self.in_use[s]:
                    del self.in_use[s]
        self.send(reply.to_wire())

    def _run(self, req: RunRequest, run: TaskRun) -> TaskReply:
        app: Application | None
        if req.version:
            # The version's own definition, as installed from the pool, builds the argv.
            app = self.app_store.application(req.app, req.version)
            with self.lock:
                self.versions_in_use[(req.task, req.attempt)] = f"{req.app}/{req.version}"
        else:
            app = self.apps.get(req.app)
        if app is None:
            raise Refused(f"application {req.app!r} is not defined on slave {self.name}")
        expected = [plain_name(o, "output") for o in req.outputs]
        for i in req.inputs:
            relative_name(i.name, "input")
        ws = Workspace(self.task_dir(req.job, req.task, req.attempt))
        ws.create()
        inputs = [ws.link(Input(i.name, self._cached(i))) for i in req.inputs]
        # A GPU task sees only the device the master pinned it to (afarm/gpu.py).
        device = gpu_device(req.params)
        env = {**ws.env(), **(pinned_env(device) if device is not None else {})}
        result = run.execute(app, req.kind, req.params, ws, inputs, expected,
                             float(req.timeout), env,
                             wrap=self.sandbox.pinned(device).wrap_workspace)
        return TaskReply(task=req.task, attempt=req.attempt, exit_code=result.exit_code,
                         error=result.error, timed_out=result.timed_out,
                         outputs=result.outputs,
                         out_dir=str(ws.out_dir.relative_to(self.work)),
                         argv=result.argv, log=result.log, errors=result.errors,
                         warnings=result.warnings, energy_j=result.energy_j)

    def _cached(self, ref: InputRef) -> Path:
        cached = self.cache / ref.sha256
        if not cached.is_file():
            raise Refused(f"input {ref.name!r} ({ref.sha256[:12]}) is not in the slave's cache")
        # The markers live outside cache/, the one dir a put may write: a forged marker
        # would skip the check.
        ok_marker = self.verified / ref.sha256
        if not ok_marker.exists():
            # Checked once per file, not per task: a 200 MB file costs ~0.5 s to hash.
            if sha256_file(cached) != ref.sha256:
                cached.unlink()
                raise Refused(f"input {ref.name!r} arrived corrupted (sha256 mismatch); it"
                              " will be sent again")
            ok_marker.touch()
        os.utime(ok_marker)  # last use, for the cache's LRU eviction
        return cached

    # -- garbage --------------------------------------------------------------------------
    def gc(self, keep: set[int]) -> int:
        """Remove the task dirs of jobs the master no longer needs here."""
        with self.lock:
            busy = {str(k) for k in keep} | {str(j) for j in self.running_jobs.values()}
        removed = 0
        for d in (self.work / "jobs").iterdir():
            if d.name not in busy:
                shutil.rmtree(d, ignore_errors=True)
                removed += 1
        return removed

    def evict_cache(self) -> int:
        """Drop least recently used inputs until the cache fits its size limit."""
        if self.cache_max_bytes <= 0:
            return 0
        entries = []
        total = 0
        for p in self.cache.iterdir():
            if p.suffix or not p.is_file():
                continue
            size = p.stat().st_size
            total += size
            marker = self.verified / p.name
            used = marker.stat().st_mtime if marker.exists() else p.stat().st_mtime
            entries.append((used, p, size))
        evicted = 0
        with self.lock:
            in_use = set(self.in_use)
        for _, p, size in sorted(entries):
            if total <= self.cache_max_bytes:
                break
            if p.name in in_use:
                continue
            p.unlink(missing_ok=True)
            (self.verified / p.name).unlink(missing_ok=True)
            total -= size
            evicted += 1
        return evicted


def debian_arch() -> str:
    """This machine's Debian architecture name (what pool versions are built for)."""
    machine = os.uname().machine
    return {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "armhf",
            "i686": "i386"}.get(machine, machine)


def serve(name: str, work_dir: Path, applications_dir: Path,
          cache_max_bytes: int = 0, sandbox: SandboxSettings | None = None,
          max_unpacked_bytes: int = 16 << 30) -> int:
    """Run the agent on this process's stdin/stdout until the master goes away."""
    apps = load_applications(applications_dir)
    agent = Agent(name, work_dir, apps, sys.stdout.buffer, cache_max_bytes=cache_max_bytes,
                  sandbox=Sandbox(sandbox),
                  software=acceptance.software_digest(applications_dir, apps),
                  max_unpacked_bytes=max_unpacked_bytes)
    agent.serve(sys.stdin.buffer)
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="afarm-agent", description=__doc__)
    p.add_argument("--name", default=os.uname().nodename)
    p.add_argument("--work-dir", type=Path, required=True)
    p.add_argument("--applications-dir", type=Path, required=True)
    p.add_argument("--cache-max-mib", type=int, default=0)
    p.add_argument("--max-unpacked-mib", type=int, default=16384)
    p.add_argument("--sandbox", type=SandboxSettings.from_json, default=None,
                   help="the [sandbox] settings as JSON (SandboxSettings.to_json)")
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format=f"afarm-agent[{a.name}] %(levelname)s %(message)s")
    return serve(a.name, a.work_dir, a.applications_dir, a.cache_max_mib << 20, a.sandbox,
                 max_unpacked_bytes=a.max_unpacked_mib << 20)


if __name__ == "__main__":
    sys.exit(main())
