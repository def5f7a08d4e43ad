# SPDX-License-Identifier: MIT
"""``afarm-slave enroll``: introduce this slave to a master, so nobody edits key files.

The admin makes a one-time token on the master (``afarmctl slave token``) and runs, as
root on the slave, ``afarm-slave enroll --master HOST[:PORT] --token TOKEN``. This module
sends the master the slave's name, address, SSH port, work dir and SSH host key; the master
stores the host key in its known_hosts, writes ``slaves.d/NAME.conf`` and answers with its
public key, which lands in the slave user's authorized_keys behind
``restrict,command="/usr/bin/afarm-slave-shell"``.

The request is signed with the token and dated, and the answer signed back (see
afarm.protocol.enroll), so the token never crosses the wire.
"""

from __future__ import annotations

import hmac
import json
import os
import socket
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from afarm.errors import OperationFailed, UsageError
from afarm.protocol.enroll import (
    ENROLL_PATH,
    MAC_HEADER,
    fingerprint,
    parse_public_key,
    response_mac,
    signed_request,
    token_key,
)
from afarm.protocol.names import RULE, is_plain_name, is_slave_name
from afarm.protocol.net import JOB_PORT, check_host, http_url, parse_hostport

DEFAULT_HOST_KEY = Path("/etc/ssh/ssh_host_ed25519_key.pub")
SHELL_COMMAND = "/usr/bin/afarm-slave-shell"


def read_host_key(path: Path) -> str:
    """'TYPE BASE64' of this machine's SSH host key (the comment is dropped)."""
    try:
        text = path.read_text("ascii").strip()
    except OSError as exc:
        raise UsageError(f"cannot read the SSH host key {path} ({exc.strerror}); is"
                         " openssh-server installed? (or give --host-key FILE)") from None
    kind, blob, _ = parse_public_key(text, str(path))
    return f"{kind} {blob}"


def local_address_towards(host: str, port: int) -> str:
    """The address this machine uses to reach the master: what the master should dial."""
    try:
        infos = socket.getaddrinfo(host, port, socket.AF_UNSPEC, socket.SOCK_DGRAM)
    except socket.gaierror as exc:
        raise OperationFailed(f"cannot resolve the master {host!r} ({exc})") from None
    with socket.socket(infos[0][0], socket.SOCK_DGRAM) as s:
        s.connect(infos[0][4])  # UDP: picks a route, sends nothing
        return str(s.getsockname()[0])


@dataclass(frozen=True)
class Enrolled:
    name: str
    master_key: str  # "TYPE BASE64 COMMENT"
    authorized_keys: Path
    host_key_fingerprint: str
    definition: str | None  # where the master wrote the slave's definition


def authorized_line(master_key: str, command: str = SHELL_COMMAND) -> str:
    kind, blob, comment = parse_public_key(master_key, "the master's key")
    return f'restrict,command="{command}" {kind} {blob}' + (f" {comment}" if comment else "")


def install_master_key(path: Path, master_key: str, command: str = SHELL_COMMAND) -> None:
    """Put the master's key in ``path`` behind the forced command, replacing an older line
    of the same key and keeping every other line. The file and its directory stay owned by
    whoever runs this (root), so the slave user cannot lift its own restriction."""
    _, blob, _ = parse_public_key(master_key, "the master's key")
    line = authorized_line(master_key, command)
    path.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
    try:
        old = path.read_text("utf-8").splitlines()
    except FileNotFoundError:
        old = []
    kept = [ln for ln in old if blob not in ln.split()]
    tmp = path.with_name(path.name + ".afarm-tmp")
    tmp.write_text("\n".join([*kept, line]) + "\n", encoding="utf-8")
    tmp.chmod(0o644)
    os.replace(tmp, path)  # atomic: sshd sees the old file or the new one


