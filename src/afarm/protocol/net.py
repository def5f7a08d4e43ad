# SPDX-License-Identifier: MIT
"""HOST[:PORT] for the whole code base: read it, write it back, make a URL of it.

Accepted: ``10.0.0.1``, ``10.0.0.1:7731``, ``farm.example:7731``, ``[::1]:7731``,
``[fe80::1%eth0]:7731``, and a bare IPv6 address without a port (``::1``): a bare one
never carries a port, since ``::1:7731`` is itself an address. Hosts are checked here
once, so what comes out is safe to put in a URL, an ssh argv, known_hosts or a config
line: an IP address, or a name of letters, digits, '-' and '.' that starts with neither.
"""

from __future__ import annotations

import ipaddress
import re
from typing import NamedTuple

from afarm.errors import UsageError

JOB_PORT = 7731  # the defaults of [job_port] and [results_port] listen in master.spec
RESULTS_PORT = 7732
_LABEL = re.compile(r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?")
_PORT = re.compile(r"[0-9]{1,5}")
_ZONE = re.compile(r"[A-Za-z0-9._-]{1,64}")


class AddressError(UsageError):
    """A HOST[:PORT] that cannot be read; the message names it and the form expected."""


class HostPort(NamedTuple):
    host: str  # bare: an IPv6 address has no brackets here
    port: int

    def __str__(self) -> str:
        return join_hostport(self.host, self.port)


def _forms(port_required: bool) -> str:
    if port_required:
        return "write HOST:PORT or [IPV6]:PORT, e.g. 10.0.0.1:7731 or [::1]:7731"
    return ("write HOST, HOST:PORT or [IPV6]:PORT, e.g. 10.0.0.1:7731, farm.example or"
            " [::1]:7731")


def _ipv6_problem(text: str, zone: bool) -> str | None:
    address, sep, scope = text.partition("%")
    if sep and not zone:
        return "a zone (%IFACE) names an interface of one machine only; leave it out"
    if sep and not _ZONE.fullmatch(scope):
        return f"zone {scope!r} is not an interface name"
    try:
        ipaddress.IPv6Address(address)
    except ValueError:
        return f"{text!r} is not an IPv6 address"
    return None


def host_problem(host: str, zone: bool = True) -> str | None:
    """Why ``host`` (bare, no brackets) is not an IP address or host name; None if it is."""
    if ":" in host:
        return _ipv6_problem(host, zone)
    labels = host[:-1].split(".") if host.endswith(".") else host.split(".")
    if not host or len(host) > 253 or not all(_LABEL.fullmatch(lb) for lb in labels):
        return (f"{host!r} is not a host name or IP address (letters, digits, '-' and '.',"
                " not starting or ending with '-' or '.')")
    if all(lb.isdigit() for lb in labels):
        try:
            ipaddress.IPv4Address(host)
        except ValueError:
            return f"{host!r} is not an IPv4 address"
    return None


def check_host(host: str, what: str, zone: bool = True) -> str:
    """``host`` unchanged if it is an IP address or host name, else AddressError."""
    problem = host_problem(host, zone)
    if problem:
        raise AddressError(f"{what} {host!r}: {problem}")
    return host


def parse_hostport(value: str, default_port: int | None = None, what: str = "address",
                   zone: bool = True) -> HostPort:
    """Read HOST, HOST:PORT, [IPV6], [IPV6]:PORT or a bare IPv6 address.

    Without ``default_port`` a port is required. ``what`` names the value in errors
    (e.g. ``--master`` or ``[job_port] listen``)."""
    forms = _forms(default_port is None)

    def bad(reason: str) -> AddressError:
        return AddressError(f"{what} {value!r}: {reason}; {forms}")

    port_text: str | None = None
    hint = ""
    if value.startswith("["):
        end = value.find("]")
        if end < 0:
            raise bad("missing ']'")
        host, rest = value[1:end], value[end + 1:]
        if ":" not in host:
            raise bad("only an IPv6 address goes in brackets")
        if rest:
            if not rest.startswith(":"):
                raise bad(f"{rest!r} after ']' is not :PORT")
            port_text = rest[1:]
    elif value.count(":") > 1:
        host = value  # a bare IPv6 address; its port, if any, needs brackets
        hint = " (to give a port, put the IPv6 address in brackets)"
    else:
        host, sep, port_text_ = value.partition(":")
        port_text = port_text_ if sep else None
    if not host:
        raise bad("the host is missing")
    problem = host_problem(host, zone)
    if problem:
        raise bad(problem + hint)
    if port_text is None:
        if default_port is None:
            raise bad("the port is missing")
        return HostPort(host, default_port)
    if not _PORT.fullmatch(port_text) or not 0 < int(port_text) < 65536:
        raise bad(f"port {port_text!r} is not a number from 1 to 65535")
    return HostPort(host, int(port_text))


def join_hostport(host: str, port: int) -> str:
    """HOST:PORT, with an IPv6 address in brackets: what parse_hostport reads back."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def http_url(host: str, port: int) -> str:
    """The base URL of an HTTP port, e.g. ``http://[::1]:7731``.

    A zone stays a plain '%' (RFC 6874 would write %25): Python's urllib hands the
    bracketed text to getaddrinfo as it is, and it understands only the plain form."""
    return f"http://{join_hostport(host, port)}"


def is_loopback(host: str) -> bool:
    """Whether ``host`` (bare or in brackets) is ``localhost`` or a loopback address,
    including an IPv4-mapped one (``::ffff:127.0.0.1``)."""
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if host.lower().rstrip(".") == "localhost":
        return True
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped.is_loopback
    return ip.is_loopback
