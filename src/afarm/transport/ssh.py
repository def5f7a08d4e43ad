# SPDX-License-Identifier: MIT
"""SSHTransport: a slave on another machine, reached over one paramiko connection.

One long-lived connection per slave, opened on first use and again after a drop. On it the
`serve` channel (JSON lines with the slave's agent) and `run` commands are new session
channels: 2 ms each instead of a 66 ms handshake. The slave runs every command through its
forced command `afarm-slave-shell`, which re-parses it with shlex; nothing here goes
through a local shell. Files move with rsync over OpenSSH (afarm.transport.rsync).

A dead slave is noticed within about ``keepalive + dead_after`` seconds: paramiko sends an
SSH keepalive every ``keepalive`` s, and TCP_USER_TIMEOUT makes the kernel drop the
connection when that data stays unacknowledged for ``dead_after`` s; the transport then
closes every channel, so a blocked recv() returns None.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
import posixpath
import re
import shlex
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections import deque
from pathlib import Path
from typing import Any

import paramiko

from afarm.transport.base import (
    AuthFailure,
    CommandTimedOut,
    HostUnreachable,
    Result,
    TooLarge,
    TransportError,
)
from afarm.transport.rsync import (
    INCOMING,
    Direction,
    SSHTarget,
    control_exit_argv,
    control_path,
    host_key_help,
    raise_for_exit,
    rsync_argv,
    transferred_bytes,
)

log = logging.getLogger(__name__)

MAX_LINE = 64 << 20  # a reply carries at most a task's log tail; more is a broken agent
# What the slave's shell accepts in a path, component by component (no hidden names).
_COMPONENT = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._+-]*$")
_SSH_ERRORS = (paramiko.SSHException, EOFError, OSError)


class _UnknownHostKey(paramiko.SSHException):
    def __init__(self, hostname: str, key: paramiko.PKey) -> None:
        super().__init__(f"{hostname} is not in known_hosts")
        self.key = key


class _Reject(paramiko.RejectPolicy):
    """RejectPolicy, keeping the offered key so the message can show its fingerprint."""

    def missing_host_key(self, client: paramiko.SSHClient, hostname: str,
                         key: paramiko.PKey) -> None:
        raise _UnknownHostKey(hostname, key)


def fingerprint(key: paramiko.PKey) -> str:
    """OpenSSH's notation (as ssh-keygen -l prints it), so the admin can compare."""
    digest = base64.b64encode(hashlib.sha256(key.asbytes()).digest())
    return f"{key.get_name()} SHA256:{digest.decode().rstrip('=')}"


def check_remote_path(path: str) -> str:
    """A path below the slave's work dir as the slave's shell accepts it, or TransportError."""
    parts = path.split("/")
    if not path or path.startswith("/") or not all(
            _COMPONENT.match(p) and p not in (".", "..") for p in parts):
        raise TransportError(f"{path!r} is not a plain relative path below the slave's work "
                             "dir (letters, digits, '.', '_', '+', '-'; no '..', no name "
                             "starting with '.' or '-')")
    return path


class SSHChannel:
    """JSON lines with the slave's agent over one SSH session channel (`serve`)."""

    def __init__(self, chan: paramiko.Channel, slave: str) -> None:
        self.chan = chan
        self.slave = slave
        self._buf = bytearray()
        self._send_lock = threading.Lock()
        self._stderr: deque[str] = deque(maxlen=20)
        self._closed = False
        # The agent logs to stderr. Unread, those bytes would fill the channel's window,
        # which stdout shares, and stall the replies; so a thread drains them into our log.
        self._stderr_thread = threading.Thread(target=self._drain_stderr, daemon=True,
                                               name=f"stderr-{slave}")
        self._stderr_thread.start()

    def _drain_stderr(self) -> None:
        pending = b""
        while True:
            try:
                data = self.chan.recv_stderr(65536)
            except _SSH_ERRORS:
                data = b""
            if not data:
                break
            pending += data
            *lines, pending = pending.split(b"\n")
            for raw in lines:
                line = raw.decode(errors="replace").rstrip()
                self._stderr.append(line)
                log.info("%s: %s", self.slave, line)
        if pending.strip():
            self._stderr.append(pending.decode(errors="replace").rstrip())
            log.info("%s: %s", self.slave, self._stderr[-1])

    def send(self, message: dict[str, Any]) -> None:
        data = json.dumps(message, separators=(",", ":")).encode() + b"\n"
        with self._send_lock:
            try:
                self.chan.sendall(data)
            except _SSH_ERRORS as exc:
                raise HostUnreachable(f"channel to {self.slave} closed: {exc}") from exc

    def recv(self) -> dict[str, Any] | None:
        while True:
            nl = self._buf.find(b"\n")
            if nl >= 0:
                line = bytes(self._buf[:nl])
                del self._buf[:nl + 1]
                if not line.strip():
                    continue
                try:
                    msg = json.loads(line)
                except ValueError as exc:
                    raise TransportError(f"{self.slave} sent a line that is not JSON: "
                                         f"{line[:200]!r}") from exc
                if not isinstance(msg, dict):
                    raise TransportError(f"{self.slave} sent JSON that is not an object: "
                                         f"{line[:200]!r}")
                return msg
            if len(self._buf) > MAX_LINE:
                raise TransportError(f"{self.slave} sent a line longer than {MAX_LINE} bytes")
            try:
                # Blocks until data, EOF, or the transport dying (which closes the channel).
                data = self.chan.recv(65536)
            except _SSH_ERRORS:
                data = b""
            if not data:
                self._report_end()
                return None
            self._buf += data

    def _report_end(self) -> None:
        if self._closed:
            return
        self._stderr_thread.join(timeout=1)
        status = self.chan.recv_exit_status() if self.chan.exit_status_ready() else None
        if status not in (None, 0):
            # The likely cause: the shell refused "serve", or it is not the forced command.
            log.warning("%s: the slave's serve verb ended with exit %s: %s", self.slave,
                        status, " | ".join(self._stderr) or "no message")

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        if self._closed:
            return
        try:
            # EOF on the agent's stdin: it stops every task it started and exits.
            self.chan.shutdown_write()
            self.chan.status_event.wait(5)
        except _SSH_ERRORS:
            pass
        self._closed = True
        self.chan.close()
        self._stderr_thread.join(timeout=1)