def check_door(home: Path, user: str) -> None:
    """UsageError unless ``home`` and its .ssh (if there) are root's and writable by root
    only: else the slave user could rename .ssh or plant files its next login reads, and
    the master's forced command would protect nothing."""
    for d in (home, home / ".ssh"):
        try:
            st = d.lstat()
        except FileNotFoundError:
            continue
        if st.st_uid != 0 or st.st_mode & 0o022 or not (st.st_mode & 0o170000 == 0o040000):
            raise UsageError(f"{d} must be a directory owned by root and writable only by "
                             f"root, or {user} could change its own SSH access; run "
                             "dpkg-reconfigure afarm-slave (or: chown root:root "
                             f"{d} && chmod 755 {d}) and keep the work dir below it")


def _post(url: str, body: bytes, mac: str, timeout: float) -> tuple[bytes, str]:
    req = urllib.request.Request(url, data=body, method="POST", headers={
        "Content-Type": "application/json", MAC_HEADER: mac})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:  # noqa: S310 (http only)
            return resp.read(), resp.headers.get(MAC_HEADER, "")
    except urllib.error.HTTPError as exc:
        try:
            message = json.loads(exc.read() or b"{}").get("error") or exc.reason
        except ValueError:
            message = exc.reason
        raise OperationFailed(f"the master refused the enrolment ({exc.code}): {message}") \
            from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise OperationFailed(f"cannot reach the master at {url.split('/api')[0]} ({reason});"
                              " is afarm-master running and its job port listening on an"
                              " address this slave can reach?") from None


def enroll(master: str, token: str, *, name: str, address: str | None = None,
           ssh_port: int = 22, host_key: Path = DEFAULT_HOST_KEY,
           work_dir: str = "/var/lib/afarm-slave/work", user: str = "afarm",
           authorized_keys: Path | None = None, command: str = SHELL_COMMAND,
           timeout: float = 30.0) -> Enrolled:
    """Enrol this machine with the master; returns what was done."""
    if not is_slave_name(name):
        raise UsageError(f"--name {name!r}: {RULE}")
    if not is_plain_name(user):
        raise UsageError(f"--user {user!r}: give the slave user's name")
    if not 0 < ssh_port < 65536:
        raise UsageError(f"--ssh-port {ssh_port}: give a port from 1 to 65535")
    token = token.strip()
    if not token:
        raise UsageError("--token: give the token printed by afarmctl slave token")
    host, port = parse_hostport(master, JOB_PORT, "--master")
    if address is None:
        address = local_address_towards(host, port)
        if "%" in address:
            raise UsageError(f"this machine reaches the master from {address}, a link-local"
                             " address the master cannot dial back; give --address")
    check_host(address, "--address", zone=False)
    if authorized_keys is None:
        import pwd

        try:
            home = Path(pwd.getpwnam(user).pw_dir)
        except KeyError:
            raise UsageError(f"there is no user {user!r} on this machine; install the"
                             " afarm-slave package (it creates the user)") from None
        check_door(home, user)
        authorized_keys = home / ".ssh" / "authorized_keys"
    key_line = read_host_key(host_key)
    body, mac = signed_request(token, {
        "name": name, "address": address, "port": ssh_port, "host_key": key_line,
        "user": user, "work_dir": work_dir}, time.time())
    raw, got_mac = _post(http_url(host, port) + ENROLL_PATH, body, mac, timeout)
    if not hmac.compare_digest(got_mac.encode(),
                               response_mac(token_key(token), mac, raw).encode()):
        raise OperationFailed("the master's answer is not signed with this token: something"
                              " between this slave and the master changed it; nothing was"
                              " installed")
    try:
        answer: Any = json.loads(raw)
        master_key = str(answer["public_key"])
    except (ValueError, KeyError, TypeError):
        raise OperationFailed("the master's answer is not what afarm-slave expects; are"
                              " both running the same afarm version?") from None
    install_master_key(authorized_keys, master_key, command)
    definition = answer.get("definition")
    return Enrolled(name=str(answer.get("name", name)), master_key=master_key,
                    authorized_keys=authorized_keys,
                    host_key_fingerprint=fingerprint(key_line.split()[1]),
                    definition=str(definition) if definition else None)
