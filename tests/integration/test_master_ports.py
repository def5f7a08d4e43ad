# SPDX-License-Identifier: MIT
"""Attacks on the two ports, each of which must fail: requests a web page in a browser can
make (CSRF, DNS rebinding), half-sent requests (slowloris), and requests for unbounded work.
Requests are built by hand, header by header, as a browser or an attacker sends them."""

import http.client
import json
import os
import resource
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.farm import ENV, MasterProcess

APPS = {"factor": "kind = command\nexecutable = /usr/bin/factor\nargv = {item},\n"}
JOB = {"name": "csrf", "application": "factor", "params": {"items": ["6"]}}


def send(port: int, method: str, path: str, body: bytes | None = None,
         headers: dict[str, str] | None = None, host: str | None = None,
         source: str = "127.0.0.1") -> tuple[int, dict[str, Any], dict[str, str]]:
    """One request with exactly these headers (Host too); returns status, JSON, headers."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10,
                                      source_address=(source, 0))
    conn.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
    conn.putheader("Host", host if host is not None else f"127.0.0.1:{port}")
    for k, v in (headers or {}).items():
        conn.putheader(k, v)
    if body is not None:
        conn.putheader("Content-Length", str(len(body)))
    conn.endheaders(body)
    resp = conn.getresponse()
    raw = resp.read()
    conn.close()
    try:
        data = json.loads(raw) if raw else {}
    except ValueError:
        data = {"raw": raw.decode(errors="replace")}
    return resp.status, data, dict(resp.headers)


@pytest.fixture(scope="module")
def farm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MasterProcess]:
    m = MasterProcess(tmp_path_factory.mktemp("ports"), slaves=1, apps=APPS,
                      extra_conf="[http]\nheader_timeout = 2\nbody_timeout = 2\n"
                                 "keepalive_timeout = 2\n"
                                 "max_connections_per_client = 30\n").start()
    yield m
    m.stop()


def auth(farm: MasterProcess) -> dict[str, str]:
    return {"Authorization": f"Bearer {farm.local_token()}"}


def jobs(farm: MasterProcess) -> list[dict[str, Any]]:
    return list(farm.client.get("/api/v1/jobs"))


# ------------------------------------------------------------------ CSRF and DNS rebinding


def test_a_web_pages_text_plain_job_with_a_rebound_host_is_refused(farm: MasterProcess) -> None:
    before = jobs(farm)
    status, data, _ = send(farm.job_port, "POST", "/api/v1/jobs", json.dumps(JOB).encode(),
                           {"Content-Type": "text/plain", "Origin": "http://evil.example"},
                           host=f"evil.example:{farm.job_port}")
    assert status == 421 and "Host" in data["error"]
    assert jobs(farm) == before
    assert "refused POST /api/v1/jobs from 127.0.0.1 (421)" in farm.logtext()


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded",
                                          "multipart/form-data; boundary=x", None])
def test_a_job_in_a_body_a_page_can_send_without_preflight_is_refused(
        farm: MasterProcess, content_type: str | None) -> None:
    headers = {**auth(farm), **({"Content-Type": content_type} if content_type else {})}
    status, data, _ = send(farm.job_port, "POST", "/api/v1/jobs", json.dumps(JOB).encode(),
                           headers)
    assert status == 415 and "application/json" in data["error"]


def test_a_foreign_origin_is_refused_even_with_json_and_a_good_host(
        farm: MasterProcess) -> None:
    before = jobs(farm)
    status, data, _ = send(farm.job_port, "POST", "/api/v1/jobs", json.dumps(JOB).encode(),
                           {"Content-Type": "application/json",
                            "Origin": "http://evil.example"})
    assert status == 403 and "evil.example" in data["error"]
    assert jobs(farm) == before


def test_cancel_from_a_web_page_is_refused(farm: MasterProcess) -> None:
    job = farm.submit("--app", "factor", "--items", "6")
    for headers, host in (({"Origin": "http://evil.example", "Content-Type": "text/plain"},
                           f"evil.example:{farm.job_port}"),
                          ({"Origin": "null", "Content-Type": "application/json"}, None),
                          ({"Content-Type": "application/json"}, None)):  # no token
        status, data, _ = send(farm.job_port, "POST", f"/api/v1/jobs/{job}/cancel", b"{}",
                               headers, host=host)
        assert status in (401, 403, 421) and data["error"], (headers, status)
    assert farm.client.get(f"/api/v1/jobs/{job}")["status"] != "canceled"


def test_enroll_tokens_refuse_a_rebound_host_and_never_echo_it(farm: MasterProcess) -> None:
    status, data, _ = send(farm.job_port, "POST", "/api/v1/enroll-tokens", b"{}",
                           {**auth(farm), "Content-Type": "application/json"},
                           host=f"evil.example:{farm.job_port}")
    assert status == 421 and "token" not in data
    status, data, _ = send(farm.job_port, "POST", "/api/v1/enroll-tokens", b"{}",
                           {**auth(farm), "Content-Type": "application/json"})
    assert status == 201 and "evil" not in json.dumps(data)


@pytest.mark.parametrize("name", ["evil.example", "0.0.0.0", "[::]", "10.9.9.9"])
def test_a_rebound_page_cannot_read_the_results_port(farm: MasterProcess, name: str) -> None:
    status, data, _ = send(farm.results_port, "GET", "/api/v1/jobs",
                           host=f"{name}:{farm.results_port}")
    assert status == 421 and "error" in data


def test_a_page_posting_to_0_0_0_0_is_refused(farm: MasterProcess) -> None:
    """The "0.0.0.0 day": Linux routes http://0.0.0.0:PORT to loopback."""
    status, data, _ = send(farm.job_port, "POST", "/api/v1/jobs", json.dumps(JOB).encode(),
                           {**auth(farm), "Content-Type": "application/json"},
                           host=f"0.0.0.0:{farm.job_port}")
    assert status == 421