class SSHTransport:
    """A slave reached over SSH; paths given to put/get are relative to its work dir."""

    def __init__(self, name: str, host: str, port: int, user: str, key: Path,
                 known_hosts: Path, work_dir: str, control_dir: Path, *,
                 connect_timeout: float = 10.0, keepalive: int = 1,
                 dead_after: float = 3.0, io_timeout: int = 60) -> None:
        self.name = name
        self.host = host
        self.port = int(port)
        self.user = user
        self.key = Path(key)
        self.known_hosts = Path(known_hosts)
        # Where the slave's shell confines us; the wire carries paths relative to it, so
        # this is only for messages.
        self.work_dir = work_dir
        self.connect_timeout = connect_timeout
        self.keepalive = keepalive
        self.dead_after = dead_after
        self.io_timeout = io_timeout
        self.target = SSHTarget(user=user, host=host, port=self.port, key=self.key,
                                known_hosts=self.known_hosts, control_dir=Path(control_dir),
                                connect_timeout=max(1, round(connect_timeout)))
        self.connect_seconds: float | None = None  # how long the last connect took
        self._lock = threading.Lock()
        self._client: paramiko.SSHClient | None = None
        self._channels: set[SSHChannel] = set()
        self._used_rsync = False

    def __repr__(self) -> str:
        return f"<SSHTransport {self.name} {self.user}@{self.host}:{self.port}>"

    # -- the connection --------------------------------------------------------------------
    @property
    def _where(self) -> str:
        return f"slave {self.name} ({self.user}@{self.host} port {self.port})"

    def _transport(self) -> paramiko.Transport:
        """The live connection, opened now if there is none or the last one dropped."""
        with self._lock:
            t = self._client.get_transport() if self._client is not None else None
            if t is not None and t.is_active():
                return t
            if self._client is not None:
                self._client.close()
                self._client = None
            client = self._connect()
            self._client = client
            t = client.get_transport()
            assert t is not None
            return t

    def _socket(self) -> socket.socket:
        try:
            sock = socket.create_connection((self.host, self.port),
                                            timeout=self.connect_timeout)
        except socket.gaierror as exc:
            raise HostUnreachable(f"{self._where}: cannot resolve {self.host}: "
                                  f"{exc.strerror}") from exc
        except TimeoutError as exc:
            raise HostUnreachable(f"{self._where}: no answer within "
                                  f"{self.connect_timeout:g} s (off, asleep or cut off?)"
                                  ) from exc
        except ConnectionRefusedError as exc:
            raise HostUnreachable(f"{self._where}: connection refused (is sshd running?)"
                                  ) from exc
        except OSError as exc:
            raise HostUnreachable(f"{self._where}: {exc.strerror or exc}") from exc
        # Without it every small message waits for the peer's delayed ACK: 44 ms -> 2 ms.
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        # Unacknowledged data (our keepalives, at the latest) for dead_after seconds means
        # the slave or the link is gone: the kernel then fails the socket, not after the
        # ~15 minutes of TCP's retransmissions.
        if hasattr(socket, "TCP_USER_TIMEOUT"):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT,
                            int(self.dead_after * 1000))
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        return sock

    def _connect(self) -> paramiko.SSHClient:
        started = time.monotonic()
        client = paramiko.SSHClient()
        client.set_missing_host_key_policy(_Reject())
        try:
            client.load_host_keys(str(self.known_hosts))
        except FileNotFoundError:
            pass  # every host is then unknown, and the message says how to add this one
        except (OSError, paramiko.SSHException) as exc:
            raise AuthFailure(f"cannot read known_hosts {self.known_hosts}: {exc}") from exc
        sock = self._socket()
        try:
            client.connect(self.host, port=self.port, username=self.user,
                           key_filename=str(self.key), sock=sock,
                           timeout=self.connect_timeout, banner_timeout=self.connect_timeout,
                           auth_timeout=self.connect_timeout, allow_agent=False,
                           look_for_keys=False)
        except BaseException as exc:
            client.close()
            sock.close()
            self._raise_connect_error(exc)
            raise
        t = client.get_transport()
        assert t is not None
        t.set_keepalive(self.keepalive)
        self.connect_seconds = time.monotonic() - started
        log.debug("%s: connected in %.3f s", self._where, self.connect_seconds)
        return client

    def _raise_connect_error(self, exc: BaseException) -> None:
        if isinstance(exc, paramiko.BadHostKeyException):
            raise AuthFailure(
                f"{self._where} offered host key {fingerprint(exc.key)}, but "
                f"{self.known_hosts} expects {fingerprint(exc.expected_key)}: the host key "
                f"CHANGED. " + host_key_help(self.host, self.port, self.known_hosts)
            ) from exc
        if isinstance(exc, _UnknownHostKey):
            raise AuthFailure(
                f"{self._where} offered host key {fingerprint(exc.key)}, which is not in "
                f"{self.known_hosts} (unknown host). "
                + host_key_help(self.host, self.port, self.known_hosts)) from exc
        if isinstance(exc, paramiko.PasswordRequiredException):
            raise AuthFailure(f"the master's key {self.key} is protected by a passphrase; "
                              "the master needs a key without one") from exc
        if isinstance(exc, paramiko.AuthenticationException):
            raise AuthFailure(
                f"{self._where} refused the key {self.key} ({exc}): add its public key "
                f"to {self.user}'s authorized_keys there as restrict,command=\""
                f"/usr/bin/afarm-slave-shell\" ...") from exc
        if isinstance(exc, FileNotFoundError | PermissionError) and exc.filename:
            raise AuthFailure(f"cannot read the master's key {exc.filename}: "
                              f"{exc.strerror}") from exc
        if isinstance(exc, _SSH_ERRORS):
            raise HostUnreachable(f"{self._where}: SSH handshake failed: "
                                  f"{exc or type(exc).__name__}") from exc

    def _session(self) -> paramiko.Channel:
        t = self._transport()
        try:
            return t.open_session(timeout=self.connect_timeout)
        except _SSH_ERRORS as exc:
            raise HostUnreachable(f"{self._where}: cannot open a channel: "
                                  f"{exc or type(exc).__name__}") from exc

    # -- Transport -------------------------------------------------------------------------
    def open_channel(self) -> SSHChannel:
        chan = self._session()
        try:
            chan.exec_command("serve")
        except _SSH_ERRORS as exc:
            chan.close()
            raise HostUnreachable(f"{self._where}: cannot start serve: {exc}") from exc
        ch = SSHChannel(chan, self.name)
        self._channels = {c for c in self._channels if not c.closed}
        self._channels.add(ch)
        return ch

    def run(self, argv: list[str], stdin: bytes | None = None,
            timeout: float | None = None) -> Result:
        """Run argv through the slave's shell; a non-zero exit is a Result, not an error."""
        deadline = None if timeout is None else time.monotonic() + timeout
        chan = self._session()
        try:
            return self._run(chan, argv, stdin, timeout, deadline)
        finally:
            chan.close()

    def _run(self, chan: paramiko.Channel, argv: list[str], stdin: bytes | None,
             timeout: float | None, deadline: float | None) -> Result:
        err: list[bytes] = []

        def read_stderr() -> None:
            while data := chan.recv_stderr(65536):
                err.append(data)

        def write_stdin() -> None:
            try:
                if stdin:
                    chan.sendall(stdin)
                chan.shutdown_write()
            except _SSH_ERRORS:
                pass  # the command exited without reading it all; its status says more

        try:
            chan.exec_command(shlex.join(argv))
        except _SSH_ERRORS as exc:
            raise HostUnreachable(f"{self._where}: cannot run {argv[0]}: {exc}") from exc
        helpers = [threading.Thread(target=read_stderr, daemon=True),
                   threading.Thread(target=write_stdin, daemon=True)]
        for th in helpers:
            th.start()
        out = bytearray()
        try:
            while True:
                chan.settimeout(None if deadline is None
                                else max(0.001, deadline - time.monotonic()))
                data = chan.recv(65536)
                if not data:
                    break
                out += data
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            if not chan.status_event.wait(left):
                raise TimeoutError
        except TimeoutError as exc:
            raise CommandTimedOut(f"{argv[0]} on {self.name} ran longer than {timeout} s"
                                  ) from exc
        for th in helpers:
            th.join(timeout=1)
        # The status event is also set when the channel closes without a status: -1. With
        # the connection alive that is a command killed by a signal, else a dropped link.
        status = chan.recv_exit_status()
        t = chan.get_transport()
        if status == -1 and (t is None or not t.is_active()):
            raise HostUnreachable(f"{self._where}: the connection dropped while {argv[0]} ran")
        return Result(list(argv), status, out.decode(errors="replace"),
                      b"".join(err).decode(errors="replace"))

    def put(self, src: Path, dst: str) -> int:
        check_remote_path(dst)
        directory, name = posixpath.split(dst)
        if directory != INCOMING:
            raise TransportError(f"{dst!r}: files go to a slave only as {INCOMING}/NAME; "
                                 "its shell accepts puts into no other dir")
        src = Path(src).absolute()
        if not src.is_file():
            raise TransportError(f"cannot send {src}: not a file")
        # The file lands in the directory under its local name (see rsync_argv), so a
        # source with another name is hard-linked under the wanted one first.
        if src.name == name:
            return self._rsync("put", src, f"{INCOMING}/", dst)
        stage = self._stage(src, name)
        try:
            return self._rsync("put", stage / name, f"{INCOMING}/", dst)
        finally:
            shutil.rmtree(stage, ignore_errors=True)

    def _stage(self, src: Path, name: str) -> Path:
        for parent in (src.parent, self.target.control_dir.parent):
            try:
                stage = Path(tempfile.mkdtemp(prefix=".afarm-put-", dir=parent))
            except OSError:
                continue
            try:
                os.link(src, stage / name)
                return stage
            except OSError:
                shutil.rmtree(stage, ignore_errors=True)
        # Another file system and no writable dir beside the source: a copy it is.
        stage = Path(tempfile.mkdtemp(prefix="afarm-put-"))
        shutil.copyfile(src, stage / name)
        return stage

    def get(self, src: str, dst: Path, max_bytes: int | None = None) -> int:
        check_remote_path(src)
        dst = Path(dst).absolute()
        dst.parent.mkdir(parents=True, exist_ok=True)
        sent = self._rsync("get", dst, src, src, max_bytes)
        if max_bytes is not None and not dst.exists():
            raise TooLarge(f"{src} on {self.name} is larger than {max_bytes} bytes; refused")
        return sent

    def _rsync(self, direction: Direction, local: Path, remote: str, label: str,
               max_size: int | None = None) -> int:
        argv = rsync_argv(self.target, direction, local, remote, io_timeout=self.io_timeout,
                          max_size=max_size)
        self._used_rsync = True
        # The C locale fixes rsync's digit grouping and message language for parsing.
        env = {**os.environ, "LC_ALL": "C"}
        try:
            cp = subprocess.run(argv, capture_output=True, text=True, env=env,  # noqa: S603 - argv list from rsync_argv
                                stdin=subprocess.DEVNULL, check=False)
        except FileNotFoundError as exc:
            raise TransportError("rsync or ssh is not installed on the master; install the "
                                 "rsync and openssh-client packages") from exc
        raise_for_exit(cp.returncode, cp.stderr, direction=direction, slave=self.name,
                       target=self.target, remote=label, local=local)
        return transferred_bytes(cp.stdout, direction)

    def close(self) -> None:
        for ch in list(self._channels):
            ch.close()
        self._channels.clear()
        with self._lock:
            if self._client is not None:
                self._client.close()
                self._client = None
        if self._used_rsync:
            self._used_rsync = False
            try:
                # The ControlPersist master would otherwise linger for its 60 s.
                subprocess.run(control_exit_argv(self.target),  # noqa: S603 - argv list
                               capture_output=True, timeout=10, check=False,
                               stdin=subprocess.DEVNULL)
            except (OSError, subprocess.TimeoutExpired, TransportError) as exc:
                log.debug("%s: stopping the ssh control master: %s", self.name, exc)
            else:
                self._wait_for_control_master_gone()

    def _wait_for_control_master_gone(self, timeout: float = 3.0) -> None:
        # ssh -O exit returns once the master has accepted the request, but the master
        # unlinks its socket only on its way out; an rsync started in that window would
        # find a socket whose master no longer serves sessions.
        path = control_path(self.target)
        deadline = time.monotonic() + timeout
        while path.exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        if path.exists():
            log.debug("%s: ssh control master still has its socket after %.0f s",
                      self.name, timeout)
