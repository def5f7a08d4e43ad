# SPDX-License-Identifier: MIT
"""afarm-slave-shell as the slave user's login shell: defence in depth behind the forced
command, so even a key installed without `command=` can do nothing but afarm's verbs."""

import subprocess
from collections.abc import Iterator

import pytest

from afarm import __version__
from tests.system.test_slave_shell_ssh import shell_wrapper
from tests.system.testnet import Host, TestNet

pytestmark = pytest.mark.system


@pytest.fixture(scope="module")
def host(testnet: TestNet) -> Iterator[Host]:
    h = testnet[0]
    conf = h.dir / "slave.conf"
    conf.write_text(f"[slave]\nname = {h.name}\nwork_dir = {h.workdir}\n")
    conf.chmod(0o644)
    # Stands in for /usr/bin/afarm-slave-shell; the config path is fixed here, as the
    # installed program's default is, never taken from what the client sends.
    shell = shell_wrapper(h, conf)
    subprocess.run(["usermod", "-s", str(shell), h.user], check=True)
    testnet.authorize(h)  # a plain key: no restrict, no command=
    yield h
    subprocess.run(["usermod", "-s", "/bin/sh", h.user], check=True)


def test_the_allowed_verbs_work_without_a_forced_command(testnet: TestNet, host: Host) -> None:
    cp = testnet.ssh(host, "version")
    assert (cp.returncode, cp.stdout) == (0, f"{__version__}\n"), cp.stderr


@pytest.mark.parametrize("command", ["cat /etc/shadow", "ls /", "sh -c id",
                                     "afarm-slave-shell --config /tmp/evil.conf"])
def test_anything_else_is_refused_without_a_forced_command(testnet: TestNet, host: Host,
                                                           command: str) -> None:
    cp = testnet.ssh(host, command)
    assert cp.returncode == 1 and "refused" in cp.stderr, (cp.stdout, cp.stderr)
    assert cp.stdout == ""
