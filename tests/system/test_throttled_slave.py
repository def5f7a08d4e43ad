# SPDX-License-Identifier: MIT
"""Two SSH slaves on namespace hosts, one CPU-throttled through a cgroup: after acceptance has
benchmarked both, the throttled one ranks lower under `fastest` and the other takes the first
tasks of a job."""

import json
import os
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.fixtures.blends import make_scene
from tests.system.test_slave_shell_ssh import install_shell
from tests.system.test_ssh_farm import APPS, ssh_master, tasks_of
from tests.system.testnet import Host, TestNet

pytestmark = [pytest.mark.system, pytest.mark.slow]

QUOTA = 0.15  # of one CPU: far slower than the other host, still done within the timeouts


class CpuThrottle:
    """A child cgroup capping the CPU of the processes moved into it (and their children):
    `cpu.max` on cgroup v2, cpu.cfs_quota_us on v1. Removed on exit, its processes moved back
    to the parent first, whatever happened in between."""

    def __init__(self, name: str, share: float) -> None:
        v2 = Path("/sys/fs/cgroup")
        if (v2 / "cgroup.controllers").is_file():
            self.parent, self.v2 = v2, True
        else:
            self.parent, self.v2 = Path("/sys/fs/cgroup/cpu"), False
            assert (self.parent / "cpu.cfs_quota_us").is_file(), \
                "no cpu cgroup controller mounted (cgroup v1 cpu or v2 cpu.max)"
        self.dir = self.parent / name
        self.share = share

    def __enter__(self) -> "CpuThrottle":
        self.dir.mkdir()
        period = 100_000
        quota = int(period * self.share)
        if self.v2:
            (self.dir / "cpu.max").write_text(f"{quota} {period}\n")
        else:
            (self.dir / "cpu.cfs_period_us").write_text(f"{period}\n")
            (self.dir / "cpu.cfs_quota_us").write_text(f"{quota}\n")
        return self

    def add(self, pid: int) -> None:
        (self.dir / "cgroup.procs").write_text(f"{pid}\n")

    def pids(self) -> list[int]:
        return [int(p) for p in (self.dir / "cgroup.procs").read_text().split()]

    def __exit__(self, *exc: object) -> None:
        deadline = time.monotonic() + 10
        while True:
            for pid in self.pids():
                try:
                    (self.parent / "cgroup.procs").write_text(f"{pid}\n")
                except (ProcessLookupError, OSError):
                    pass  # it exited meanwhile
            try:
                self.dir.rmdir()
                return
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)


def sshd_pid(h: Host) -> int:
    pid = int(h.pid_file.read_text().strip())
    os.kill(pid, 0)
    return pid


@pytest.fixture
def hosts(testnet_factory: Callable[..., TestNet]) -> Iterator[TestNet]:
    net = testnet_factory(2)
    for h in net:
        install_shell(net, h)
        for name, text in APPS.items():
            (h.dir / "applications.d" / f"{name}.conf").write_text(text)
    yield net


def test_a_cpu_throttled_slave_ranks_lower_and_the_other_takes_the_first_tasks(
        tmp_path: Path, hosts: TestNet) -> None:
    fast, slow = hosts[0], hosts[1]
    (tmp_path / "scene").mkdir()
    scene = make_scene(tmp_path / "scene", frames=4, width=64, height=36)
    with CpuThrottle(f"afarm-test-{os.getpid()}-{slow.name}", QUOTA) as cg:
        cg.add(sshd_pid(slow))  # every session, slave and Blender it starts inherits the cap
        started = time.monotonic()
        m = ssh_master(tmp_path, hosts, [fast, slow],
                       acceptance="benchmark_frames = 1\n").start()
        try:
            accepted = time.monotonic() - started
            states = {s["name"]: s["state"] for s in m.client.get("/api/v1/slaves")}
            assert states == {fast.name: "online", slow.name: "online"}, m.logtext()[-3000:]
            assert len(cg.pids()) > 1  # the throttled host's slave runs inside the cgroup
            cp = m.ctl("--json", "slaves", "--rank", "--policy", "fastest")
            assert cp.returncode == 0, cp.stderr
            rows = json.loads(cp.stdout)["slaves"]
            assert [r["slave"] for r in rows] == [fast.name, slow.name], rows
            speed = {r["slave"]: r["properties"]["benchmark"] for r in rows}
            # frames/s of afarm's benchmark scene: the cap must show, not just noise
            assert speed[fast.name] > 2 * speed[slow.name], speed
            job = m.submit(str(scene), "--frames", "1-4")
            assert m.wait(job, timeout=120)["status"] == "completed", m.logtext()[-3000:]
            tasks = sorted(tasks_of(m, job), key=lambda t: t["id"])
            assert tasks[0]["slave"] == fast.name, tasks
            on_fast = sum(t["slave"] == fast.name for t in tasks)
            assert on_fast > len(tasks) / 2, tasks
            print(f"accepted in {accepted:.1f} s; benchmark frames/s {speed}; "
                  f"tasks on {fast.name}: {on_fast}/{len(tasks)}")
        finally:
            m.stop()


def test_the_throttle_cgroup_is_removed_even_when_the_test_fails_its_processes_kept(
        testnet_factory: Callable[..., TestNet]) -> None:
    # testnet_factory only for its check that this runs as root; it makes no host here.
    proc = subprocess.Popen(["sleep", "30"])
    name = f"afarm-test-{os.getpid()}-fail"
    try:
        with pytest.raises(RuntimeError), CpuThrottle(name, QUOTA) as cg:
            cg.add(proc.pid)
            assert cg.pids() == [proc.pid]
            raise RuntimeError("the test failed here")
        assert not cg.dir.exists()
        assert proc.poll() is None  # moved back to the parent, still running
        assert str(proc.pid) in (cg.parent / "cgroup.procs").read_text().split()
    finally:
        proc.kill()
        proc.wait()
