# SPDX-License-Identifier: MIT
"""The slave's acceptance checks: each decides pass or fail from what it sees."""

import os
import shutil
import stat
import time
from pathlib import Path

import pytest

from afarm.applications.registry import load_applications
from afarm.protocol.messages import BenchReport, ProtocolError, TestReport
from afarm.runner.sandbox import Sandbox
from afarm.slave import acceptance
from tests.unit.slave.test_agent import AgentProcess

NVIDIA_L = """GPU 0: NVIDIA GeForce RTX 3080 (UUID: GPU-5c8a1f7e-2b1d-4d0a-9b3e-1234567890ab)
GPU 1: NVIDIA A100-SXM4-40GB (UUID: GPU-00000000-1111-2222-3333-444444444444)
"""


def stand_in(tmp_path: Path, name: str, script: str) -> str:
    path = tmp_path / name
    path.write_text("#!/bin/sh\n" + script)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return str(path)


def test_nvidia_smi_lines_become_one_gpu_each() -> None:
    assert acceptance.parse_nvidia_smi(NVIDIA_L) == [
        "nvidia 0: NVIDIA GeForce RTX 3080 (GPU-5c8a1f7e-2b1d-4d0a-9b3e-1234567890ab)",
        "nvidia 1: NVIDIA A100-SXM4-40GB (GPU-00000000-1111-2222-3333-444444444444)"]
    assert acceptance.parse_nvidia_smi("No devices were found\n") == []


def test_gpus_come_from_nvidia_smi_and_the_render_nodes(tmp_path: Path) -> None:
    smi = stand_in(tmp_path, "nvidia-smi", f"cat <<'EOF'\n{NVIDIA_L}EOF\n")
    dri = tmp_path / "dri"
    dri.mkdir()
    for n in ("renderD128", "card0", "renderD129"):
        (dri / n).touch()
    gpus, note = acceptance.discover_gpus(smi, dri)
    assert [g.split(":")[0] for g in gpus] == ["nvidia 0", "nvidia 1", "dri", "dri"]
    assert gpus[2:] == ["dri: renderD128", "dri: renderD129"] and note == ""


def test_a_failing_nvidia_smi_is_noted_not_fatal(tmp_path: Path) -> None:
    smi = stand_in(tmp_path, "nvidia-smi", "echo 'NVIDIA-SMI has failed' >&2; exit 9\n")
    gpus, note = acceptance.discover_gpus(smi, tmp_path / "no-dri")
    assert gpus == [] and "exited 9" in note and "NVIDIA-SMI has failed" in note


def test_disk_and_memory_pass_above_their_thresholds_and_fail_below(tmp_path: Path) -> None:
    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemTotal: 4000000 kB\nMemAvailable: 1048576 kB\n")
    assert acceptance.check_memory(1024, meminfo) == (True, "1024 MiB available")
    ok, why = acceptance.check_memory(1025, meminfo)
    assert not ok and "min_memory_mib = 1025" in why
    free = shutil.disk_usage(tmp_path).free >> 20
    assert acceptance.check_disk(tmp_path, 1)[0]
    ok, why = acceptance.check_disk(tmp_path, free + 10**9)
    assert not ok and "min_disk_mib" in why


def test_a_scratch_dir_that_cannot_be_written_fails(tmp_path: Path) -> None:
    assert acceptance.check_scratch(tmp_path)[0]
    shutil.rmtree(tmp_path / "accept")
    if os.geteuid() == 0:  # root writes anywhere: block the path with a file instead
        (tmp_path / "accept").write_text("a file where the dir must be")
    else:
        tmp_path.chmod(0o500)
    check = acceptance._timed("scratch", lambda: acceptance.check_scratch(tmp_path))
    tmp_path.chmod(0o700)
    assert not check.ok and check.detail


def test_blender_frame_times_are_read_from_its_log() -> None:
    lines = ["Fra:1 Mem:12M | Time:00:00.05 | Sample 1/16", " Time: 00:00.29 (Saving: 00:00.18)",
             "Saved: 'x.png'", " Time: 01:02.50 (Saving: 00:00.01)"]
    assert acceptance.frame_seconds(lines) == [0.29, 62.5]


def apps(tmp_path: Path, test: str) -> Path:
    d = tmp_path / "apps"
    d.mkdir(exist_ok=True)
    (d / "tool.conf").write_text(f"kind = command\nexecutable = /bin/echo\nargv = {{item}},\n"
                                 f"{test}")
    return d


@pytest.mark.parametrize(("test", "passes"), [
    ("test = /bin/sh, -c, 'echo made > {out}/x && test -s {out}/x'\n", True),
    ("test = /bin/sh, -c, 'echo broken; exit 1'\n", False),
    ("", True),  # no test: the executable is there
])
def test_a_command_application_passes_by_its_test_argv(tmp_path: Path, test: str,
                                                        passes: bool) -> None:
    loaded = load_applications(apps(tmp_path, test))
    report = acceptance.run_tests(loaded, tmp_path / "work", Sandbox(), 0, 0,
                                  dri=tmp_path / "no-dri")
    names = [c.name for c in report.checks]
    assert names == ["scratch", "sandbox", "disk", "memory", "gpus", "application tool"]
    assert report.passed is passes
    if not passes:
        assert report.reason.startswith("application tool: its test") and "exited 1" in \
            report.reason and "broken" in report.reason


def test_reports_survive_the_wire_and_lies_are_refused(tmp_path: Path) -> None:
    report = acceptance.run_tests({}, tmp_path, Sandbox(), 0, 0)
    back = TestReport.from_wire(report.to_wire())
    assert back == report and back.passed
    with pytest.raises(ProtocolError):
        TestReport.from_wire({"op": "test", "checks": [{"name": "x", "ok": "yes"}]})
    with pytest.raises(ProtocolError):
        BenchReport.from_wire({"results": [{"application": "b", "version": "3", "engine": "C",
                                            "device": "CPU", "seconds_per_frame": -1,
                                            "frames": 1}]})
    assert not TestReport.from_wire({"checks": []}).passed


def test_the_agent_answers_test_while_it_keeps_serving(tmp_path: Path) -> None:
    agent = AgentProcess(tmp_path / "work", apps(tmp_path, "test = /bin/sleep, 1\n"))
    try:
        started = time.monotonic()
        agent.send({"op": "test", "id": 7, "min_disk_mib": 0, "min_memory_mib": 0})
        agent.send({"op": "ping", "id": 8})
        assert agent.recv()["op"] == "pong"  # not stuck behind the test
        reply = agent.until("test")
        assert reply["id"] == 7 and TestReport.from_wire(reply).passed
        assert time.monotonic() - started >= 1
        agent.send({"op": "test", "id": 9, "min_disk_mib": -1})
        assert agent.until("refused")["id"] == 9
        agent.send({"op": "bench", "id": 10, "frames": 1})
        bench = BenchReport.from_wire(agent.until("bench"))
        assert bench.results == [] and "no Blender application" in str(bench.error)
    finally:
        agent.proc.kill()
        agent.proc.wait()
