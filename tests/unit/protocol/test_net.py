# SPDX-License-Identifier: MIT
"""The one HOST:PORT parser: every accepted form, every refusal, and the way back."""

import pytest

from afarm.errors import UsageError
from afarm.protocol.net import (
    AddressError,
    HostPort,
    http_url,
    is_loopback,
    join_hostport,
    parse_hostport,
)

# value, default port (None: the port is required), expected (host, port) or the error's text
TABLE: list[tuple[str, int | None, tuple[str, int] | str]] = [
    ("10.0.0.1:7731", None, ("10.0.0.1", 7731)),
    ("10.0.0.1", 7731, ("10.0.0.1", 7731)),
    ("0.0.0.0:80", None, ("0.0.0.0", 80)),
    ("farm.example:8000", None, ("farm.example", 8000)),
    ("farm", 7731, ("farm", 7731)),
    ("render-1.lan.", 7731, ("render-1.lan.", 7731)),
    ("localhost:65535", None, ("localhost", 65535)),
    ("[::1]:7731", None, ("::1", 7731)),
    ("[::1]", 7731, ("::1", 7731)),
    ("[fd00::1]:7000", 7731, ("fd00::1", 7000)),
    ("[fe80::1%eth0]:7731", None, ("fe80::1%eth0", 7731)),
    ("[::ffff:10.0.0.1]:1", None, ("::ffff:10.0.0.1", 1)),
    ("::1", 7731, ("::1", 7731)),
    ("fd00::1:7731", 7731, ("fd00::1:7731", 7731)),  # an address, not a port
    ("fe80::1%eth0", 7731, ("fe80::1%eth0", 7731)),
    # refused
    ("", 7731, "the host is missing"),
    (":7731", None, "the host is missing"),
    ("10.0.0.1", None, "the port is missing"),
    ("[::1]", None, "the port is missing"),
    ("::1", None, "the port is missing"),
    ("farm:", 7731, "port '' is not a number"),
    ("farm:x", 7731, "port 'x' is not a number"),
    ("farm:0", 7731, "from 1 to 65535"),
    ("farm:65536", 7731, "from 1 to 65535"),
    ("farm:+80", 7731, "port '+80'"),
    ("farm:\u0663", 7731, "is not a number"),  # an Arabic-Indic digit three
    ("[::1", 7731, "missing ']'"),
    ("[::1]7731", 7731, "after ']' is not :PORT"),
    ("[10.0.0.1]:80", 7731, "only an IPv6 address goes in brackets"),
    ("[]:80", 7731, "only an IPv6 address goes in brackets"),
    ("[::g]:80", 7731, "is not an IPv6 address"),
    ("::1::2", 7731, "put the IPv6 address in brackets"),
    ("fe80::1%eth0:7731", 7731, "is not an interface name"),
    ("[fe80::1%]:80", 7731, "is not an interface name"),
    ("a b:80", 7731, "is not a host name or IP address"),
    ("-oProxyCommand=x", 7731, "is not a host name"),
    ("farm..lan", 7731, "is not a host name"),
    ("farm_1", 7731, "is not a host name"),
    ("farm\n", 7731, "is not a host name"),
    ("x" * 64, 7731, "is not a host name"),
    ("10.0.0.256", 7731, "is not an IPv4 address"),
    ("010.0.0.1", 7731, "is not an IPv4 address"),
    ("10.0.0", 7731, "is not an IPv4 address"),
]


@pytest.mark.parametrize(("value", "default", "expected"), TABLE,
                         ids=[repr(v) for v, _, _ in TABLE])
def test_host_port_values_are_read_or_refused_with_the_expected_form(
        value: str, default: int | None, expected: tuple[str, int] | str) -> None:
    if isinstance(expected, tuple):
        got = parse_hostport(value, default, "--master")
        assert got == HostPort(*expected)
        assert parse_hostport(str(got), None) == got  # written back, read the same
        return
    with pytest.raises(AddressError) as exc:
        parse_hostport(value, default, "--master")
    message = str(exc.value)
    assert expected in message
    assert message.startswith(f"--master {value!r}: ")  # names the bad value
    assert "[IPV6]:PORT" in message  # and the form expected
    assert isinstance(exc.value, UsageError)  # afarmctl exits 2


def test_a_zone_is_refused_where_it_would_mean_nothing() -> None:
    with pytest.raises(AddressError, match="interface of one machine"):
        parse_hostport("[fe80::1%eth0]:22", None, "--address", zone=False)


@pytest.mark.parametrize(("host", "port", "joined", "url"), [
    ("10.0.0.1", 7731, "10.0.0.1:7731", "http://10.0.0.1:7731"),
    ("farm.example", 80, "farm.example:80", "http://farm.example:80"),
    ("::1", 7731, "[::1]:7731", "http://[::1]:7731"),
    ("fe80::1%eth0", 7731, "[fe80::1%eth0]:7731", "http://[fe80::1%eth0]:7731"),
])
def test_addresses_are_written_with_ipv6_in_brackets(host: str, port: int, joined: str,
                                                     url: str) -> None:
    assert join_hostport(host, port) == joined
    assert http_url(host, port) == url


@pytest.mark.parametrize(("host", "loop"), [
    ("127.0.0.1", True), ("127.1.2.3", True), ("::1", True), ("[::1]", True),
    ("localhost", True), ("LOCALHOST.", True), ("::ffff:127.0.0.1", True),
    ("0.0.0.0", False), ("::", False), ("10.0.0.1", False), ("fd00::1", False),
    ("::ffff:10.0.0.1", False), ("farm.example", False), ("localhost.evil.example", False),
])
def test_loopback_detection(host: str, loop: bool) -> None:
    assert is_loopback(host) is loop
