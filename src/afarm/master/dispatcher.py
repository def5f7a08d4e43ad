# SPDX-License-Identifier: MIT
"""One dispatcher per slave: holds its channel, sends it tasks, brings results home."""

import asyncio
import itertools
import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from afarm.errors import AfarmError
from afarm.images import verify_output
from afarm.model.job import Task
from afarm.transport.base import (
    AuthFailure,
    Channel,
    HostUnreachable,
    Transport,
    TransportError,
)

if TYPE_CHECKING:
    from afarm.master.farm import Farm

log = logging.getLogger(__name__)
GRACE = 30.0  # seconds past a task's timeout before the master gives up on the agent


class SlaveGone(Exception):
    """The channel closed while we waited: the slave (or the path to it) is gone."""


class Dispatcher:
    def __init__(self, farm: "Farm", name: str, transport: Transport, slots: int,
                 tags: list[str] | None = None) -> None:
        self.farm = farm
        self.name = name
        self.transport = transport
        self.slots = slots
        self.tags = tags or []
        self.state = "offline"
        self.info: dict[str, Any] = {}
        self.channel: Channel | None = None
        self.running: dict[int, asyncio.Task[None]] = {}
        self.cached: set[str] = set()
        self._waiters: dict[Any, asyncio.Future[dict[str, Any]]] = {}
        self._ids = itertools.count(1)
        self._generation = 0
        self._connected = asyncio.Event()
        self._stopping = False
        self._upload_lock = asyncio.Lock()

    @property
    def free_slots(self) -> int:
        return self.slots - len(self.running) if self.state in ("online", "busy") else 0

    # -- connection -----------------------------------------------------------------------
    async def keep_connected(self) -> None:
        """Connect, and reconnect with backoff whenever the slave goes away."""
        delay = 1.0
        while not self._stopping:
            try:
                await self.connect()
                delay = 1.0
                await self._disconnected()
            except AuthFailure as exc:
                await self._drop_channel()
                self._set_state("refused", str(exc))
                delay = 60.0  # a bad key or host key does not fix itself quickly
            except (TimeoutError, TransportError, OSError, SlaveGone) as exc:
                await self._drop_channel()
                self._set_state("unreachable", str(exc) or type(exc).__name__)
            if self._stopping:
                break
            await asyncio.sleep(delay)
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
        hello = await asyncio.wait_for(self.request({"op": "hello"}), timeout=30)
        self.info = {k: v for k, v in hello.items() if k not in ("op", "id")}
        self.cached.clear()
        self._set_state("online")
        self.farm.wake()

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
            self.farm.on_progress(self.name, msg)
            return
        key: Any = ("done", msg.get("task"), msg.get("attempt")) if op == "done" \
            else msg.get("id")
        waiter = self._waiters.get(key)
        if waiter is not None:
            del self._waiters[key]
        if waiter is not None and not waiter.done():
            waiter.set_result(msg)
        elif op == "refused":
            log.warning("%s refused a request: %s", self.name, msg.get("reason"))

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

    def _set_state(self, state: str, error: str | None = None) -> None:
        if state != self.state or error:
            if error:
                log.info("%s: %s (%s)", self.name, state, error)
            self.state = state
            self.farm.store.set_slave(self.name, state, error, self.info or None)

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
    def launch(self, task: Task, attempt: int) -> None:
        if self.state == "online" and len(self.running) + 1 >= self.slots:
            self._set_state("busy")
        self.running[task.id] = asyncio.create_task(self.execute(task, attempt))

    def cancel(self, task_id: int, attempt: int) -> None:
        try:
            self._send({"op": "cancel", "task": task_id, "attempt": attempt})
        except (SlaveGone, TransportError):
            pass

    async def execute(self, task: Task, attempt: int) -> None:
        store = self.farm.store
        try:
            reply = await self._run_remote(task, attempt)
            await self.farm.finish_remote(self, task, attempt, reply)
        except (SlaveGone, HostUnreachable, ConnectionError) as exc:
            # The slave or the path to it vanished: redo the task elsewhere, blame no one.
            store.requeue_task(task, attempt, f"{self.name} went away: {exc}")
        except asyncio.CancelledError:
            store.requeue_task(task, attempt, "master is stopping")
            raise
        except (AfarmError, OSError) as exc:
            # The slave answered but could not do it (disk full, a bad output, a refused
            # transfer): count it against this slave so the task moves on to another.
            self.farm.fail(task, attempt, self.name, str(exc))
        finally:
            self.farm.discard_partials(task, attempt)
            self.running.pop(task.id, None)
            if self.state == "busy":
                self._set_state("online")
            self.farm.wake()

    async def _run_remote(self, task: Task, attempt: int) -> dict[str, Any]:
        job = self.farm.store.job(task.job_id)
        assert job is not None
        await self._ensure_inputs([(f.sha256, f.size) for f in job.files])
        timeout = job.timeout or self.farm.app_timeout(task.application)
        key = ("done", task.id, attempt)
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._waiters[key] = fut
        self._send({
            "op": "run", "job": task.job_id, "task": task.id, "attempt": attempt,
            "app": task.application, "kind": task.kind, "params": task.params,
            "inputs": [{"name": f.name, "sha256": f.sha256} for f in job.files],
            "outputs": [Path(o).name for o in task.outputs], "timeout": timeout,
        })
        try:
            return await asyncio.wait_for(fut, timeout=timeout + GRACE)
        except TimeoutError:
            self.cancel(task.id, attempt)
            if key in self._waiters:
                del self._waiters[key]
            return {"error": f"no answer from {self.name} within {timeout + GRACE:.0f} s",
                    "timed_out": True, "log": [], "errors": []}

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
                src = self.farm.files.path(sha)
                started = time.monotonic()
                sent = await asyncio.to_thread(self.transport.put, src, f"cache/{sha}")
                self.farm.count_bytes(self.name, sent)
                log.info("%s: sent %s (%d bytes) in %.2f s", self.name, sha[:12], sent,
                         time.monotonic() - started)
                self.cached.add(sha)

    async def fetch_outputs(self, task: Task, attempt: int, reply: dict[str, Any],
                            partial: Callable[[str], Path]) -> dict[str, Path]:
        """Bring the task's outputs into `.partial/`, verified; returns rel path -> partial."""
        out_dir = str(reply.get("out_dir", ""))
        produced = [str(n) for n in reply.get("outputs", [])]
        wanted = {Path(o).name: o for o in task.outputs}
        extra = task.params.get("collect_extra")
        got: dict[str, Path] = {}
        for name in produced:
            if Path(name).name != name:
                raise AfarmError(f"{self.name} reported an output path {name!r}; refused")
            rel = wanted.get(name) or (f"{extra}/{name}" if extra else None)
            if rel is None:
                continue
            dst = partial(rel)
            await asyncio.to_thread(self.transport.get, f"{out_dir}/{name}", dst)
            verify_output(dst)
            got[rel] = dst
        return got
