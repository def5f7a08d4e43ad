# SPDX-License-Identifier: MIT
"""One link per slave: holds its channel, runs a task there, brings the outputs home.

A link knows nothing of the queue: `run()` executes one attempt and returns an Outcome that
the scheduler applies. What it needs from the rest of the master it declares in LinkHooks.
"""

import asyncio
import itertools
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

from afarm.errors import AfarmError
from afarm.master.results import output_rel
from afarm.model.job import Job, Task
from afarm.protocol.messages import (
    PROTOCOL_VERSION,
    Hello,
    InputRef,
    Progress,
    ProtocolError,
    RunRequest,
    TaskReply,
)
from afarm.runner.verify import verify_output
from afarm.transport.base import AuthFailure, Channel, HostUnreachable, Transport, TransportError

log = logging.getLogger(__name__)
GRACE = 30.0  # seconds past a task's timeout before the master gives up on the agent
WAKING_RETRY = 2.0  # seconds between SSH attempts to a waking slave
PROGRESS_PER_SECOND = 50  # more from one slave is dropped, not queued


class SlaveGone(Exception):
    """The channel closed while we waited: the slave (or the path to it) is gone."""


OutcomeKind = Literal["done", "failed", "gone", "canceled"]


@dataclass
class Outcome:
    """How an attempt ended, for the scheduler to apply.

    done: outputs fetched and verified in `got` (rel path -> partial file);
    failed: the slave answered but the task did not work (counts against the slave);
    gone: the slave or the path to it vanished (redo elsewhere, blame no one);
    canceled: the master is stopping or the job was canceled.
    """

    kind: OutcomeKind
    reason: str = ""
    reply: TaskReply | None = None
    got: dict[str, Path] = field(default_factory=dict)


class LinkHooks(Protocol):
    def slave_state(self, name: str, state: str, error: str | None,
                    info: dict[str, Any] | None) -> None: ...

    def slave_ready(self, name: str) -> None: ...

    def progress(self, name: str, msg: Progress) -> None: ...

    def count_bytes(self, name: str, n: int) -> None: ...


class FileSource(Protocol):
    def path(self, sha: str) -> Path: ...


class VersionSource(Protocol):
    """The master's pool (master/pool/index.py) as a link needs it."""

    def entry(self, package: str, version: str, arch: str = "amd64") -> Any: ...

    def path(self, entry: Any) -> Path: ...

    def packages(self) -> frozenset[str]: ...


class VersionRefused(AfarmError):
    """A pool version this slave cannot run (not for its architecture, quarantined)."""

INSTALL_TIMEOUT = 1800.0  # seconds: unpacking a large version and its acceptance test


class Admission(Protocol):
    """Runs between a slave's hello and its first task (master/slaves/acceptance.py)."""

    async def admit(self, link: "SlaveLink", force: bool = False) -> dict[str, Any]: ...


