# SPDX-License-Identifier: MIT
"""The browser guard's rules: which Host and Origin name this master."""

import socket

import pytest

from afarm.master.http.guard import Guard, split_host

GUARD = Guard([7731, 7732], ["farm.example.org"])


@pytest.mark.parametrize(("value", "parsed"), [
    ("127.0.0.1:7731", ("127.0.0.1", 7731)), ("[::1]:7731", ("::1", 7731)),
    ("LocalHost.:7731", ("localhost", 7731)), ("farm.example.org", ("farm.example.org", None)),
    ("[::1", ("", None)), ("a:b:c", ("", None)), ("x:99999999", ("", None)),
    ("x:٣", ("", None))])
def test_host_headers_are_split_strictly(value: str, parsed: tuple[str, int | None]) -> None:
    assert split_host(value) == parsed


@pytest.mark.parametrize(("host", "local"), [
    ("127.0.0.1:7731", "127.0.0.1"), ("localhost:7731", "127.0.0.1"),
    ("[::1]:7731", "127.0.0.1"), ("127.0.0.1:7731", "::ffff:127.0.0.1"),
    ("10.0.0.5:7731", "10.0.0.5"), ("farm.example.org", "10.0.0.5"),
    ("farm.example.org:443", None), (f"{socket.gethostname()}:7731", "10.0.0.5")])
def test_the_masters_own_names_pass(host: str, local: str | None) -> None:
    assert GUARD.host_ok(host, 7731, local)


@pytest.mark.parametrize("host", [None, "", "evil.example:7731", "evil.example",
                                  "127.0.0.1:7732", "localhost", "localhost:80",
                                  "127.0.0.1.evil.example:7731", "127.0.0.1:7731@evil",
                                  "0.0.0.0:7731", "[::]:7731", "10.0.0.6:7731"])
def test_a_rebound_or_foreign_host_is_refused(host: str | None) -> None:
    assert not GUARD.host_ok(host, 7731, "127.0.0.1")


@pytest.mark.parametrize(("origin", "ok"), [
    ("http://127.0.0.1:7732", True), ("http://localhost:7731", True),
    ("http://farm.example.org", True), ("http://evil.example", False),
    ("http://evil.example:7731", False), ("null", False), ("https://127.0.0.1:7732", False),
    ("http://127.0.0.1:8080", False), ("http://127.0.0.1:7732/x", False), ("", False)])
def test_only_the_masters_own_origins_pass(origin: str, ok: bool) -> None:
    assert GUARD.origin_ok(origin, "127.0.0.1") is ok
