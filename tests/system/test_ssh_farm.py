# SPDX-License-Identifier: MIT
"""A real multi-host farm: the master in the root namespace, slaves on namespace hosts with
their own sshd behind afarm-slave-shell, real Blender renders, and the faults that must lose
nothing: a host crash, a network cut, a master kill -9, a changed host key, a full disk."""

import hashlib
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from afarm.runner.verify import verify_output
from tests.farm import MasterProcess
from tests.fixtures.blends import make_scene
from tests.system.test_slave_shell_ssh import install_shell
from tests.system.testnet import Host, TestNet
from tests.system.testnet import TestNetError as NetError

pytestmark = [pytest.mark.system, pytest.mark.slow]

APPS = {
    "blender": f"kind = blender\nexecutable = {shutil.which('blender')}\n",
    "sleep": "kind = command\nexecutable = /bin/sleep\nargv = {item},\ncapture_stdout = false\n",
}


@pytest.fixture(scope="module")
def net(testnet: TestNet) -> Iterator[TestNet]:
    n = testnet
    for h in n:
        install_shell(n, h)
        for name, text in APPS.items():
            (h.dir / "applications.d" / f"{name}.conf").write_text(text)
    yield n


@pytest.fixture(scope="module")
def scene(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_scene(tmp_path_factory.mktemp("scene"), frames=8, width=64, height=36)


def ssh_master(base: Path, net: TestNet, hosts: list[Host],
               acceptance: str = "benchmark_frames = 0\n") -> MasterProcess:
    m = MasterProcess(base, slaves=0, apps={
        "sleep": APPS["sleep"],
        "blender": APPS["blender"]}, acceptance=acceptance)
    slaves_d = base / "slaves.d"
    slaves_d.mkdir(exist_ok=True)
    for h in hosts:
        (slaves_d / f"{h.name}.conf").write_text(
            f"host = {h.addr}\nport = {h.port}\nuser = {h.user}\nkey = {net.client_key}\n"
            f"work_dir = {h.workdir}\n")
    m.state.mkdir(parents=True, exist_ok=True)
    shutil.copy(net.known_hosts, m.state / "known_hosts")
    return m


@pytest.fixture
def farm(tmp_path: Path, net: TestNet) -> Iterator[MasterProcess]:
    m = ssh_master(tmp_path, net, list(net)[:2]).start()
    yield m
    m.stop()
    for h in net:  # a test may have crashed or cut a host: bring it back for the next one
        net.restore(h)
        if not net.sshd_running(h):
            net.restart(h)


def tasks_of(farm: MasterProcess, job: int) -> list[dict[str, Any]]:
    tasks: list[dict[str, Any]] = farm.client.get(f"/api/v1/jobs/{job}")["tasks"]
    return tasks


def wait_active_on(farm: MasterProcess, job: int, slave: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(t["status"] == "active" and t["slave"] == slave for t in tasks_of(farm, job)):
            return
        time.sleep(0.02)
    raise AssertionError(f"{slave} never got a task of job {job}:\n{farm.logtext()[-2000:]}")


def slave_state(farm: MasterProcess, name: str) -> dict[str, Any]:
    for s in farm.client.get("/api/v1/slaves"):
        if s["name"] == name:
            return dict(s)
    raise KeyError(name)


def wait_state(farm: MasterProcess, name: str, states: tuple[str, ...],
               timeout: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        s = slave_state(farm, name)
        if s["state"] in states:
            return s
        time.sleep(0.1)
    raise AssertionError(f"{name} stayed {slave_state(farm, name)}")


def check_frames(farm: MasterProcess, job: int, frames: range) -> dict[str, str]:
    out = farm.job_dir(job) / "out"
    names = sorted(p.name for p in out.glob("*.png"))
    assert names == [f"frame_{n:04d}.png" for n in frames]
    digests = {}
    for p in sorted(out.glob("*.png")):
        verify_output(p)
        digests[p.name] = hashlib.sha256(p.read_bytes()).hexdigest()
    assert list((farm.job_dir(job) / ".partial").iterdir()) == []
    return digests


def test_a_render_spreads_over_ssh_slaves_and_completes(farm: MasterProcess, net: TestNet,
                                                       scene: Path) -> None:
    job = farm.submit(str(scene), "--frames", "1-8", "--encode", "mp4")
    assert farm.wait(job)["status"] == "completed", (tasks_of(farm, job), farm.logtext())
    check_frames(farm, job, range(1, 9))
    assert {t["slave"] for t in tasks_of(farm, job) if t["kind"] == "render"} == {
        net[0].name, net[1].name}
    assert (farm.job_dir(job) / "out" / f"{scene.name.removesuffix('.blend')}.mp4").is_file()


def test_an_input_is_sent_to_each_slave_once_however_many_jobs_use_it(
        farm: MasterProcess, tmp_path: Path) -> None:
    # A scene no other test uses, so no slave has it in its cache yet.
    scene = make_scene(tmp_path, frames=8, width=62, height=30)
    first = farm.submit(str(scene), "--frames", "1-4")
    assert farm.wait(first)["status"] == "completed"
    sent = {s["name"]: s["bytes_sent"] for s in farm.client.get("/api/v1/slaves")}
    assert all(n >= scene.stat().st_size * 0.5 for n in sent.values()), sent
    second = farm.submit(str(scene), "--frames", "5-8")
    assert farm.wait(second)["status"] == "completed"
    again = {s["name"]: s["bytes_sent"] for s in farm.client.get("/api/v1/slaves")}
    assert again == sent  # the second job sent no input bytes


def test_a_slave_host_dying_mid_task_loses_no_frame(farm: MasterProcess, net: TestNet,
                                                    scene: Path) -> None:
    job = farm.submit(str(scene), "--frames", "1-8")
    wait_active_on(farm, job, net[0].name)
    net.crash(net[0])
    assert farm.wait(job)["status"] == "completed", farm.logtext()[-3000:]
    check_frames(farm, job, range(1, 9))
    assert slave_state(farm, net[0].name)["state"] == "unreachable"
    net.restart(net[0])
    wait_state(farm, net[0].name, ("online", "busy"))


def test_a_network_cut_requeues_and_the_slave_returns_without_overwriting(
        farm: MasterProcess, net: TestNet, scene: Path) -> None:
    job = farm.submit(str(scene), "--frames", "1-8")
    wait_active_on(farm, job, net[0].name)
    net.cut(net[0])
    assert farm.wait(job)["status"] == "completed", farm.logtext()[-3000:]
    digests = check_frames(farm, job, range(1, 9))
    mtimes = {p.name: p.stat().st_mtime_ns for p in (farm.job_dir(job) / "out").iterdir()}
    net.restore(net[0])
    wait_state(farm, net[0].name, ("online", "busy"))
    time.sleep(2)  # room for any late result from the cut slave to (wrongly) arrive
    assert check_frames(farm, job, range(1, 9)) == digests
    assert {p.name: p.stat().st_mtime_ns for p in (farm.job_dir(job) / "out").iterdir()} \
        == mtimes
    later = farm.submit("--app", "sleep", "--items", ",".join(["0.3"] * 8))
    assert farm.wait(later)["status"] == "completed"
    assert net[0].name in {t["slave"] for t in tasks_of(farm, later)}


def test_a_kill_9_of_the_master_mid_job_reconnects_and_completes(
        farm: MasterProcess, net: TestNet, scene: Path) -> None:
    job = farm.submit(str(scene), "--frames", "1-8", "--encode", "mp4")
    wait_active_on(farm, job, net[1].name)
    farm.kill9()
    farm.start()
    assert farm.wait(job)["status"] == "completed", farm.logtext()[-3000:]
    check_frames(farm, job, range(1, 9))


def test_a_changed_host_key_is_refused_with_how_to_accept_it(
        tmp_path: Path, net: TestNet) -> None:
    h = net[2]
    m = ssh_master(tmp_path, net, [h])
    # The master remembers an old key for this address: as if the host was reinstalled.
    other = tmp_path / "otherkey"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)],
                   check=True)
    (m.state / "known_hosts").write_text(
        f"{h.addr} {(other.with_suffix('.pub')).read_text().split()[0]} "
        f"{(other.with_suffix('.pub')).read_text().split()[1]}\n")
    m.start(wait_slaves=False)
    try:
        s = wait_state(m, h.name, ("refused",), timeout=30)
        assert "known_hosts" in s["last_error"] and "ssh-keyscan" in s["last_error"]
        table = m.ctl("slaves").stdout
        assert "refused" in table and "ssh-keyscan" in table
        assert m.submit("--app", "sleep", "--items", "0.1") > 0
        time.sleep(1)
        assert tasks_of(m, 1)[0]["status"] == "queued"  # nothing runs on a refused slave
    finally:
        m.stop()


