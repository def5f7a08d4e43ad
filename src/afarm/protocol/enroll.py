# SPDX-License-Identifier: MIT
"""Enrolment's wire: how ``afarm-slave enroll`` signs its request and the master its answer.

The job port speaks plain HTTP, so the token itself never crosses the wire: the request
carries ``token_id`` (a hash naming the token), the time it was made, and an HMAC of the
body keyed by another hash of the token; the master's answer carries an HMAC over the
request's MAC and the answer. Someone on the path can neither use a token they saw nor
swap either key, and a request kept back and sent later is refused by its age. Both
sides (afarm.slave.enroll, afarm.master.enroll) use these helpers; stdlib only.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
from collections.abc import Mapping

from afarm.errors import UsageError

ENROLL_PATH = "/api/v1/enroll"
TOKENS_PATH = "/api/v1/enroll-tokens"
MAC_HEADER = "X-Afarm-Enroll-MAC"
# How old (or, between two clocks, how far ahead) a request may be. The master uses a token
# up only on success, so without this a refused request could be replayed for the token's
# whole life (up to a week) once the reason for the refusal is gone.
MAX_AGE = 300
KEY_TYPES = ("ssh-ed25519", "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384",
             "ecdsa-sha2-nistp521", "rsa-sha2-512", "rsa-sha2-256", "ssh-rsa")
_B64_RE = re.compile(r"[A-Za-z0-9+/]+={0,2}")
_COMMENT_RE = re.compile(r"[^A-Za-z0-9@._:+-]")


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


def signed_request(token: str, fields: Mapping[str, object], now: float) -> tuple[bytes, str]:
    """The request body (``fields`` plus token_id and time) and the MAC to send with it."""
    body = json.dumps({**fields, "token_id": token_id(token), "time": int(now)},
                      sort_keys=True).encode()
    return body, request_mac(token_key(token), body)


def age_problem(sent: object, now: float, max_age: int = MAX_AGE) -> str | None:
    """Why a request made at ``sent`` (its ``time`` field) is refused at ``now``; None if
    it is fresh. Call it only after the MAC is checked: the time is signed too."""
    if isinstance(sent, bool) or not isinstance(sent, int):
        return ("the enrolment request carries no time; run afarm-slave enroll of the same"
                " afarm version as the master")
    age = int(now) - sent
    if age > max_age:
        return (f"the enrolment request was made {age} s ago (at most {max_age} s are"
                " accepted), so it is refused as a possible replay; if it was just made,"
                " the slave's clock is behind the master's: set both clocks right (e.g."
                " timedatectl set-ntp true) and enrol again")
    if -age > max_age:
        return (f"the enrolment request is dated {-age} s ahead of the master's clock (at"
                f" most {max_age} s are accepted): set both clocks right (e.g. timedatectl"
                " set-ntp true) and enrol again")
    return None


def parse_public_key(line: str, what: str = "key") -> tuple[str, str, str]:
    """(type, base64 blob, cleaned comment) of an OpenSSH public key line, or UsageError."""
    words = line.strip().split()
    if len(words) < 2 or "\n" in line.strip() or "\r" in line:
        raise UsageError(f"{what}: expected one line 'TYPE BASE64 [COMMENT]'")
    kind, blob = words[0], words[1]
    if kind not in KEY_TYPES:
        raise UsageError(f"{what}: key type {kind!r} is not one of {', '.join(KEY_TYPES)}")
    if not _B64_RE.fullmatch(blob) or len(blob) > 8192:
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
