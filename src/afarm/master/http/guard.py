# SPDX-License-Identifier: MIT
"""Refuse what a web page in a browser could send: the defence against CSRF and DNS rebinding.

A page on ``http://evil.example`` can make the browser send requests to a master on
loopback or on the LAN. Three checks stop it, before any handler runs:

- **Host** must name this master: the IP address the connection came in on (a loopback
  address for a loopback connection), ``localhost`` or this machine's host name, each with
  the port the request came to, or a name or address the admin listed in
  ``[master] server_names`` (any port: behind a proxy or a NAT). A DNS-rebinding page
  sends its own name and is refused; a page that posts to ``http://0.0.0.0:PORT`` (which
  Linux routes to loopback) sends ``0.0.0.0`` and is refused too.
- **Origin**, when a browser sends one, must be one of the master's own origins (either
  port, a Host this check accepts), so the web page on the results port may call the job
  port; such requests get the CORS headers a browser needs, and nothing else does.
- **Content-Type**: bodies a page can send without a CORS preflight (``text/plain``, form
  encodings) are refused. JSON routes take ``application/json``, uploads
  ``application/octet-stream``.

Mutations also need a bearer token, even on loopback (see afarm.master.auth); these checks
are the layer below it.
"""

import ipaddress
import logging
import socket
from collections.abc import Iterable

from aiohttp import web

from afarm.master.http_util import Handler

log = logging.getLogger("afarm.master.http")

JSON = "application/json"
OCTETS = "application/octet-stream"
# The body type each method's routes take; methods not listed carry no body.
BODY_TYPES = {"POST": JSON, "PUT": OCTETS}


def split_host(value: str) -> tuple[str, int | None]:
    """``host[:port]`` (``[v6]:port`` too) as (lower-case host, port or None); ("", None)
    when it is not well-formed."""
    value = value.strip()
    if value.startswith("["):
        end = value.find("]")
        if end < 0:
            return "", None
        host, rest = value[1:end], value[end + 1:]
        if rest and not rest.startswith(":"):
            return "", None
        port_text = rest[1:]
    else:
        host, sep, port_text = value.partition(":")
        if ":" in port_text:
            return "", None
        if not sep:
            port_text = ""
    if port_text and not (port_text.isascii() and port_text.isdigit() and len(port_text) <= 5):
        return "", None
    return host.lower().rstrip("."), int(port_text) if port_text else None


def _ip(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return None
    mapped = getattr(ip, "ipv4_mapped", None)
    return mapped or ip


def same_address(host: str, local: str | None) -> bool:
    """Whether ``host`` (from a Host header) is the address a connection came in on."""
    ip, here = _ip(host), _ip(local or "")
    if ip is None or here is None:
        return False
    return ip == here or (ip.is_loopback and here.is_loopback)


class Guard:
    """The names and ports that mean "this master"."""

    def __init__(self, ports: Iterable[int], server_names: Iterable[str] = ()) -> None:
        self.ports = set(ports)
        self.own_names = {"localhost", socket.gethostname().lower()}
        self.server_names = {n.lower().rstrip(".") for n in server_names if n}

    def host_ok(self, value: str | None, port: int, local: str | None = None) -> bool:
        """Whether a Host header (or an Origin's host part) names this master at ``port``,
        for a connection that came in on the address ``local``."""
        if not value:
            return False
        host, given = split_host(value)
        if not host:
            return False
        if host in self.server_names:
            return True
        if (80 if given is None else given) != port:
            return False
        return host in self.own_names or same_address(host, local)

    def origin_ok(self, origin: str, local: str | None = None) -> bool:
        scheme, sep, rest = origin.partition("://")
        if not sep or scheme.lower() != "http" or "/" in rest:
            return False
        host, port = split_host(rest)
        if host and host in self.server_names:  # behind a proxy, on the proxy's port
            return True
        port = 80 if port is None else port
        return port in self.ports and self.host_ok(rest, port, local)


def _refuse(request: web.Request, status: int, message: str) -> web.Response:
    # One template per status, so the log's rate limit counts each kind of refusal apart.
    log.warning(f"refused %s %s from %s ({status}): %s", request.method, request.path[:200],
                request.remote, message)
    return web.json_response({"error": message, "kind": "refused"}, status=status)


def middleware(guard: Guard, port: int) -> web.middleware:  # type: ignore[valid-type]
    @web.middleware
    async def check(request: web.Request, handler: Handler) -> web.StreamResponse:
        host = request.headers.get("Host")
        sockname = request.transport.get_extra_info("sockname") if request.transport else None
        local = str(sockname[0]) if sockname else None
        if not guard.host_ok(host, port, local):
            return _refuse(request, 421, f"Host {host!r} does not name this master; use its"
                           " address or a name listed in [master] server_names of"
                           " master.conf")
        origin = request.headers.get("Origin")
        if origin is not None and not guard.origin_ok(origin, local):
            return _refuse(request, 403, f"requests from web pages of {origin!r} are not"
                           " accepted; only the master's own pages may call it")
        if origin is not None and request.method == "OPTIONS" \
                and "Access-Control-Request-Method" in request.headers:
            return web.Response(status=204, headers={
                **_cors(origin), "Access-Control-Allow-Methods": "GET, HEAD, POST, PUT",
                "Access-Control-Allow-Headers": "Authorization, Content-Type",
                "Access-Control-Max-Age": "600"})
        wanted = BODY_TYPES.get(request.method)
        # aiohttp reports a missing Content-Type as application/octet-stream: ask for it.
        if wanted is not None and ("Content-Type" not in request.headers
                                   or request.content_type != wanted):
            given = request.headers.get("Content-Type", "none")
            return _refuse(request, 415, f"{request.method} {request.path} takes a body of"
                           f" Content-Type {wanted}, not {given!r}")
        try:
            response = await handler(request)
        except web.HTTPException as exc:
            # A refusal the page must be able to read (no such job, no such route): without
            # these headers the browser hides its message behind "Failed to fetch".
            if origin is not None:
                exc.headers.update(_cors(origin))
            raise
        if origin is not None and not response.prepared:
            response.headers.update(_cors(origin))
        return response

    return check


def _cors(origin: str) -> dict[str, str]:
    return {"Access-Control-Allow-Origin": origin, "Vary": "Origin"}