def test_mutations_need_a_token_on_loopback_too(farm: MasterProcess) -> None:
    status, data, _ = send(farm.job_port, "POST", "/api/v1/jobs", json.dumps(JOB).encode(),
                           {"Content-Type": "application/json"})
    assert status == 401 and "token" in data["error"]
    assert "refused POST /api/v1/jobs from 127.0.0.1: no bearer token" in farm.logtext()


def test_the_masters_own_page_may_call_the_job_port(farm: MasterProcess) -> None:
    origin = f"http://127.0.0.1:{farm.results_port}"
    status, _, headers = send(farm.job_port, "OPTIONS", "/api/v1/jobs", None,
                              {"Origin": origin, "Access-Control-Request-Method": "POST",
                               "Access-Control-Request-Headers": "authorization,content-type"})
    assert status == 204 and headers["Access-Control-Allow-Origin"] == origin
    status, data, headers = send(farm.job_port, "POST", "/api/v1/jobs",
                                 json.dumps(JOB).encode(),
                                 {**auth(farm), "Content-Type": "application/json",
                                  "Origin": origin})
    assert status == 201, data
    assert headers["Access-Control-Allow-Origin"] == origin


def test_afarmctl_uses_the_masters_client_token_with_no_user_step(
        farm: MasterProcess) -> None:
    token_file = farm.state / "client-token"
    assert token_file.stat().st_mode & 0o777 == 0o640
    # What afarmctl does on the master's machine (the state dir from master.conf).
    from afarm.cli.client import Client, master_state_dir

    assert master_state_dir(farm.conf) == farm.state
    client = Client(f"127.0.0.1:{farm.job_port}", f"127.0.0.1:{farm.results_port}")
    assert client.local_token(master_state_dir(farm.conf)) == token_file.read_text().strip()
    remote = Client(f"10.231.0.9:{farm.job_port}")
    assert remote.local_token(farm.state) is None  # never sent to another machine


# ---------------------------------------------------------------------- unbounded work


def test_a_json_body_is_limited_to_a_few_mib(farm: MasterProcess) -> None:
    big = json.dumps({**JOB, "params": {"items": ["1" * 4000] * 2000}}).encode()
    started = time.monotonic()
    status, data, _ = send(farm.job_port, "POST", "/api/v1/jobs", big,
                           {**auth(farm), "Content-Type": "application/json"})
    assert status == 413 and "larger than" in data["error"]
    assert time.monotonic() - started < 5


@pytest.mark.parametrize(("field", "value"), [("timeout", 2 ** 62), ("timeout", 604801),
                                              ("priority", 1000), ("name", "n" * 201)])
def test_out_of_range_numbers_are_refused_with_a_message(farm: MasterProcess, field: str,
                                                         value: Any) -> None:
    status, data, _ = send(farm.job_port, "POST", "/api/v1/jobs",
                           json.dumps({**JOB, field: value}).encode(),
                           {**auth(farm), "Content-Type": "application/json"})
    assert status == 400 and data["error"]
    assert f"refused POST /api/v1/jobs from 127.0.0.1: --{field}" in farm.logtext() \
        or "refused POST /api/v1/jobs from 127.0.0.1: name" in farm.logtext()


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def test_2000_frames_of_16x16_tiles_are_refused_before_planning(farm: MasterProcess,
                                                                 tmp_path: Path) -> None:
    assert farm.proc is not None
    rss = _rss_kib(farm.proc.pid)
    request = {"name": "huge.blend", "application": "blender",
               "params": {"frames": "1-2000", "tiles": "16x16"},
               "files": [{"name": "huge.blend", "sha256": "0" * 64}]}
    started = time.monotonic()
    for query in ("?dry_run=1", ""):
        status, data, _ = send(farm.job_port, "POST", "/api/v1/jobs" + query,
                               json.dumps(request).encode(),
                               {**auth(farm), "Content-Type": "application/json"})
        assert status == 400 and "max_tasks_per_job" in data["error"]
    assert time.monotonic() - started < 1.0
    assert _rss_kib(farm.proc.pid) - rss < 20_000
    assert "max_tasks_per_job" in farm.logtext()


