# SPDX-License-Identifier: MIT
"""The event stream drops a client that stops reading instead of queueing for it forever."""

import asyncio
import gc
import socket
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from aiohttp import web

from afarm.master import results_api


class NoHistory:
    def events(self, **kw: Any) -> list[dict[str, Any]]:
        return []


async def _stalled_client_run(tmp_path: Path) -> tuple[list[Any], bool, int]:
    farm = SimpleNamespace(store=NoHistory(), listeners=[], dispatchers={},
                           jobs_root=tmp_path, bytes_sent={})
    app = web.Application()
    app.add_routes(results_api.routes(farm))  # type: ignore[arg-type]
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    client = socket.socket()
    client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    client.connect(("127.0.0.1", port))
    client.sendall(b"GET /api/v1/events HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    for _ in range(100):
        if farm.listeners:
            break
        await asyncio.sleep(0.01)
    subscribed = len(farm.listeners)
    # 200,000 progress events, as a busy farm sends them, to a client that reads nothing.
    for n in range(200):
        for listener in list(farm.listeners):
            for i in range(1000):
                listener({"kind": "task-progress", "job": 1, "task": n, "id": None,
                          "message": f"frame {i} of 1000 saved"})
        await asyncio.sleep(0)
    await asyncio.sleep(0.2)
    client.setblocking(False)
    closed = False
    try:
        while client.recv(1 << 20):
            pass
        closed = True
    except ConnectionResetError:
        closed = True
    except BlockingIOError:
        closed = False
    client.close()
    left = list(farm.listeners)
    await runner.cleanup()
    return left, closed, subscribed


def test_a_stalled_event_client_is_dropped_and_its_queue_freed(tmp_path: Path) -> None:
    left, closed, subscribed = asyncio.run(_stalled_client_run(tmp_path))
    assert subscribed == 1
    assert left == []  # no listener (and so no queue) is kept for it
    assert closed, "the server should have cut the stalled connection"
    gc.collect()
    queues = [o for o in gc.get_objects() if isinstance(o, asyncio.Queue)]
    assert all(q.qsize() == 0 for q in queues)
