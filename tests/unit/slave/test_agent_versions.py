# SPDX-License-Identifier: MIT
"""The agent's side of pool versions, through a real pipe: install-app checks, unpacks and
tests a version, a task of it runs the version's own program, hello reports it, gc drops it."""

import io
import os
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from afarm.protocol.messages import PROTOCOL_VERSION
from tests.unit.slave.test_agent import AgentProcess, put, run_msg, write_apps

TOOL = """#!/usr/bin/python3 -I
import sys
print("tool 2.0 says", sys.argv[1])
"""


def archive(program: str, test_ok: bool = True) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        ti = tarfile.TarInfo("tool-2.0/tool")
        data = program.encode()
        ti.size, ti.mode = len(data), 0o755
        tar.addfile(ti, io.BytesIO(data))
    return buf.getvalue()


def definition(test: list[str]) -> dict[str, object]:
    return {"kind": "command", "executable": "tool-2.0/tool", "argv": ["{item}"],
            "test": test}


@pytest.fixture
def agent(tmp_path: Path) -> Iterator[AgentProcess]:
    a = AgentProcess(tmp_path / "work", write_apps(tmp_path / "apps"))
    yield a
    if a.proc.poll() is None:
        a.proc.kill()
    a.proc.wait()


def install(agent: AgentProcess, version: str, data: bytes,
            test: list[str]) -> dict[str, object]:
    sha = put(agent, data)
    agent.send({"op": "install-app", "id": 1, "package": "tool", "version": version,
                "sha256": sha, "definition": definition(test)})
    return agent.until("install-app")


def test_an_installed_version_runs_its_own_program_and_is_reported_at_hello(
        agent: AgentProcess) -> None:
    reply = install(agent, "2.0", archive(TOOL), ["/bin/true"])
    assert "error" not in reply and reply["check"] == "its test passed", reply
    agent.send(run_msg(1, "tool", [[1, "hi"]], version="2.0",
                       outputs=["item_000001.out"]))
    done = agent.until("done")
    assert done["error"] is None, done
    assert done["argv"][0].endswith("/apps/tool/2.0/root/tool-2.0/tool")
    out = agent.work / done["out_dir"] / "item_000001.out"
    assert out.read_text() == "tool 2.0 says hi\n"
    agent.send({"op": "hello", "id": 2, "protocol": PROTOCOL_VERSION})
    hello = agent.until("hello")
    assert hello["installed"] == ["tool/2.0"] and hello["arch"]


def test_a_version_failing_its_acceptance_test_is_removed_and_marked_for_quarantine(
        agent: AgentProcess) -> None:
    reply = install(agent, "2.1", archive(TOOL), ["/bin/false"])
    assert reply["quarantine"] is True
    assert "2.1 failed its acceptance test" in str(reply["error"])
    assert not (agent.work / "apps" / "tool" / "2.1").exists()


def test_a_task_of_a_version_that_is_not_installed_fails_with_the_reason(
        agent: AgentProcess) -> None:
    agent.send(run_msg(2, "tool", [[1, "x"]], version="9.9"))
    assert "tool 9.9 is not installed" in agent.until("done")["error"]


def test_gc_removes_versions_unused_for_app_keep_days(agent: AgentProcess) -> None:
    install(agent, "2.0", archive(TOOL), ["/bin/true"])
    old = time.time() - 10 * 86400
    os.utime(agent.work / "apps" / "tool" / "2.0" / "last-used", (old, old))
    agent.send({"op": "gc", "id": 3, "keep_jobs": [], "app_keep_days": 30})
    assert agent.until("gc")["apps_removed"] == []
    agent.send({"op": "gc", "id": 4, "keep_jobs": [], "app_keep_days": 5})
    assert agent.until("gc")["apps_removed"] == ["tool/2.0"]
    assert os.listdir(agent.work / "apps" / "tool") == [".2.0.lock"]