def test_a_body_sent_slowly_is_cut(farm: MasterProcess) -> None:
    s = socket.create_connection(("127.0.0.1", farm.job_port), timeout=10)
    s.sendall(f"POST /api/v1/jobs HTTP/1.1\r\nHost: 127.0.0.1:{farm.job_port}\r\n"
              f"Authorization: Bearer {farm.local_token()}\r\n"
              "Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{".encode())
    started = time.monotonic()
    answer = s.recv(4096)  # the master answers 408 or just closes; it never waits forever
    assert time.monotonic() - started < 6
    assert answer == b"" or b" 408 " in answer.split(b"\r\n")[0]
    s.close()


# ------------------------------------------------------------------------------ slowloris


def half_open(port: int, source: str) -> socket.socket:
    s = socket.socket()
    s.setblocking(True)
    s.bind((source, 0))
    s.connect(("127.0.0.1", port))
    s.sendall(f"GET /api/v1/jobs HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nX-a: ".encode())
    return s


def test_one_address_cannot_take_all_connections(farm: MasterProcess) -> None:
    held = [half_open(farm.results_port, "127.0.0.5") for _ in range(60)]
    try:
        time.sleep(0.3)
        refused = 0
        for s in held:
            s.settimeout(0.05)
            try:
                if b"503" in s.recv(200):
                    refused += 1
            except TimeoutError:
                pass
        assert refused >= 60 - 30
        status, _, _ = send(farm.results_port, "GET", "/api/v1/jobs")
        assert status == 200
    finally:
        for s in held:
            s.close()


def test_headers_trickled_byte_by_byte_are_cut_after_the_header_timeout(
        farm: MasterProcess) -> None:
    s = half_open(farm.results_port, "127.0.0.6")
    s.settimeout(0.5)
    started = time.monotonic()
    closed = False
    while time.monotonic() - started < 8:
        try:
            s.sendall(b"a")
            if s.recv(100) == b"":
                closed = True
                break
        except TimeoutError:
            continue
        except (ConnectionResetError, BrokenPipeError):
            closed = True
            break
    s.close()
    assert closed and time.monotonic() - started < 5


def test_a_second_request_half_sent_on_a_kept_alive_connection_is_cut(
        farm: MasterProcess) -> None:
    s = socket.create_connection(("127.0.0.1", farm.results_port), timeout=10)
    s.sendall(f"GET /api/v1/slaves HTTP/1.1\r\nHost: 127.0.0.1:{farm.results_port}\r\n"
              "\r\n".encode())
    assert s.recv(4096).startswith(b"HTTP/1.1 200")
    s.sendall(f"GET /api/v1/jobs HTTP/1.1\r\nHost: 127.0.0.1:{farm.results_port}\r\n"
              .encode())
    started = time.monotonic()
    while s.recv(4096):
        pass
    assert time.monotonic() - started < 5
    s.close()


def test_1100_half_sent_requests_do_not_stop_either_port(tmp_path: Path) -> None:
    """The attack that stopped both ports: more half-sent requests than the master has file
    descriptors (1,024), from many loopback addresses; the log stays small."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard < 3000:
        pytest.fail(f"this test needs 3000 file descriptors; the hard limit is {hard}")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, 3000), hard))
    farm = MasterProcess(tmp_path, slaves=1, apps=APPS,
                         extra_conf="[http]\nheader_timeout = 3\n")

    def fd_limit() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (1024, 1024))

    with open(farm.log, "ab") as log:
        farm.proc = subprocess.Popen(
            [sys.executable, "-m", "afarm.master.daemon", "--config", str(farm.conf)],
            stdout=log, stderr=subprocess.STDOUT, env=ENV, start_new_session=True,
            preexec_fn=fd_limit)
    held: list[socket.socket] = []
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                farm.client.get("/api/v1/slaves")
                break
            except Exception:
                assert time.monotonic() < deadline, farm.logtext()
                time.sleep(0.1)
        for i in range(1100):
            port = farm.job_port if i % 2 else farm.results_port
            try:
                held.append(half_open(port, f"127.0.{i // 40}.{2 + i % 40}"))
            except OSError:
                pass
        # While the attack goes on, a client that sends its request at once is served: it
        # takes the place of the oldest half-open connection.
        status, _, _ = send(farm.results_port, "GET", "/api/v1/jobs")
        assert status == 200
        # Past the header timeout the half-open connections are gone.
        time.sleep(3.5)
        status, data, _ = send(farm.job_port, "POST", "/api/v1/jobs",
                               json.dumps(JOB).encode(),
                               {"Authorization": f"Bearer {farm.local_token()}",
                                "Content-Type": "application/json"})
        assert status == 201, data
        assert farm.proc.poll() is None
        size = os.path.getsize(farm.log)
        assert size < 50_000, f"the log grew to {size} bytes"
        assert "refused" in farm.logtext() or "closed" in farm.logtext()
    finally:
        for s in held:
            s.close()
        farm.stop()
