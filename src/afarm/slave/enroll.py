# SPDX-License-Identifier: MIT
"""``afarm-slave enroll``: introduce this slave to a master, so nobody edits key files.

The admin makes a one-time token on the master (``afarmctl slave token``) and runs, as
root on the slave, ``afarm-slave enroll --master HOST[:PORT] --token TOKEN``. This module
sends the master the slave's name, address, SSH port, work dir and SSH host key; the master
stores the host key in its known_hosts, writes ``slaves.d/NAME.conf`` and answers with its
public key, which lands in the slave user's authorized_keys behind
``restrict,command="/usr/bin/afarm-slave-shell"``.

The job port speaks plain HTTP, so the token itself never crosses the wire: the request
carries ``token_id`` (a hash naming the token) and an HMAC of the body keyed by another
hash of the token, and the master's answer carries an HMAC over the request's MAC and the
answer. Someone on the path can neither use a token they saw nor swap either key. The
protocol helpers live here (stdlib only) and afarm.master.enroll imports them.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import re
import socket
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from afarm.errors import OperationFailed, UsageError

ENROLL_PATH = "/api/v1/enroll"
TOKENS_PATH = "/api/v1/enroll-tokens"
MAC_HEADER = "X-Afarm-Enroll-MAC"
DEFAULT_PORT = 7731
DEFAULT_HOST_KEY = Path("/etc/ssh/ssh_host_ed25519_key.pub")
SHELL_COMMAND = "/usr/bin/afarm-slave-shell"
KEY_TYPES = ("ssh-ed25519", "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384",
             "ecdsa-sha2-nistp521", "rsa-sha2-512", "rsa-sha2-256", "ssh-rsa")
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")
# A host name or an IPv4/IPv6 address; nothing a known_hosts or config line could misread.
ADDRESS_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9.:-]{0,252}$")
_B64_RE = re.compile(r"^[A-Za-z0-9+/]+={0,2}$")
_COMMENT_RE = re.compile(r"[^A-Za-z0-9@._:+-]")


# ------------------------------------------------------------------- shared protocol


def token_id(token: str) -> str:
    """Names a token on the wire and in the master's store; reveals nothing of it."""
    return hashlib.sha256(b"afarm-enroll-id\0" + token.encode()).hexdigest()


def token_key(token: str) -> bytes:
    """The MAC key both sides derive from the token (the master stores only this)."""
    return hashlib.sha256(b"afarm-enroll-key\0" + token.encode()).digest()


def request_mac(key: bytes, body: bytes) -> str:
    return hmac.new(key, b"afarm-enroll-request\0" + body, hashlib.sha256).hexdigest()


def response_mac(key: bytes, req_mac: str, body: bytes) -> str:
    msg = b"afarm-enroll-response\0" + req_mac.encode() + b"\0" + body
    return hmac.new(key, msg, hashlib.sha256).hexdigest()


def parse_public_key(line: str, what: str = "key") -> tuple[str, str, str]:
    """(type, base64 blob, cleaned comment) of an OpenSSH public key line, or UsageError."""
    words = line.strip().split()
    if len(words) < 2 or "\n" in line.strip() or "\r" in line:
        raise UsageError(f"{what}: expected one line 'TYPE BASE64 [COMMENT]'")
    kind, blob = words[0], words[1]
    if kind not in KEY_TYPES:
        raise UsageError(f"{what}: key type {kind!r} is not one of {', '.join(KEY_TYPES)}")
    if not _B64_RE.match(blob) or len(blob) > 8192:
        raise UsageError(f"{what}: the key is not base64")
    try:
        raw = base64.b64decode(blob, validate=True)
    except ValueError:
        raise UsageError(f"{what}: the key is not base64") from None
    # The blob starts with its own type as an SSH string; it must agree with the line.
    n = int.from_bytes(raw[:4], "big") if len(raw) >= 4 else -1
    inner = raw[4:4 + n].decode("ascii", "replace") if n > 0 else ""
    if inner != ("ssh-rsa" if kind.startswith("rsa-sha2") else kind):
        raise UsageError(f"{what}: the key data is not a {kind} key")
    comment = _COMMENT_RE.sub("", " ".join(words[2:]))[:100]
    return kind, blob, comment


def fingerprint(blob: str) -> str:
    """SHA256:... as ssh-keygen -l shows it, so an admin can compare."""
    digest = hashlib.sha256(base64.b64decode(blob)).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


def parse_master(value: str) -> tuple[str, int]:
    """HOST, HOST:PORT, [V6] or [V6]:PORT."""
    host, port = value, DEFAULT_PORT
    if value.startswith("["):
        end = value.find("]")
        if end < 0:
            raise UsageError(f"--master {value!r}: missing ']'")
        host, rest = value[1:end], value[end + 1:]
        if rest:
            if not rest.startswith(":") or not rest[1:].isdigit():
                raise UsageError(f"--master {value!r}: write [ADDRESS]:PORT")
            port = int(rest[1:])
    elif value.count(":") == 1:
        host, _, p = value.partition(":")
        if not p.isdigit():
            raise UsageError(f"--master {value!r}: write HOST[:PORT], e.g. 192.0.2.1:7731")
        port = int(p)
    if not host or not ADDRESS_RE.match(host) or not 0 < port < 65536:
        raise UsageError(f"--master {value!r}: write HOST[:PORT], e.g. 192.0.2.1:7731")
    return host, port


# --------------------------------------------------------------------------- slave side


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
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        infos = socket.getaddrinfo(host, port, family, socket.SOCK_DGRAM)
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
    if not NAME_RE.match(name) or name == "master" or name.startswith("local-"):
        raise UsageError(f"--name {name!r}: a slave name is letters, digits, '.', '_' or '-'"
                         " (at most 63, not 'master' or local-N)")
    if not 0 < ssh_port < 65536:
        raise UsageError(f"--ssh-port {ssh_port}: give a port from 1 to 65535")
    token = token.strip()
    if not token:
        raise UsageError("--token: give the token printed by afarmctl slave token")
    host, port = parse_master(master)
    if address is None:
        address = local_address_towards(host, port)
    if not ADDRESS_RE.match(address):
        raise UsageError(f"--address {address!r}: give a host name or an IP address")
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
    body = json.dumps({
        "token_id": token_id(token), "name": name, "address": address, "port": ssh_port,
        "host_key": key_line, "user": user, "work_dir": work_dir,
        "time": int(time.time())}, sort_keys=True).encode()
    key = token_key(token)
    mac = request_mac(key, body)
    url_host = f"[{host}]" if ":" in host else host
    raw, got_mac = _post(f"http://{url_host}:{port}{ENROLL_PATH}", body, mac, timeout)
    if not hmac.compare_digest(got_mac.encode(), response_mac(key, mac, raw).encode()):
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
