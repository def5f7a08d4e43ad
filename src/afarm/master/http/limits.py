# SPDX-License-Identifier: MIT
"""Connection limits aiohttp 3.8 lacks: a header deadline and caps per client and in all.

aiohttp 3.8 (Debian 12) closes a kept-alive connection idle past ``keepalive_timeout``,
which also ends a *second* request sent slowly, but it waits forever for the headers of a
connection's first request, and it accepts connections until the process runs out of
file descriptors; then neither port accepts anything (slowloris). :class:`Limits` wraps
each connection's protocol: a connection over the per-client or the global cap is closed
at once with a 503, and one whose first request's headers are not complete within
``header_timeout`` seconds is closed. The global cap stays below the file-descriptor limit,
so the master keeps descriptors for its store, its slaves and its follow-ups. When the cap
is reached, a new connection takes the place of the oldest one that has not yet sent
complete headers: a legitimate client sends its headers at once, so a flood of half-open
connections cannot lock it out even while the attack goes on.
"""

import asyncio
import json
import logging
import resource
from dataclasses import dataclass, field
from typing import Any, Protocol

from aiohttp import web

from afarm.errors import UsageError

log = logging.getLogger("afarm.master.http")
# Descriptors kept back for everything that is not a client connection: the store, logs,
# slave channels and pipes, rsync and ffmpeg children.
FD_RESERVE = 256
_BUSY_BODY = b'{"error": "too many connections; try again later", "kind": "busy"}\n'
BUSY = (b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
        b"Connection: close\r\nContent-Length: %d\r\n\r\n%s" % (len(_BUSY_BODY), _BUSY_BODY))


def raise_fd_limit() -> int:
    """Lift the soft descriptor limit to the hard one (the unit's LimitNOFILE=); returns it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard > soft:
        target = hard if hard != resource.RLIM_INFINITY else max(soft, 65536)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass
    return soft


class Evictable(Protocol):
    def evict(self) -> None: ...


@dataclass
class Limits:
    max_connections: int = 4096
    per_client: int = 64
    header_timeout: float = 10.0
    open: dict[str, int] = field(default_factory=dict)
    total: int = 0
    # Connections still waiting for their first request's headers, oldest first.
    pending: dict[Evictable, None] = field(default_factory=dict)

    def fit_fd_limit(self, fd_limit: int) -> None:
        cap = max(16, fd_limit - FD_RESERVE)
        if self.max_connections > cap:
            log.info("serving at most %d connections (file descriptor limit %d)", cap,
                     fd_limit)
            self.max_connections = cap

    def admit(self, peer: str, conn: Evictable | None = None) -> str | None:
        """Count a new connection from ``peer`` (``conn``: waiting for its headers until
        :meth:`started`), or say why it is refused."""
        have = self.open.get(peer, 0)
        if have >= self.per_client:
            return f"{have} connections are open from it (limit {self.per_client})"
        if self.total >= self.max_connections:
            if not self.pending:
                return f"{self.total} connections are open (limit {self.max_connections})"
            next(iter(self.pending)).evict()  # releases its place
        self.open[peer] = have + 1
        self.total += 1
        if conn is not None:
            self.pending[conn] = None
        return None

    def started(self, conn: Evictable) -> None:
        """``conn`` sent complete headers: it is no longer a candidate for eviction."""
        self.pending.pop(conn, None)

    def release(self, peer: str, conn: Evictable | None = None) -> None:
        if conn is not None:
            self.pending.pop(conn, None)
        self.total -= 1
        left = self.open.get(peer, 1) - 1
        if left > 0:
            self.open[peer] = left
        else:
            self.open.pop(peer, None)

    def protocol(self, inner: asyncio.Protocol) -> asyncio.Protocol:
        return _Limited(self, inner)


class _Limited(asyncio.Protocol):
    """aiohttp's request handler, behind the caps and the header deadline."""

    def __init__(self, limits: Limits, inner: Any) -> None:
        self.limits, self.inner = limits, inner
        self.peer: str | None = None
        self.transport: asyncio.Transport | None = None
        self.deadline: asyncio.TimerHandle | None = None
        self.tail = b""
        self.served = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        peername = transport.get_extra_info("peername")
        peer = str(peername[0]) if peername else "?"
        why = self.limits.admit(peer, self)
        if why is not None:
            log.warning("connection from %s refused: %s", peer, why)
            transport.write(BUSY)
            transport.close()
            return
        self.peer = peer
        self.deadline = asyncio.get_running_loop().call_later(
            self.limits.header_timeout, self._too_slow)
        self.served = True
        self.inner.connection_made(transport)

    def _too_slow(self) -> None:
        self.deadline = None
        log.warning("connection from %s closed: no complete request headers within %g s",
                    self.peer, self.limits.header_timeout)
        if self.transport is not None:
            self.transport.abort()

    def evict(self) -> None:
        """Make room for a new connection: this one is full and has sent no request yet."""
        log.warning("connection from %s closed to make room: %d connections are open and it"
                    " sent no complete request", self.peer, self.limits.total)
        if self.deadline is not None:
            self.deadline.cancel()
            self.deadline = None
        self._release()
        if self.transport is not None:
            self.transport.abort()

    def _release(self) -> None:
        if self.peer is not None:
            self.limits.release(self.peer, self)
            self.peer = None

    def data_received(self, data: bytes) -> None:
        if self.peer is None:
            return
        if self.deadline is not None:
            # Until the first request's headers end, look for their blank line; later
            # requests are aiohttp's own keep-alive timeout's business.
            seen = self.tail + data
            if b"\r\n\r\n" in seen or b"\n\n" in seen:
                self.deadline.cancel()
                self.deadline = None
                self.limits.started(self)
            else:
                self.tail = seen[-3:]
        self.inner.data_received(data)

    def eof_received(self) -> bool | None:
        if not self.served:
            return None
        result: bool | None = self.inner.eof_received()
        return result

    def connection_lost(self, exc: Exception | None) -> None:
        if self.deadline is not None:
            self.deadline.cancel()
            self.deadline = None
        self.transport = None
        self._release()
        if self.served:  # not for a connection refused at once: aiohttp never saw it
            self.served = False
            self.inner.connection_lost(exc)

    def pause_writing(self) -> None:
        if self.served:
            self.inner.pause_writing()

    def resume_writing(self) -> None:
        if self.served:
            self.inner.resume_writing()


