# SPDX-License-Identifier: MIT
"""Fixtures for system tests: real SSH hosts in network namespaces (see testnet.py).

``testnet``          module-scoped TestNet of 4 hosts, shared by the tests of one module.
``testnet_factory``  a callable ``make(n_hosts=4, **kwargs) -> TestNet`` for a test that
                     needs its own hosts (another count, or faults it must not leak); each
                     net it made is closed when the test ends. Nets may coexist: a second
                     one simply gets the next number (afbr1, 10.231.1.0/24, afarm-h1-n1...).

At the end of the session every TestNet still open is closed and the run fails if anything
of ours is left (namespaces, links, users, sshd processes, mounts, dirs).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from typing import Any, cast

import pytest

from tests.platform import need_root
from tests.system.testnet import TestNet, close_all, leftovers

_used = False


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "system: needs root, network namespaces and sshd hosts; still runs in CI")
    config.addinivalue_line(
        "markers", "slow: takes more than a few seconds (real Blender renders); still runs in CI")


def _require_root() -> None:
    need_root("system tests make network namespaces, users and sshd hosts")
    # As root a missing tool is a broken set-up (make deps-test installs them), not a skip.
    missing = [t for t in ("ip", "nsenter", "useradd", "ssh", "ssh-keygen")
               if shutil.which(t) is None]
    missing += [] if os.path.exists("/usr/sbin/sshd") else ["/usr/sbin/sshd"]
    assert not missing, f"system tests need {', '.join(missing)}: run make deps-test"


@pytest.fixture(scope="module")
def testnet() -> Iterator[TestNet]:
    global _used
    _require_root()
    _used = True
    with TestNet(4) as net:
        yield net


@pytest.fixture
def testnet_factory() -> Iterator[Callable[..., TestNet]]:
    global _used
    _require_root()
    _used = True
    made: list[TestNet] = []

    def make(n_hosts: int = 4, **kwargs: Any) -> TestNet:
        net = TestNet(n_hosts, **kwargs)
        made.append(net)
        return net.start()

    yield make
    errors = []
    for net in reversed(made):
        try:
            net.close()
        except Exception as exc:  # close them all before reporting one
            errors.append(exc)
    if errors:
        raise errors[0]


_SessionFinish = Callable[[pytest.Session, int], None]
# trylast: after pytest's runner has torn down the fixtures still set up (as after -x).
# The cast gives the (untyped) pluggy decorator a type for mypy --strict.
_trylast = cast(Callable[[_SessionFinish], _SessionFinish], pytest.hookimpl(trylast=True))


@_trylast
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    # Without root nothing of ours can exist unless a test made it.
    if os.geteuid() != 0 and not _used:
        return
    interrupted = session.exitstatus == pytest.ExitCode.INTERRUPTED
    # A net still open here was never closed by its test; on Ctrl-C that is expected.
    still_open = close_all()
    left = leftovers()
    lines = [] if interrupted else [f"TestNet still open at session end (closed now): {n}"
                                    for n in still_open]
    lines += [f"left behind: {x}" for x in left]
    if not lines:
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.section("testnet leftovers", sep="=", red=True, bold=True)
        for line in lines:
            reporter.write_line(line)
        reporter.write_line("remove them with: scripts/afarm-testnet clean")
    else:
        print("\n".join(lines))
    if session.exitstatus in (pytest.ExitCode.OK, pytest.ExitCode.NO_TESTS_COLLECTED):
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
