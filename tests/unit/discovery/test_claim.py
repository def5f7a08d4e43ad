# SPDX-License-Identifier: MIT
"""The claim port (root, on the LAN) stays available to the master that accepted the slave:
a sender that opens connections and trickles nothing holds no slot the master needs."""

import json
import socket
import time
import urllib.error
import urllib.request

import pytest

from afarm.discovery.claim import CLAIM_PATH, ClaimServer

FP = "SHA256:" + "A" * 43


def test_a_slow_sender_does_not_keep_the_master_from_claiming() -> None:
    enrolled = []

    def enrol(master: str, token: str) -> str:
        enrolled.append((master, token))
        return "render1"

    server = ClaimServer("render1", FP, enrol, port=0, host="127.0.0.1")
    server.start()
    stalls = []
    try:
        for _ in range(3):  # slowloris: a request line, then nothing
            s = socket.create_connection(("127.0.0.1", server.port))
            s.sendall(f"POST {CLAIM_PATH} HTTP/1.1\r\nHost: x\r\n".encode())
            stalls.append(s)
        time.sleep(0.2)
        body = json.dumps({"name": "render1", "fingerprint": FP, "master": "127.0.0.1:7731",
                           "token": "t"}).encode()
        req = urllib.request.Request(f"http://127.0.0.1:{server.port}{CLAIM_PATH}",
                                     data=body, method="POST",
                                     headers={"Content-Type": "application/json"})
        started = time.monotonic()
        with urllib.request.urlopen(req, timeout=5) as resp:  # noqa: S310
            assert resp.status == 200
        assert time.monotonic() - started < 3
        assert enrolled == [("127.0.0.1:7731", "t")]
    finally:
        for s in stalls:
            s.close()
        server.stop()


def test_a_request_trickled_in_is_cut_at_the_deadline(monkeypatch: pytest.MonkeyPatch) -> None:
    import afarm.discovery.claim as claim
    monkeypatch.setattr(claim, "REQUEST_DEADLINE", 0.5)
    server = ClaimServer("render1", FP, lambda m, t: "render1", port=0, host="127.0.0.1")
    server.start()
    try:
        s = socket.create_connection(("127.0.0.1", server.port))
        s.settimeout(0.05)
        started, cut = time.monotonic(), False
        while time.monotonic() - started < 5:  # one byte every 0.2 s, under the read timeout
            try:
                s.sendall(b"X")
                if s.recv(1) == b"":
                    cut = True
                    break
            except TimeoutError:
                pass
            except OSError:
                cut = True
                break
            time.sleep(0.2)
        s.close()
        assert cut and time.monotonic() - started < 2
    finally:
        server.stop()


def test_a_deeply_nested_body_is_answered_as_not_json() -> None:
    server = ClaimServer("render1", FP, lambda m, t: "render1", port=0, host="127.0.0.1")
    server.start()
    try:
        req = urllib.request.Request(f"http://127.0.0.1:{server.port}{CLAIM_PATH}",
                                     data=b"[" * 4000, method="POST")
        try:
            urllib.request.urlopen(req, timeout=5)  # noqa: S310
            status = 200
        except urllib.error.HTTPError as exc:
            status = exc.code
        assert status == 400
    finally:
        server.stop()
