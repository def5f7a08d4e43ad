# SPDX-License-Identifier: MIT
"""The slave's claim port: where a master that accepted this slave hands it a token.

``POST /afarm/v1/claim`` with ``{"name", "fingerprint", "master": "HOST:PORT", "token"}``
makes the slave enrol with that master exactly as ``afarm-slave enroll --master HOST:PORT
--token TOKEN`` does (afarm.slave.enroll: signed request, signed answer, the master's key
installed behind the forced command). What it refuses, and why:

- a claim naming another slave or host key (the master accepted someone else);
- a ``master`` that is not the address the claim came from (no slave can be sent to
  enrol with a third machine);
- any claim once this slave is enrolled: the first master to accept a fresh slave wins
  (trust on first use), and moving it is a deliberate ``afarm-slave enroll`` by token;
- bodies over 4 KiB, slow senders (10 s for a whole request), more than one claim at a
  time, and more than 32 connections at once (each has its own thread, so a sender that
  trickles nothing keeps no other from the port).

A master's job port speaks plain HTTP, so the token it sends here can be seen on the
wire; the master bound it to this slave's name and host key, so it is worth nothing to
anyone else.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import socket
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from afarm.errors import AfarmError
from afarm.protocol.net import parse_hostport

log = logging.getLogger(__name__)
CLAIM_PATH = "/afarm/v1/claim"
MAX_CLAIM = 4096
CLAIM_PORT = 7733
REQUEST_DEADLINE = 10.0  # seconds for a whole request, however slowly it trickles in
MAX_CONNECTIONS = 32
Enrol = Callable[[str, str], str]  # (master HOST:PORT, token) -> the enrolled name


def already_enrolled(authorized_keys: Path, command: str) -> bool:
    """Whether a master's key already sits behind our forced command."""
    try:
        lines = authorized_keys.read_text("utf-8").splitlines()
    except OSError:
        return False
    return any(f'command="{command}"' in line for line in lines)


def check_claim(raw: Any, name: str, fingerprint: str, peer: str) -> tuple[str, str]:
    """(master HOST:PORT, token) of a claim meant for this slave, or ValueError why not."""
    if not isinstance(raw, dict):
        raise ValueError("the claim must be a JSON object")
    fields = {k: raw.get(k) for k in ("name", "fingerprint", "master", "token")}
    if not all(isinstance(v, str) and 0 < len(v) <= 300 for v in fields.values()):
        raise ValueError("name, fingerprint, master and token must be short texts")
    if fields["name"] != name or fields["fingerprint"] != fingerprint:
        raise ValueError(f"this is slave {name} with host key {fingerprint}; the claim was"
                         f" accepted for {fields['name']} with {fields['fingerprint']}")
    try:
        host, _ = parse_hostport(str(fields["master"]), 7731, "master")
    except AfarmError as exc:
        raise ValueError(str(exc)) from None
    try:
        same = ipaddress.ip_address(host) == ipaddress.ip_address(peer)
    except ValueError:
        same = False
    if not same:
        raise ValueError(f"the claim names the master {host}, but came from {peer}")
    return str(fields["master"]), str(fields["token"])


def _cut(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass


class _Server(ThreadingHTTPServer):
    """One thread per connection, at most MAX_CONNECTIONS, each cut at REQUEST_DEADLINE:
    the per-read timeout alone let one sender that sends a byte now and then hold a
    single-threaded port for good."""

    daemon_threads = True

    def __init__(self, address: tuple[str, int], handler: Any) -> None:
        super().__init__(address, handler)
        self._slots = threading.BoundedSemaphore(MAX_CONNECTIONS)

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self._slots.acquire(blocking=False):
            self.shutdown_request(request)
            return
        super().process_request(request, client_address)

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        timer = threading.Timer(REQUEST_DEADLINE, _cut, (request,))
        timer.daemon = True
        timer.start()
        try:
            super().process_request_thread(request, client_address)
        finally:
            timer.cancel()
            self._slots.release()


class ClaimServer:
    """Listen on ``port`` until one claim succeeded (then ``on_claimed(name)``) or stop()."""

    def __init__(self, name: str, fingerprint: str, enrol: Enrol, port: int = CLAIM_PORT,
                 on_claimed: Callable[[str], None] | None = None, host: str = "") -> None:
        self.name, self.fingerprint, self.enrol = name, fingerprint, enrol
        self.on_claimed = on_claimed
        self.claimed = False
        self._busy = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            timeout = 10  # a slow sender cannot hold the one claim slot for long
            server_version = "afarm-slave"

            def log_message(self, format: str, *args: Any) -> None:
                log.debug("claim port: " + format, *args)

            def _answer(self, status: int, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                self._answer(405, {"error": "POST a claim"})

            def do_POST(self) -> None:  # noqa: N802
                status, body = server.handle(self)
                self._answer(status, body)

        self.httpd = _Server((host, port), Handler)
        self.port = int(self.httpd.server_address[1])
        self._thread: threading.Thread | None = None

    def handle(self, req: BaseHTTPRequestHandler) -> tuple[int, dict[str, Any]]:
        peer = req.client_address[0]
        if req.path != CLAIM_PATH:
            return 404, {"error": f"POST {CLAIM_PATH}"}
        length = req.headers.get("Content-Length", "")
        if not length.isdigit() or int(length) > MAX_CLAIM:
            return 413, {"error": f"a claim is at most {MAX_CLAIM} bytes"}
        try:
            raw = json.loads(req.rfile.read(int(length)) or b"null")
        except (ValueError, OSError, RecursionError):  # RecursionError: [[[[... nested
            return 400, {"error": "the claim is not JSON"}
        if self.claimed:
            return 409, {"error": f"{self.name} is enrolled already; to move it to another"
                                  " master enrol it there by token"}
        if not self._busy.acquire(blocking=False):
            return 409, {"error": "another claim is being handled"}
        try:
            try:
                master, token = check_claim(raw, self.name, self.fingerprint, peer)
            except ValueError as exc:
                log.warning("claim from %s refused: %s", peer, exc)
                return 403, {"error": str(exc)}
            log.info("master %s accepted this slave; enrolling", master)
            try:
                enrolled = self.enrol(master, token)
            except Exception as exc:
                log.warning("enrolling with %s failed: %s", master, exc)
                return 502, {"error": str(exc)[:500]}
            self.claimed = True
            log.info("enrolled as %s with the master at %s; claims are closed", enrolled,
                     master)
        finally:
            self._busy.release()
        if self.on_claimed is not None:
            self.on_claimed(enrolled)
        threading.Thread(target=self.httpd.shutdown, daemon=True).start()
        return 200, {"enrolled": enrolled}

    def start(self) -> None:
        self._thread = threading.Thread(target=self.httpd.serve_forever, name="claim-port",
                                        daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            self.httpd.shutdown()
        self.httpd.server_close()
