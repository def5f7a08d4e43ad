# SPDX-License-Identifier: MIT
"""A slave link while its machine sleeps: no reconnect storm, the whole connection closed,
a wake reconnects at once and tests the slave again, failed attempts stay `waking`."""

import asyncio
from typing import Any

from afarm.master.slaves.link import SlaveLink
from afarm.protocol.messages import PROTOCOL_VERSION
from afarm.transport.base import HostUnreachable


class Hooks:
    def __init__(self) -> None:
        self.states: list[str] = []

    def slave_state(self, name: str, state: str, error: str | None,
                    info: dict[str, Any] | None) -> None:
        self.states.append(state)

    def slave_ready(self, name: str) -> None:
        pass

    def progress(self, name: str, msg: Any) -> None:
        pass

    def count_bytes(self, name: str, n: int) -> None:
        pass


class Channel:
    def __init__(self) -> None:
        self.inbox: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()
        self.loop = asyncio.get_running_loop()
        self.closed = False
        self.pending: list[dict[str, Any] | None] = []

    def send(self, message: dict[str, Any]) -> None:
        if message.get("op") == "hello":
            reply = {"op": "hello", "id": message["id"], "name": "s", "version": "x",
                     "protocol": PROTOCOL_VERSION, "applications": [], "cpus": 1,
                     "memory": 1, "disk_free": 1, "pid": 1}
            self.loop.call_soon_threadsafe(self.inbox.put_nowait, reply)

    def recv(self) -> dict[str, Any] | None:
        return asyncio.run_coroutine_threadsafe(self.inbox.get(), self.loop).result()

    def close(self) -> None:
        self.closed = True
        self.loop.call_soon_threadsafe(self.inbox.put_nowait, None)


class Transport:
    name = "s"

    def __init__(self) -> None:
        self.up = True
        self.opened = 0
        self.closed = 0
        self.channels: list[Channel] = []
        self.loop: asyncio.AbstractEventLoop | None = None

    def open_channel(self) -> Channel:
        self.opened += 1
        if not self.up:
            raise HostUnreachable("connection refused")
        assert self.loop is not None
        ch = asyncio.run_coroutine_threadsafe(self._make(), self.loop).result()
        self.channels.append(ch)
        return ch

    async def _make(self) -> Channel:
        return Channel()

    def close(self) -> None:
        self.closed += 1


class Admission:
    def __init__(self) -> None:
        self.forced: list[bool] = []

    async def admit(self, link: SlaveLink, force: bool = False) -> dict[str, Any]:
        self.forced.append(force)
        link.set_state("testing")
        link.accepted()
        return {}


async def settle(cond: Any, timeout: float = 5) -> None:
    for _ in range(int(timeout / 0.01)):
        if cond():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("timed out")


def test_asleep_it_does_not_reconnect_and_woken_it_reconnects_and_is_tested_again() -> None:
    async def body() -> None:
        t, hooks, adm = Transport(), Hooks(), Admission()
        t.loop = asyncio.get_running_loop()
        link = SlaveLink("s", t, 1, hooks, None, acceptance=adm)  # type: ignore[arg-type]
        runner = asyncio.create_task(link.keep_connected())
        await settle(lambda: link.state == "online")
        link.sleep("asleep", "suspended")
        await settle(lambda: t.closed == 1)  # the whole SSH connection went
        assert t.channels[0].closed
        t.up = False
        opened = t.opened
        await asyncio.sleep(1.5)  # longer than the first backoff
        assert t.opened == opened and link.state == "asleep"
        link.wake()
        await settle(lambda: t.opened > opened)  # at once, not after a backoff
        await asyncio.sleep(2.5)  # a refused attempt or two: still waking, not unreachable
        assert link.state == "waking" and t.opened >= opened + 2
        t.up = True
        await settle(lambda: link.state == "online", 5)
        assert adm.forced == [False, True]  # back from sleep: tested again
        assert "unreachable" not in hooks.states
        await link.stop()
        runner.cancel()
        await asyncio.gather(runner, return_exceptions=True)

    asyncio.run(body())


def test_down_holds_like_asleep_until_woken() -> None:
    async def body() -> None:
        t, hooks = Transport(), Hooks()
        t.loop = asyncio.get_running_loop()
        link = SlaveLink("s", t, 1, hooks, None)  # type: ignore[arg-type]
        link.sleep("down", "no SSH within 60 s")
        runner = asyncio.create_task(link.keep_connected())
        await asyncio.sleep(0.3)
        assert t.opened == 0 and link.state == "down"
        link.wake()
        await settle(lambda: link.state == "online")
        await link.stop()
        runner.cancel()
        await asyncio.gather(runner, return_exceptions=True)

    asyncio.run(body())




def test_a_drained_slave_is_draining_while_connected_and_undrained_takes_work_again(
        ) -> None:
    async def body() -> None:
        t, hooks, adm = Transport(), Hooks(), Admission()
        t.loop = asyncio.get_running_loop()
        link = SlaveLink("s", t, 2, hooks, None, acceptance=adm)  # type: ignore[arg-type]
        runner = asyncio.create_task(link.keep_connected())
        await settle(lambda: link.state == "online")
        link.running[1] = None  # type: ignore[assignment]
        link.drain(True)
        assert link.state == "draining" and link.free_slots == 0
        link.mark_free(1)  # its running task ended: still draining, no slot
        assert link.state == "draining" and link.free_slots == 0
        link.accepted()  # a test passing again does not end the drain
        assert link.state == "draining"
        link.drain(False)
        assert link.state == "online" and link.free_slots == 2
        link.sleep("asleep", "suspended")
        link.drain(True)
        link.drain(False)
        assert link.state == "asleep"  # asleep stays asleep; the power manager wakes it
        await link.stop()
        runner.cancel()
        await asyncio.gather(runner, return_exceptions=True)

    asyncio.run(body())
