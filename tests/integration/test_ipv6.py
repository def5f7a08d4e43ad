# SPDX-License-Identifier: MIT
"""A master listening on [::1]: afarmctl and afarm-slave enroll reach it by IPv6 address."""

import json
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from afarm.cli.client import Client
from tests.farm import ENV, MasterProcess


def free_port_pair_v6() -> int:
    """A port P on ::1 with P+1 free too: afarmctl's results port defaults to the next."""
    for _ in range(50):
        with socket.socket(socket.AF_INET6) as a:
            a.bind(("::1", 0))
            port = int(a.getsockname()[1])
            with socket.socket(socket.AF_INET6) as b:
                try:
                    b.bind(("::1", port + 1))
                except OSError:
                    continue
                return port
    raise RuntimeError("no two neighbouring free ports on ::1")


@pytest.fixture
def master6(tmp_path: Path) -> Iterator[MasterProcess]:
    farm = MasterProcess(tmp_path, slaves=1, apps={
        "factor": "kind = command\nexecutable = /usr/bin/factor\nargv = {item},\n"})
    port = free_port_pair_v6()
    text = farm.conf.read_text()
    for old, new in ((farm.job_port, port), (farm.results_port, port + 1)):
        assert f"listen = 127.0.0.1:{old}\n" in text
        text = text.replace(f"listen = 127.0.0.1:{old}\n", f"listen = [::1]:{new}\n")
    farm.conf.write_text(text)
    farm.job_port, farm.results_port = port, port + 1
    farm.client = Client(f"[::1]:{port}")
    farm.start()
    # afarmctl run as an admin on the master's machine: with the master's client token.
    _env.update(ENV, AFARM_TOKEN=farm.local_token() or "")
    try:
        yield farm
    finally:
        farm.stop()


_env: dict[str, str] = {}


def afarmctl(*args: str, env: dict[str, str] | None = None
             ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "afarm.cli.main", *args],
                          capture_output=True, text=True, env=env or _env or ENV, timeout=120,
                          check=False)


def test_afarmctl_reaches_a_master_on_ipv6_loopback(master6: MasterProcess) -> None:
    master = f"[::1]:{master6.job_port}"
    assert "job port listening on " + master in master6.logtext()
    submitted = afarmctl("--master", master, "--json", "submit", "--app", "factor",
                         "--items", "6")
    assert submitted.returncode == 0, submitted.stderr
    job_id = int(json.loads(submitted.stdout)["id"])
    assert master6.wait(job_id, timeout=120)["status"] == "completed"
    jobs = afarmctl("--master", master, "jobs")
    assert jobs.returncode == 0, jobs.stderr
    assert f"{job_id:>5}  completed" in jobs.stdout
    # The same through AFARM_MASTER, and a bare address with the default port refused
    # clearly rather than misread.
    by_env = afarmctl("--json", "jobs", env={**_env, "AFARM_MASTER": master})
    assert by_env.returncode == 0 and json.loads(by_env.stdout)[0]["id"] == job_id
    bad = afarmctl("--master", f"::1:{master6.job_port}:x", "jobs")
    assert bad.returncode == 2 and "[IPV6]:PORT" in bad.stderr


def test_a_slave_enrols_with_a_master_on_ipv6_loopback(master6: MasterProcess,
                                                       tmp_path: Path) -> None:
    master = f"[::1]:{master6.job_port}"
    made = afarmctl("--master", master, "--json", "slave", "token")
    assert made.returncode == 0, made.stderr
    answer = json.loads(made.stdout)
    assert answer["command"].startswith(f"afarm-slave enroll --master {master} ")
    key = tmp_path / "host_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)],
                   check=True, capture_output=True)
    slave_conf = tmp_path / "slave.conf"
    slave_conf.write_text(f"[slave]\nname = v6box\nwork_dir = {tmp_path / 'work'}\n")
    enrolled = subprocess.run(
        [sys.executable, "-m", "afarm.slave.daemon", "--config", str(slave_conf), "enroll",
         "--master", master, "--token", answer["token"], "--ssh-port", "2222",
         "--host-key", f"{key}.pub", "--authorized-keys", str(tmp_path / "authorized_keys")],
        capture_output=True, text=True, env=ENV, timeout=120, check=False)
    assert enrolled.returncode == 0, enrolled.stderr
    definition = (master6.base / "slaves.d" / "v6box.conf").read_text()
    assert "host = ::1\n" in definition and "port = 2222\n" in definition
    known = (master6.state / "known_hosts").read_text()
    assert known.startswith("[::1]:2222 ssh-ed25519 ")
    slaves = afarmctl("--master", master, "--json", "slaves")
    assert "v6box" in {s["name"] for s in json.loads(slaves.stdout)}


def test_an_ipv6_listen_address_without_brackets_exits_78_naming_the_form(
        tmp_path: Path) -> None:
    farm = MasterProcess(tmp_path, slaves=0)
    text = farm.conf.read_text().replace(f"listen = 127.0.0.1:{farm.job_port}",
                                         f"listen = ::1:{farm.job_port}")
    farm.conf.write_text(text)
    cp = subprocess.run([sys.executable, "-m", "afarm.master.daemon", "--config",
                         str(farm.conf), "check-config"],
                        capture_output=True, text=True, env=ENV, timeout=60, check=False)
    assert cp.returncode == 78
    # ::1:PORT is either no IPv6 address or one without a port: both are refused.
    assert f"[job_port] listen = '::1:{farm.job_port}': " in cp.stderr
    assert "[IPV6]:PORT, e.g. 10.0.0.1:7731 or [::1]:7731" in cp.stderr