class LimitedSite(web.TCPSite):
    """``web.TCPSite`` whose connections go through :class:`Limits` (aiohttp 3.8's
    TCPSite.start, with the protocol factory wrapped)."""

    def __init__(self, runner: web.BaseRunner, host: str, port: int, limits: Limits,
                 **kwargs: Any) -> None:
        super().__init__(runner, host, port, **kwargs)
        self._limits = limits

    async def start(self) -> None:
        await web.BaseSite.start(self)
        server = self._runner.server
        assert server is not None
        self._server = await asyncio.get_running_loop().create_server(
            lambda: self._limits.protocol(server()), self._host, self._port,
            backlog=self._backlog, reuse_address=self._reuse_address,
            reuse_port=self._reuse_port)


BODY_LIMITS = "afarm.body_limits"  # app key: (largest JSON body in bytes, seconds to send it)


async def json_body(request: web.Request) -> Any:
    """The request's JSON body, within the app's size and time limits."""
    limit, timeout = request.config_dict[BODY_LIMITS]
    raw = await read_body(request, limit, timeout)
    try:
        return json.loads(raw) if raw else {}
    except (ValueError, RecursionError):
        raise UsageError("the request body is not JSON") from None


async def read_body(request: web.Request, limit: int, timeout: float) -> bytes:
    """The whole body, refused with 413 past ``limit`` bytes and 408 past ``timeout`` s."""
    if request.content_length is not None and request.content_length > limit:
        raise _too_large(limit, request.content_length)
    chunks: list[bytes] = []
    size = 0
    try:
        async with asyncio.timeout(timeout):
            while chunk := await request.content.readany():
                size += len(chunk)
                if size > limit:
                    raise _too_large(limit, size)
                chunks.append(chunk)
    except TimeoutError:
        raise web.HTTPRequestTimeout(
            text=json.dumps({"error": f"the request body did not arrive within {timeout:g} s",
                             "kind": "usage"}), content_type="application/json") from None
    return b"".join(chunks)


def _too_large(limit: int, size: int) -> web.HTTPException:
    return web.HTTPRequestEntityTooLarge(
        max_size=limit, actual_size=size, content_type="application/json",
        text=json.dumps({"error": f"the request body is larger than {limit} bytes; requests"
                                  " take at most that (files go up with PUT /api/v1/files)",
                         "kind": "usage"}))


def body_deadline(timeout: float) -> web.middleware:  # type: ignore[valid-type]
    """Cut a connection whose request body is still arriving ``timeout`` s after its
    handler started (handlers that read the body themselves, like enrolment, included).
    The handler is not cancelled: the read it waits in fails, as when a client vanishes."""
    @web.middleware
    async def check(request: web.Request, handler: Any) -> web.StreamResponse:
        if request.method != "POST" or not request.body_exists:
            result: web.StreamResponse = await handler(request)
            return result

        def cut() -> None:
            if not request.content.is_eof() and request.transport is not None:
                log.warning("request %s %s from %s cut: its body did not arrive within %g s",
                            request.method, request.path, request.remote, timeout)
                request.transport.abort()

        timer = asyncio.get_running_loop().call_later(timeout, cut)
        try:
            result = await handler(request)
        finally:
            timer.cancel()
        return result

    return check
