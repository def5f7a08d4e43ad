# SPDX-License-Identifier: MIT
"""The slave agent, driven through a real pipe like the master drives it."""

import hashlib
import io
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from afarm.applications.registry import load_applications
from afarm.protocol.messages import PROTOCOL_VERSION
from afarm.slave import agent as agent_module
from tests.farm import ENV


class AgentProcess:
    def __init__(self, work: Path, apps: Path) -> None:
        self.work = work
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "afarm.slave.agent", "--name", "t", "--work-dir", str(work),
             "--applications-dir", str(apps)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            env=ENV)

    def send(self, msg: dict[str, Any]) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(msg).encode() + b"\n")
        self.proc.stdin.flush()

    def recv(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        assert line, "agent closed its stdout"
        msg: dict[str, Any] = json.loads(line)
        return msg

    def until(self, op: str) -> dict[str, Any]:
        while True:
            msg = self.recv()
            if msg["op"] == op:
                return msg


def write_apps(apps: Path) -> Path:
    apps.mkdir()
    (apps / "echo.conf").write_text("kind = command\nexecutable = /bin/echo\n"
                                    "argv = {item}, {input}\n")
    (apps / "sleep.conf").write_text("kind = command\nexecutable = /bin/sleep\n"
                                     "argv = {item},\ncapture_stdout = false\n")
    return apps


@pytest.fixture
def agent(tmp_path: Path) -> Iterator[AgentProcess]:
    a = AgentProcess(tmp_path / "work", write_apps(tmp_path / "apps"))
    yield a
    if a.proc.poll() is None:
        a.proc.kill()
    a.proc.wait()


def put(agent: AgentProcess, data: bytes) -> str:
    sha = hashlib.sha256(data).hexdigest()
    (agent.work / "cache").mkdir(parents=True, exist_ok=True)
    (agent.work / "cache" / sha).write_bytes(data)
    return sha


def run_msg(task: int, app: str, items: list[list[Any]], **kw: Any) -> dict[str, Any]:
    return {"op": "run", "job": 1, "task": task, "attempt": 1, "app": app, "kind": "item",
            "params": {"items": items}, "outputs": [f"item_{i:06d}.out" for i, _ in items]
            if app == "echo" else [], "timeout": 30, **kw}


def test_hello_describes_the_slave(agent: AgentProcess) -> None:
    agent.send({"op": "hello", "id": 7, "protocol": PROTOCOL_VERSION})
    hello = agent.recv()
    assert hello["id"] == 7 and hello["applications"] == ["echo", "sleep"]
    assert hello["cpus"] >= 1 and hello["disk_free"] > 0


def test_a_task_runs_from_the_cache_with_its_original_file_name(agent: AgentProcess) -> None:
    sha = put(agent, b"data")
    agent.send(run_msg(3, "echo", [[1, "hi"]], inputs=[{"name": "my file.txt",
                                                        "sha256": sha}]))
    done = agent.until("done")
    assert done["error"] is None, done
    out = agent.work / done["out_dir"] / "item_000001.out"
    assert out.read_text().startswith("hi ") and out.read_text().strip().endswith("my file.txt")


def test_a_corrupted_cache_file_is_refused_and_removed(agent: AgentProcess) -> None:
    sha = hashlib.sha256(b"good").hexdigest()
    (agent.work / "cache").mkdir(parents=True, exist_ok=True)
    (agent.work / "cache" / sha).write_bytes(b"evil")
    agent.send(run_msg(4, "echo", [[1, "x"]], inputs=[{"name": "a", "sha256": sha}]))
    done = agent.until("done")
    assert "corrupted" in done["error"]
    assert not (agent.work / "cache" / sha).exists()


@pytest.mark.parametrize(("patch", "needle"), [
    ({"app": "rm"}, "not defined"),
    ({"inputs": [{"name": "../../etc/passwd", "sha256": "0" * 64}]}, "plain file name"),
    ({"inputs": [{"name": "/etc/passwd", "sha256": "0" * 64}]}, "relative path"),
    ({"inputs": [{"name": "a//b", "sha256": "0" * 64}]}, "plain file name"),
    ({"inputs": [{"name": "a", "sha256": "xyz"}]}, "sha256"),
    ({"outputs": ["../x"]}, "plain file name"),
])
def test_bad_run_requests_are_refused_with_a_reason(agent: AgentProcess, patch: dict[str, Any],
                                                    needle: str) -> None:
    agent.send({**run_msg(5, "echo", [[1, "x"]]), **patch})
    done = agent.until("done")
    assert needle in done["error"]


@pytest.mark.parametrize("msg", [{"op": "shell", "cmd": "id"}, {"op": "run", "task": "1"},
                                 {"op": "cancel", "task": -1, "attempt": 0}, [1, 2]])
def test_unknown_or_malformed_requests_are_refused(agent: AgentProcess, msg: Any) -> None:
    assert agent.proc.stdin is not None
    agent.proc.stdin.write(json.dumps(msg).encode() + b"\n")
    agent.proc.stdin.flush()
    assert agent.recv()["op"] == "refused"


def test_cancel_kills_the_running_process(agent: AgentProcess) -> None:
    agent.send(run_msg(6, "sleep", [[1, "30"]]))
    time.sleep(0.3)
    started = time.monotonic()
    agent.send({"op": "cancel", "task": 6, "attempt": 1})
    done = agent.until("done")
    assert done["error"] == "canceled" and time.monotonic() - started < 5


def test_the_timeout_stops_a_task(agent: AgentProcess) -> None:
    agent.send(run_msg(7, "sleep", [[1, "30"]], timeout=0.5))
    done = agent.until("done")
    assert done.get("timed_out") and "timed out" in done["error"]


def test_when_the_master_goes_away_the_agent_stops_its_processes(agent: AgentProcess) -> None:
    agent.send(run_msg(8, "sleep", [[1, "30"]]))
    time.sleep(0.3)
    assert agent.proc.stdin is not None
    agent.proc.stdin.close()
    assert agent.proc.wait(timeout=10) == 0
    left = subprocess.run(["pgrep", "-f", "^/bin/sleep 30$"], capture_output=True, text=True,
                          check=False)
    assert left.stdout == ""


def test_inputs_keep_their_relative_paths(agent: AgentProcess) -> None:
    sha = put(agent, b"tex")
    main = put(agent, b"main")
    agent.send(run_msg(9, "echo", [[1, "x"]], inputs=[
        {"name": "scene.blend", "sha256": main}, {"name": "tex/wood.png", "sha256": sha}]))
    done = agent.until("done")
    assert done["error"] is None, done
    task_dir = agent.work / done["out_dir"] / ".."
    assert (task_dir / "in" / "tex" / "wood.png").read_bytes() == b"tex"


def test_a_master_of_another_protocol_is_refused_at_hello(agent: AgentProcess) -> None:
    agent.send({"op": "hello", "id": 1, "protocol": PROTOCOL_VERSION + 1})
    reply = agent.recv()
    assert reply["op"] == "refused" and reply["id"] == 1
    assert "same afarm version" in reply["reason"]


def test_the_same_task_attempt_twice_is_refused_and_leaves_no_orphan(
        agent: AgentProcess) -> None:
    agent.send(run_msg(11, "sleep", [[1, "30"]]))
    agent.send(run_msg(11, "sleep", [[1, "30"]]))
    assert "already running" in agent.until("refused")["reason"]
    agent.send({"op": "cancel", "task": 11, "attempt": 1})
    assert agent.until("done")["error"] == "canceled"


def test_a_timeout_beyond_seven_days_is_refused(agent: AgentProcess) -> None:
    agent.send(run_msg(12, "sleep", [[1, "1"]], timeout=2**62))
    assert "7 days" in agent.until("done")["error"]


def test_runs_beyond_the_agents_cap_are_answered_as_failed_at_once(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(agent_module, "MAX_RUNS", 1)
    out = io.BytesIO()
    apps = load_applications(write_apps(tmp_path / "apps"))
    a = agent_module.Agent("t", tmp_path / "work", apps, out)
    a.handle(run_msg(21, "sleep", [[1, "30"]]))
    a.handle(run_msg(22, "sleep", [[1, "30"]]))
    replies = [json.loads(line) for line in out.getvalue().splitlines()]
    assert replies[0]["op"] == "done" and replies[0]["task"] == 22
    assert "already runs 1 tasks" in replies[0]["error"]
    a.stop_all()