class SlaveLink:
    def __init__(self, name: str, transport: Transport, slots: int, hooks: LinkHooks,
                 files: FileSource, *, tags: list[str] | None = None,
                 max_output_bytes: int = 16 << 30,
                 acceptance: Admission | None = None) -> None:
        self.name = name
        self.acceptance = acceptance
        self.max_output_bytes = max_output_bytes
        self.transport = transport
        self.slots = slots
        self.tags = tags or []
        self.hooks = hooks
        self.files = files
        self.state = "offline"
        self.info: dict[str, Any] = {}
        self.own_applications: frozenset[str] | None = None  # from its hello
        self.channel: Channel | None = None
        self.running: dict[int, asyncio.Task[None]] = {}
        self.cached: set[str] = set()
        self._waiters: dict[Any, asyncio.Future[dict[str, Any]]] = {}
        self._ids = itertools.count(1)
        self._generation = 0
        self._connected = asyncio.Event()
        self._stopping = False
        self._upload_lock = asyncio.Lock()
        self._progress_window = (0.0, 0)
        # Power saving (master/slaves/waker.py): while `hold` is asleep or down the link
        # does not try to connect; waking clears it and retries every WAKING_RETRY s.
        self.hold: str | None = None
        # afarmctl slave drain: no new task; online and busy are shown as draining, and
        # the power manager may suspend it once its tasks ended.
        self.drained = False
        self._may_connect = asyncio.Event()
        self._may_connect.set()
        self._poke = asyncio.Event()
        self._woken = False
        self._closing: threading.Thread | None = None
        self.pool: VersionSource | None = None
        self.installed: set[str] = set()  # "NAME/VERSION" the slave has unpacked
        self.quarantined: dict[str, str] = {}  # "NAME/VERSION" -> why it failed its test
        self.arch = "amd64"
        self._install_locks: dict[str, asyncio.Lock] = {}
        self.app_bytes = 0  # bytes of pool archives sent to this slave
        # Told whenever `installed` or `quarantined` changes (the farm stores them).
        self.on_versions: Callable[[SlaveLink], None] | None = None

    @property
    def applications(self) -> frozenset[str] | None:
        """What the slave may run: its own applications, and every application the pool
        has versions of (installed on demand); None until its hello."""
        own = self.own_applications
        if own is None or self.pool is None:
            return own
        return own | self.pool.packages()

    @property
    def free_slots(self) -> int:
        return self.slots - len(self.running) if self.state in ("online", "busy") else 0

    # -- connection -----------------------------------------------------------------------
    async def keep_connected(self) -> None:
        """Connect, and reconnect with backoff whenever the slave goes away."""
        delay = 1.0
        while not self._stopping:
            await self._may_connect.wait()
            closing, self._closing = self._closing, None
            if closing is not None:  # the connection of its last sleep is closed first
                await asyncio.to_thread(closing.join)
            try:
                await self.connect()
                delay = 1.0
                await self._disconnected()
            except (AuthFailure, ProtocolError) as exc:
                await self._drop_channel()
                self._set_state("refused", str(exc))
                delay = 60.0  # a bad key or another afarm version does not fix itself soon
            except (TimeoutError, TransportError, OSError, SlaveGone) as exc:
                await self._drop_channel()
                self._set_state("unreachable", str(exc) or type(exc).__name__)
            if self._stopping:
                break
            self._poke.clear()
            try:
                await asyncio.wait_for(self._poke.wait(), WAKING_RETRY
                                       if self.state == "waking" else delay)
            except TimeoutError:
                pass
            delay = min(delay * 2, 30.0)

    async def _drop_channel(self) -> None:
        """Forget a half-opened channel (say, no hello came back) and close it."""
        self._generation += 1
        channel, self.channel = self.channel, None
        if channel is not None:
            await asyncio.to_thread(channel.close)

    async def connect(self) -> None:
        if self.state == "offline":
            # Only the first attempt is news; retries of an unreachable slave would fill
            # the event log with connecting/unreachable pairs.
            self._set_state("connecting")
        channel = await asyncio.to_thread(self.transport.open_channel)
        self.channel = channel
        self._generation += 1
        self._connected.clear()
        loop = asyncio.get_running_loop()
        gen = self._generation
        threading.Thread(target=self._reader, args=(channel, loop, gen), daemon=True,
                         name=f"reader-{self.name}").start()
        reply = await asyncio.wait_for(
            self.request({"op": "hello", "protocol": PROTOCOL_VERSION}), timeout=30)
        if reply.get("op") == "refused":
            raise ProtocolError(f"{self.name} refused the hello: {reply.get('reason')}")
        hello = Hello.from_wire(reply)
        self.info = {k: v for k, v in reply.items() if k not in ("op", "id")}
        self.own_applications = frozenset(hello.applications)
        self.installed = set(hello.installed)
        self.arch = hello.arch or "amd64"
        self.cached.clear()
        # Installed pool versions count for locality as cached inputs do (placement.py).
        self.cached |= {f"app:{key}" for key in self.installed}
        self._versions_changed()
        if self.acceptance is None:
            self._set_state("online")
        else:
            # testing, then online or quarantined; free_slots is 0 until it is online.
            # A machine back from sleep is tested again (a resume can break a driver).
            woken, self._woken = self._woken, False
            await self.acceptance.admit(self, force=woken)
        self.hooks.slave_ready(self.name)

    def _reader(self, channel: Channel, loop: asyncio.AbstractEventLoop, gen: int) -> None:
        while True:
            try:
                msg = channel.recv()
            except (TransportError, OSError) as exc:
                log.warning("%s: channel broke: %s", self.name, exc)
                msg = None
            try:
                loop.call_soon_threadsafe(self._on_message, gen, msg)
            except RuntimeError:  # the loop is closed: the master is shutting down
                return
            if msg is None:
                return

    def _on_message(self, gen: int, msg: dict[str, Any] | None) -> None:
        if gen != self._generation:
            return  # a message from a channel we already gave up on
        if msg is None:
            self._connected.set()
            for fut in self._waiters.values():
                if not fut.done():
                    fut.set_exception(SlaveGone(f"lost the connection to {self.name}"))
            self._waiters.clear()
            return
        op = msg.get("op")
        if op == "progress":
            self._on_progress(msg)
            return
        if op == "refused" and msg.get("id") is None:
            log.warning("%s refused a request: %s", self.name, str(msg.get("reason"))[:500])
            return
        key: Any = ("done", msg.get("task"), msg.get("attempt")) if op == "done" \
            else msg.get("id")
        waiter = self._waiters.pop(key, None)
        if waiter is not None and not waiter.done():
            waiter.set_result(msg)

    def _on_progress(self, msg: dict[str, Any]) -> None:
        start, n = self._progress_window
        now = time.monotonic()
        if now - start >= 1.0:
            start, n = now, 0
        self._progress_window = (start, n + 1)
        if n >= PROGRESS_PER_SECOND:
            return
        try:
            self.hooks.progress(self.name, Progress.from_wire(msg))
        except ProtocolError:
            pass

    async def _disconnected(self) -> None:
        await self._connected.wait()
        channel, self.channel = self.channel, None
        if channel is not None:
            await asyncio.to_thread(channel.close)
        if not self._stopping:
            self._set_state("unreachable", "connection lost")

    def _send(self, msg: dict[str, Any]) -> None:
        if self.channel is None:
            raise SlaveGone(f"{self.name} is not connected")
        self.channel.send(msg)

    async def request(self, msg: dict[str, Any]) -> dict[str, Any]:
        rid = next(self._ids)
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._waiters[rid] = fut
        self._send({**msg, "id": rid})
        return await fut

    def set_state(self, state: str, error: str | None = None) -> None:
        self._set_state(state, error)

    def accepted(self, error: str | None = "") -> None:
        """Passed acceptance: online (busy when its slots are full); "" clears last_error."""
        state = "busy" if len(self.running) >= self.slots else "online"
        self.state = ""  # always recorded, with the acceptance in the info
        self._set_state(state, error)

    def sleep(self, state: str, reason: str) -> None:
        """The machine sleeps (or is down): forget the channel, stop reconnecting."""
        self.hold = state
        self._may_connect.clear()
        self._set_state(state, reason)
        channel, self.channel = self.channel, None
        self._generation += 1
        self._connected.set()
        for fut in self._waiters.values():  # a request in flight gets no answer now
            if not fut.done():
                fut.set_exception(SlaveGone(f"{self.name} is {state}"))
        self._waiters.clear()
        # The whole connection goes, as it does when the machine really sleeps: waking
        # must find SSH answering again, not an old session that outlived the listener.
        self._closing = threading.Thread(target=self._close_all, args=(channel,),
                                         daemon=True, name=f"sleep-{self.name}")
        self._closing.start()

    def _close_all(self, channel: Channel | None) -> None:
        try:
            if channel is not None:
                channel.close()
            self.transport.close()
        except Exception as exc:  # closing a dead connection may fail; it is gone anyway
            log.debug("%s: closing the connection to a sleeping slave: %s", self.name, exc)

    def wake(self) -> None:
        """A magic packet went out: reconnect now and every WAKING_RETRY s until SSH
        answers (acceptance then tests it); the power manager times it out."""
        self.hold = None
        self._woken = True
        self._set_state("waking")
        self._may_connect.set()
        self._poke.set()

    async def suspend_machine(self) -> str:
        """Ask the slave to suspend (afarm-slave-shell suspend); "" when it agreed."""
        try:
            r = await asyncio.to_thread(self.transport.run, ["suspend"], None, 30.0)
        except (TransportError, OSError) as exc:
            return str(exc) or type(exc).__name__
        return "" if r.ok else (r.stderr.strip() or f"suspend exited {r.exit_code}")

    def drain(self, on: bool) -> None:
        """Take no new tasks (on) or take them again; running tasks go on either way."""
        self.drained = on
        if on and self.state in ("online", "busy"):
            self._set_state("draining")
        elif not on and self.state == "draining" and self.channel is not None:
            self._set_state("busy" if len(self.running) >= self.slots else "online")

    def _set_state(self, state: str, error: str | None = None) -> None:
        if self.drained and state in ("online", "busy"):
            state = "draining"  # connected, but taking no work
        if self.hold and state in ("unreachable", "connecting"):
            return  # asleep or down: a failed connection is no news
        if self.state == "waking" and state in ("unreachable", "connecting"):
            return  # still waking: the power manager decides when it is down
        if state != self.state or error:
            if error:
                log.info("%s: %s (%s)", self.name, state, error)
            self.state = state
            self.hooks.slave_state(self.name, state, error, self.info or None)

    async def stop(self) -> None:
        self._stopping = True
        for t in list(self.running.values()):
            t.cancel()
        channel, self.channel = self.channel, None
        self._connected.set()
        if channel is not None:
            await asyncio.to_thread(channel.close)
        await asyncio.to_thread(self.transport.close)

    # -- tasks ----------------------------------------------------------------------------
    def cancel(self, task_id: int, attempt: int) -> None:
        try:
            self._send({"op": "cancel", "task": task_id, "attempt": attempt})
        except (SlaveGone, TransportError):
            pass

    def mark_busy(self, task_id: int, job: asyncio.Task[None]) -> None:
        self.running[task_id] = job
        if self.state == "online" and len(self.running) >= self.slots:
            self._set_state("busy")

    def mark_free(self, task_id: int) -> None:
        self.running.pop(task_id, None)
        if self.state == "busy":
            self._set_state("online")

    async def run(self, task: Task, attempt: int, job: Job, timeout: int,
                  partial: Callable[[str], Path]) -> Outcome:
        """Run one attempt on the slave; never raises for what the slave or task did."""
        try:
            reply = await self._run_remote(task, attempt, job, timeout)
            if reply.error:
                return Outcome("failed", reply.error, reply)
            got = await self.fetch_outputs(task, reply, partial)
            return Outcome("done", reply=reply, got=got)
        except (SlaveGone, HostUnreachable, ConnectionError) as exc:
            return Outcome("gone", f"{self.name} went away: {exc}")
        except (AfarmError, OSError) as exc:
            # The slave answered but could not do it (disk full, a bad output, a refused
            # transfer): count it against this slave so the task moves on to another.
            return Outcome("failed", str(exc))

    async def _run_remote(self, task: Task, attempt: int, job: Job,
                          timeout: int) -> TaskReply:
        version = job.app_version if task.application == job.application else ""
        if version:
            await self.ensure_version(task.application, version)
        await self._ensure_inputs([(f.sha256, f.size) for f in job.files])
        key = ("done", task.id, attempt)
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._waiters[key] = fut
        req = RunRequest(job=task.job_id, task=task.id, attempt=attempt,
                         app=task.application, kind=task.kind, params=task.params,
                         inputs=[InputRef(f.name, f.sha256) for f in job.files],
                         outputs=[Path(o).name for o in task.outputs], timeout=timeout,
                         version=version)
        self._send(req.to_wire())
        try:
            return TaskReply.from_wire(await asyncio.wait_for(fut, timeout=timeout + GRACE))
        except TimeoutError:
            self.cancel(task.id, attempt)
            self._waiters.pop(key, None)
            return TaskReply(task.id, attempt, timed_out=True,
                             error=f"no answer from {self.name} within {timeout + GRACE:.0f} s")

    async def ensure_version(self, package: str, version: str) -> bool:
        """Make sure the slave has a pool version unpacked: send its archive into the
        slave's cache (once), then have the slave check, unpack and test it; one install
        of a version at a time. True if it was installed now."""
        key = f"{package}/{version}"
        if key in self.quarantined:
            raise VersionRefused(f"{self.name} is quarantined for {package} {version}:"
                                 f" {self.quarantined[key]}")
        if key in self.installed:
            return False
        if self.pool is None:
            raise VersionRefused(f"this master has no pool for {package} {version}")
        lock = self._install_locks.setdefault(key, asyncio.Lock())
        async with lock:
            if key in self.installed:
                return False
            entry = self.pool.entry(package, version, self.arch)
            if entry is None:
                raise VersionRefused(f"the pool has no {package} {version} for {self.name}'s"
                                     f" architecture {self.arch}")
            sent = await self._send_archive(entry.sha256, self.pool.path(entry))
            reply = await asyncio.wait_for(self.request({
                "op": "install-app", "package": package, "version": version,
                "sha256": entry.sha256, "definition": entry.definition}),
                timeout=INSTALL_TIMEOUT)
            if reply.get("op") == "refused":
                raise AfarmError(f"{self.name} refused to install {package} {version}:"
                                 f" {reply.get('reason')}")
            error = reply.get("error")
            if error:
                self.cached.discard(entry.sha256)
                if reply.get("quarantine"):
                    self.quarantined[key] = str(error)[:500]
                    self._versions_changed()
                    self.hooks.slave_state(self.name, self.state,
                                           f"quarantined for {package} {version}: {error}",
                                           None)
                raise VersionRefused(str(error)[:1000])
            log.info("%s: installed %s %s (%d bytes sent)", self.name, package, version, sent)
            self.installed.add(key)
            self.cached.add(f"app:{key}")
            self._versions_changed()
            return True

    def _versions_changed(self) -> None:
        if self.on_versions is not None:
            self.on_versions(self)

    def forget_version(self, key: str) -> None:
        """NAME/VERSION was removed from the pool or added again: its install here is
        checked again by the slave before the next task, its quarantine is over."""
        self.installed.discard(key)
        self.cached.discard(f"app:{key}")
        self.quarantined.pop(key, None)

    async def _send_archive(self, sha: str, src: Path) -> int:
        async with self._upload_lock:
            if sha in self.cached:
                return 0
            reply = await self.request({"op": "has", "sha256": [sha]})
            sent = 0
            if sha not in set(reply.get("present", [])):
                sent = await asyncio.to_thread(self.transport.put, src, f"cache/{sha}")
                self.hooks.count_bytes(self.name, sent)
                self.app_bytes += sent
            self.cached.add(sha)
            return sent

    async def _ensure_inputs(self, files: list[tuple[str, int]]) -> None:
        """Send each input file once per slave; the slave's cache keeps it for later jobs."""
        async with self._upload_lock:
            missing = [sha for sha, _ in files if sha not in self.cached]
            if not missing:
                return
            reply = await self.request({"op": "has", "sha256": missing})
            present = set(reply.get("present", []))
            self.cached |= present
            for sha in missing:
                if sha in present:
                    continue
                src = self.files.path(sha)
                started = time.monotonic()
                sent = await asyncio.to_thread(self.transport.put, src, f"cache/{sha}")
                self.hooks.count_bytes(self.name, sent)
                log.info("%s: sent %s (%d bytes) in %.2f s", self.name, sha[:12], sent,
                         time.monotonic() - started)
                self.cached.add(sha)

    async def fetch_outputs(self, task: Task, reply: TaskReply,
                            partial: Callable[[str], Path]) -> dict[str, Path]:
        """Bring the task's outputs into `.partial/`, verified; returns rel path -> partial."""
        got: dict[str, Path] = {}
        for name in reply.outputs:
            if Path(name).name != name or name in ("", ".", ".."):
                raise AfarmError(f"{self.name} reported an output path {name!r}; refused")
            rel = output_rel(task, name)
            if rel is None:
                continue
            dst = partial(rel)
            await asyncio.to_thread(self.transport.get, f"{reply.out_dir}/{name}", dst,
                                    self.max_output_bytes)
            verify_output(dst)
            got[rel] = dst
        return got

    async def collect_garbage(self, keep_jobs: list[int],
                              app_keep_days: float = 0) -> dict[str, Any]:
        reply = await asyncio.wait_for(self.request({"op": "gc", "keep_jobs": keep_jobs,
                                                     "app_keep_days": app_keep_days}),
                                       timeout=60)
        removed = reply.get("apps_removed") or []
        for key in removed:
            self.installed.discard(str(key))
            self.cached.discard(f"app:{key}")
        if removed:
            self._versions_changed()
        return reply
