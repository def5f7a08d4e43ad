# SPDX-License-Identifier: MIT
"""A pool version reaches SSH slaves on namespace hosts through rsync into their cache, is
unpacked and run there by the slave user in its sandbox, and is sent only once."""

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.farm import MasterProcess
from tests.system.test_slave_shell_ssh import install_shell
from tests.system.test_ssh_farm import ssh_master
from tests.system.testnet import TestNet

pytestmark = pytest.mark.system
TOOL = "kind = command\nexecutable = run\nargv = {item},\n"
RUN = """#!/usr/bin/python3 -I
import sys
print("pool tool 1.0:", sys.argv[1])
"""


@pytest.fixture
def farm(tmp_path: Path, testnet_factory: object) -> Iterator[MasterProcess]:
    net: TestNet = testnet_factory(2)  # type: ignore[operator]
    for h in net:
        install_shell(net, h)
    m = ssh_master(tmp_path / "farm", net, list(net))
    (m.apps_dir / "tool.conf").write_text(TOOL)  # the slaves do not define it
    m.start()
    yield m
    m.stop()


def bytes_sent(farm: MasterProcess) -> int:
    return sum(s["bytes_sent"] for s in farm.client.get("/api/v1/slaves"))


def test_a_version_is_pushed_once_per_slave_and_runs_there(farm: MasterProcess,
                                                            tmp_path: Path) -> None:
    src = tmp_path / "tool-1.0"
    src.mkdir()
    (src / "run").write_text(RUN)
    (src / "run").chmod(0o755)
    (src / "data.bin").write_bytes(b"x" * (1 << 20))
    add = farm.ctl("--json", "app", "add", "tool", "1.0", str(src))
    assert add.returncode == 0, add.stderr
    size = json.loads(add.stdout)["size"]
    first = farm.submit("--app", "tool (>= 1)", "--items", "a,b,c,d,e,f")
    assert farm.wait(first)["status"] == "completed", farm.ctl("logs", str(first)).stdout
    sent = bytes_sent(farm)
    holders = json.loads(farm.ctl("--json", "app", "list").stdout)["versions"][0]["slaves"]
    assert sent >= size * len(holders) and holders
    out = sorted((farm.job_dir(first) / "out").glob("*.out"))
    assert out[0].read_text() == "pool tool 1.0: a\n"
    second = farm.submit("--app", "tool (>= 1)", "--items", "g,h,i,j")
    assert farm.wait(second)["status"] == "completed"
    assert bytes_sent(farm) == sent  # installed versions are reused: nothing sent