def test_a_full_disk_fails_the_task_there_and_it_succeeds_elsewhere(
        tmp_path: Path, net: TestNet, scene: Path) -> None:
    h_full, h_ok = net[2], net[1]
    net.tmpfs_workdir(h_full, size=max(64 * 1024, scene.stat().st_size // 2))
    # A disk that fills up after the slave passed its acceptance test (one this full is
    # quarantined at once: test_a_slave_with_too_little_disk_is_quarantined).
    m = ssh_master(tmp_path, net, [h_full, h_ok], acceptance="enabled = no\n").start()
    try:
        job = m.submit(str(scene), "--frames", "1-4")
        assert m.wait(job)["status"] == "completed", m.logtext()[-3000:]
        check_frames(m, job, range(1, 5))
        failures = [f for t in tasks_of(m, job) for f in t["failures"]]
        assert failures and all(f["slave"] == h_full.name for f in failures)
        assert any("disk" in f["reason"] or "space" in f["reason"] for f in failures), failures
        assert {t["slave"] for t in tasks_of(m, job)} == {h_ok.name}
    finally:
        m.stop()


def test_a_slave_with_too_little_disk_is_quarantined_and_takes_no_task(
        tmp_path: Path, net: TestNet, scene: Path) -> None:
    h_full, h_ok = net[2], net[1]
    try:
        net.tmpfs_workdir(h_full, size=64 * 1024)
    except NetError:  # the full-disk test left its (as small) tmpfs there
        pass
    m = ssh_master(tmp_path, net, [h_full, h_ok], acceptance="min_disk_mib = 16\n"
                   "benchmark_frames = 0\n").start()
    try:
        full, ok = slave_state(m, h_full.name), slave_state(m, h_ok.name)
        assert full["state"] == "quarantined" and "min_disk_mib = 16" in full["last_error"]
        assert ok["state"] == "online"
        assert all(c["ok"] for c in ok["info"]["acceptance"]["checks"])
        job = m.submit(str(scene), "--frames", "1-2")
        assert m.wait(job)["status"] == "completed"
        assert {t["slave"] for t in tasks_of(m, job)} == {h_ok.name}
    finally:
        m.stop()
