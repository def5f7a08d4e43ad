# SPDX-License-Identifier: MIT
"""Enrolment on the master: one-time tokens, and slaves that introduce themselves.

``POST /api/v1/enroll-tokens`` (client bearer token, like every job-port call) makes a
token. ``POST /api/v1/enroll`` is what ``afarm-slave enroll`` sends; it is authenticated by
that token alone (an HMAC of the body, see afarm.protocol.enroll), so the client middleware
must let it through: wrap it with :func:`skip_client_auth`. A good request adds the
slave's host key to ``<state_dir>/known_hosts``, writes ``<slaves_dir>/NAME.conf`` when
it may, hands the slave to the farm (``on_enrolled``) and answers with the master's public
key. Tokens are stored only as two hashes with an expiry, and used up by one enrolment.
"""

from __future__ import annotations

import fcntl
import hmac
import json
import logging
import os
import secrets
import subprocess
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from aiohttp import web

from afarm.config.loader import load
from afarm.errors import ConfigError, UsageError
from afarm.master.farm import Farm
from afarm.protocol.enroll import (
    ENROLL_PATH,
    MAC_HEADER,
    TOKENS_PATH,
    age_problem,
    fingerprint,
    parse_public_key,
    request_mac,
    response_mac,
    token_id,
    token_key,
)
from afarm.protocol.names import RULE, is_plain_name, is_slave_name
from afarm.protocol.net import host_problem

log = logging.getLogger(__name__)

TOKENS_FILE = "enroll-tokens"
DEFAULT_TTL = 3600  # seconds a token stays valid
MAX_TTL = 7 * 24 * 3600
MAX_BODY = 64 << 10
MARKER = "# Written by afarm-slave enroll"
OnEnrolled = Callable[[str, dict[str, Any]], Awaitable[None] | None]


# ------------------------------------------------------------------------------ tokens


@contextmanager
def _locked(state_dir: Path) -> Iterator[Path]:
    """The token file, under an exclusive lock (the daemon and a CLI may both write)."""
    state_dir.mkdir(parents=True, exist_ok=True)
    with open(state_dir / (TOKENS_FILE + ".lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield state_dir / TOKENS_FILE


def _read(path: Path, now: float) -> list[list[str]]:
    """Unexpired records: [token_id, key hex, expires, label, replace, bind] (replace: the
    one known slave name this token may enrol again under a new host key, or ""; bind:
    "NAME=SHA256:..." when only that slave with that host key may use it, or "")."""
    try:
        lines = path.read_text("utf-8").splitlines()
    except FileNotFoundError:
        return []
    out = []
    for line in lines:
        parts = line.split(" ", 5)
        if len(parts) >= 3 and parts[2].isdigit() and int(parts[2]) > now:
            out.append(parts + [""] * (6 - len(parts)))
    return out


def _write(path: Path, records: list[list[str]]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write("".join(" ".join(r).rstrip() + "\n" for r in records))
    os.replace(tmp, path)


def new_enrollment_token(state_dir: Path, ttl: int = DEFAULT_TTL, label: str = "",
                         replace: str = "", bind: tuple[str, str] | None = None) -> str:
    """Make a one-time enrolment token valid for ``ttl`` seconds; shown once, stored hashed.
    ``replace``: the known slave this token may enrol again under a new SSH host key (the
    admin's confirmation that the machine was reinstalled); without it a known name only
    comes back with the host key the master has. ``bind``: (name, host-key fingerprint):
    only that slave with that key may enrol with the token (a discovered slave the admin
    accepted after seeing its fingerprint)."""
    if not 60 <= ttl <= MAX_TTL:
        raise UsageError(f"ttl {ttl}: a token lives from 60 s to {MAX_TTL} s (7 days)")
    if replace and not is_slave_name(replace):
        raise UsageError(f"--replace {replace!r}: give the name of an enrolled slave")
    token = secrets.token_urlsafe(24)
    clean = "".join(c for c in label if c.isalnum() or c in "._-@")[:60]
    bound = ""
    if bind is not None:
        if not is_slave_name(bind[0]) or not bind[1].startswith("SHA256:") \
                or any(c.isspace() for c in bind[1]):
            raise UsageError("bind: give a slave name and a SHA256: fingerprint")
        bound = f"{bind[0]}={bind[1]}"
    now = time.time()
    with _locked(state_dir) as path:
        records = _read(path, now)
        records.append([token_id(token), token_key(token).hex(), str(int(now + ttl)), clean,
                        replace, bound])
        _write(path, records)
    return token


def _find_key(state_dir: Path, tid: str) -> tuple[bytes, str, str] | None:
    """The token's MAC key, the slave name it may replace and its binding ("" for none)."""
    with _locked(state_dir) as path:
        for rec in _read(path, time.time()):
            if hmac.compare_digest(rec[0], tid):
                return bytes.fromhex(rec[1]), rec[4], rec[5]
    return None


def _use_up(state_dir: Path, tid: str) -> bool:
    """Remove the token; False if it was gone already (used or expired meanwhile)."""
    with _locked(state_dir) as path:
        records = _read(path, time.time())
        kept = [r for r in records if r[0] != tid]
        _write(path, kept)
        return len(kept) < len(records)


# ---------------------------------------------------------------------- files it writes


def ensure_master_key(key: Path) -> str:
    """The master's public key line, making the key pair first if there is none (the
    afarm-master package makes it at install time; a development master here)."""
    pub = key.with_name(key.name + ".pub")
    if not key.exists():
        key.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        cp = subprocess.run(  # noqa: S603 - fixed argv, no shell
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C",
             f"afarm-master@{os.uname().nodename}", "-f", str(key)],
            capture_output=True, text=True, check=False, timeout=60)
        if cp.returncode != 0:
            raise UsageError(f"cannot make the master's key {key}: {cp.stderr.strip()}")
    return pub.read_text("ascii").strip()


def known_hosts_pattern(address: str, port: int) -> str:
    return address if port == 22 else f"[{address}]:{port}"


def add_known_host(path: Path, pattern: str, key_line: str) -> str:
    """Replace the lines of ``pattern`` in known_hosts by one line; returns that line."""
    line = f"{pattern} {key_line}"
    try:
        old = path.read_text("utf-8").splitlines()
    except FileNotFoundError:
        old = []
    kept = [ln for ln in old if ln.split(" ", 1)[0] != pattern]
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("\n".join([*kept, line]) + "\n", encoding="utf-8")
    tmp.chmod(0o644)
    os.replace(tmp, path)
    return line


def definition_text(body: dict[str, Any], key: Path) -> str:
    stamp = time.strftime("%Y-%m-%d %H:%M:%S %z")
    return (f"{MARKER} on {stamp}.\n"
            "# Edit it freely (tags, slots; see afarm.conf(5)); delete it to forget the slave.\n"
            f"host = {body['address']}\nport = {body['port']}\nuser = {body['user']}\n"
            f"key = {key}\nwork_dir = {body['work_dir']}\n")


def _write_definition(slaves_dir: Path | None, name: str, text: str) -> Path | None:
    """``<slaves_dir>/NAME.conf``, or None if the directory is not writable for us."""
    if slaves_dir is None:
        return None
    path = slaves_dir / f"{name}.conf"
    tmp = slaves_dir / f".{name}.conf.tmp"
    try:
        slaves_dir.mkdir(parents=True, exist_ok=True)
        tmp.write_text(text, encoding="utf-8")
        tmp.chmod(0o644)
        os.replace(tmp, path)
    except OSError as exc:
        log.warning("enrolled slave %s is not saved: cannot write %s (%s); it is lost when"
                    " the master restarts unless you write the file by hand", name, path,
                    exc.strerror)
        tmp.unlink(missing_ok=True)
        return None
    return path


def _known_host_keys(state_dir: Path, slaves_dir: Path | None, name: str,
                     existing: Any) -> set[str]:
    """'TYPE BASE64' host keys the master trusts for slave ``name`` now: the known_hosts
    lines of the address and port in its definition and of its live transport."""
    patterns = set()
    if slaves_dir is not None:
        try:
            fields = dict(ln.split(" = ", 1) for ln in
                          (slaves_dir / f"{name}.conf").read_text("utf-8").splitlines()
                          if " = " in ln and not ln.startswith("#"))
            port_text = fields.get("port", "22").strip()
            if "host" in fields and port_text.isdigit():
                patterns.add(known_hosts_pattern(fields["host"].strip(), int(port_text)))
        except OSError:
            pass
    transport = getattr(existing, "transport", None)
    host, port = getattr(transport, "host", None), getattr(transport, "port", None)
    if isinstance(host, str) and isinstance(port, int):
        patterns.add(known_hosts_pattern(host, port))
    try:
        lines = (state_dir / "known_hosts").read_text("utf-8").splitlines()
    except OSError:
        return set()
    keys = set()
    for line in lines:
        words = line.split()
        if len(words) >= 3 and words[0] in patterns:
            keys.add(f"{words[1]} {words[2]}")
    return keys


def _enrolled_file(slaves_dir: Path | None, name: str) -> bool | None:
    """None: no file; True: one written by enrolment; False: one written by hand."""
    if slaves_dir is None:
        return None
    try:
        return (slaves_dir / f"{name}.conf").read_text("utf-8").startswith(MARKER)
    except FileNotFoundError:
        return None
    except OSError:
        return False


# ------------------------------------------------------------------------------ routes


def _check_body(raw: Any, work_dir_default: str) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise UsageError("the enrolment request must be a JSON object")
    name, address, port = raw.get("name"), raw.get("address"), raw.get("port", 22)
    if not isinstance(name, str) or not is_slave_name(name):
        raise UsageError(f"name: {RULE}")
    if not isinstance(address, str) or host_problem(address, zone=False):
        raise UsageError("address: give a host name or an IP address (without a zone)")
    if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
        raise UsageError("port: give the slave's SSH port, 1 to 65535")
    host_key = raw.get("host_key")
    if not isinstance(host_key, str):
        raise UsageError("host_key: give the slave's SSH host key line")
    kind, blob, _ = parse_public_key(host_key, "host_key")
    user = raw.get("user", "afarm")
    work_dir = raw.get("work_dir", work_dir_default)
    if not isinstance(user, str) or not is_plain_name(user):
        raise UsageError("user: give the slave user's name")
    if not isinstance(work_dir, str) or not work_dir.startswith("/") \
            or any(c in work_dir for c in "\n\r\"'#,") or ".." in work_dir.split("/"):
        raise UsageError("work_dir: give an absolute path without quotes, '#' or ','")
    return {"name": name, "address": address, "port": port, "host_key": f"{kind} {blob}",
            "user": user, "work_dir": work_dir}


def _refused(status: int, message: str) -> web.Response:
    return web.json_response({"error": message, "kind": "refused"}, status=status)


def attach(farm: Farm, state_dir: Path) -> OnEnrolled:
    """The default ``on_enrolled``: replace or add the slave's link in the farm.

    The farm must start the link's connection loop when it is already running
    (``Farm.add_slave`` after ``Farm.start``)."""
    async def on_enrolled(name: str, conf: dict[str, Any]) -> None:
        from afarm.config.types import SlaveDef
        from afarm.master.metering import Power
        from afarm.master.slaves.definitions import transport_for

        old = farm.dispatchers.get(name)
        if old is not None:
            await old.stop()
        slave = SlaveDef.of(conf)
        farm.add_slave(farm.link(name, transport_for(name, slave, state_dir), slave.slots,
                                 list(slave.tags)))
        farm.meter.places[name] = Power.of(slave)
        farm.wake()

    return on_enrolled


def routes(farm: Farm, state_dir: Path, *, slaves_dir: Path | None = None,
           master_key: Path | None = None, on_enrolled: OnEnrolled | None = None,
           default_work_dir: str = "/var/lib/afarm-slave/work") -> list[web.RouteDef]:
    """The job port's enrolment routes. ``slaves_dir``: where definitions are written
    ([master] slaves_dir); ``master_key``: the private key slaves will trust (default
    ``<state_dir>/.ssh/id_ed25519``, as in slavedef.spec's ``key``)."""
    key_path = master_key or state_dir / ".ssh" / "id_ed25519"
    callback = on_enrolled or attach(farm, state_dir)

    async def make_token(request: web.Request) -> web.Response:
        body: Any = {}
        if request.can_read_body:
            try:
                body = await request.json()
            except ValueError:
                raise UsageError("the request body is not JSON") from None
        if not isinstance(body, dict):
            raise UsageError("the request body must be a JSON object")
        ttl = body.get("ttl", DEFAULT_TTL)
        label = body.get("label", "")
        replace = body.get("replace") or ""
        if isinstance(ttl, bool) or not isinstance(ttl, int) or not isinstance(label, str) \
                or not isinstance(replace, str):
            raise UsageError("ttl must be whole seconds, label and replace texts")
        token = new_enrollment_token(state_dir, ttl, label, replace)
        master = request.host
        return web.json_response({
            "token": token, "ttl": ttl, "expires": int(time.time()) + ttl,
            "master": master, "replace": replace or None,
            "command": f"afarm-slave enroll --master {master} --token {token}"}, status=201)

    async def enroll(request: web.Request) -> web.Response:
        if request.content_length is not None and request.content_length > MAX_BODY:
            raise UsageError("the enrolment request is too large")
        raw = await request.content.read(MAX_BODY + 1)
        if len(raw) > MAX_BODY:
            raise UsageError("the enrolment request is too large")
        mac = request.headers.get(MAC_HEADER, "")
        try:
            parsed: Any = json.loads(raw)
        except ValueError:
            raise UsageError("the request body is not JSON") from None
        tid = parsed.get("token_id") if isinstance(parsed, dict) else None
        tid = tid if isinstance(tid, str) and len(tid) == 64 else ""
        unknown = ("the enrolment token is unknown, used or expired; make a new one on the"
                   " master with: afarmctl slave token")
        found = _find_key(state_dir, tid) if tid else None
        key, replace, bind = found if found is not None else (b"", "", "")
        if found is None or not hmac.compare_digest(mac.encode(),
                                                    request_mac(key, raw).encode()):
            log.warning("enrolment from %s refused: unknown token or bad signature",
                        request.remote)
            return _refused(403, unknown)
        stale = age_problem(parsed.get("time"), time.time())
        if stale:
            log.warning("enrolment from %s refused: %s", request.remote, stale.split(",")[0])
            return _refused(403, stale)
        body = _check_body(parsed, default_work_dir)
        name = body["name"]
        if bind:
            bound_name, _, bound_fp = bind.partition("=")
            got_fp = fingerprint(body["host_key"].split()[1])
            if name != bound_name or not hmac.compare_digest(got_fp, bound_fp):
                # The token went to a discovered slave over plain HTTP: whoever saw it may
                # try it with another name or key. Only the accepted pair gets in.
                log.warning("enrolment from %s refused: the token was made when slave %s"
                            " with host key %s was accepted, the request is %s with %s",
                            request.remote, bound_name, bound_fp, name, got_fp)
                return _refused(403, f"this enrolment was accepted for slave {bound_name!r}"
                                     f" with host key {bound_fp}, not {name!r} with"
                                     f" {got_fp}")
        existing = farm.dispatchers.get(name)
        by_enrolment = _enrolled_file(slaves_dir, name)
        if by_enrolment is False or (existing is not None and by_enrolment is None):
            return _refused(409, f"slave {name!r} is defined by hand on the master; enrol"
                                 " with another --name, or remove that definition first")
        if existing is not None and existing.state in ("online", "busy"):
            return _refused(409, f"slave {name!r} is online; enrol with another --name, or"
                                 " stop the slave first")
        if replace and replace != name:
            return _refused(409, f"this token may only enrol the slave {replace!r} again, "
                                 f"not {name!r}")
        if existing is not None or by_enrolment:
            known = _known_host_keys(state_dir, slaves_dir, name, existing)
            if body["host_key"] not in known and replace != name:
                # An offline slave's name with another machine's key: a reinstall, or
                # someone taking over the name. Only the admin can tell.
                old = ", ".join(sorted(fingerprint(k.split()[1]) for k in known)) or "none"
                new = fingerprint(body["host_key"].split()[1])
                log.warning("enrolment of %s from %s refused: host key %s, the master knows "
                            "%s", name, request.remote, new, old)
                return _refused(409, f"slave {name!r} is already enrolled with another SSH "
                                     f"host key ({old}; this machine has {new}). If it was "
                                     "reinstalled, make a token for it on the master with: "
                                     f"afarmctl slave token --replace {name}; otherwise "
                                     "enrol with another --name")
        text = definition_text(body, key_path)
        try:
            conf = load(None, "slavedef", text=text.splitlines(), warn=False)
        except ConfigError as exc:
            raise UsageError("; ".join(exc.problems)) from None
        public_key = ensure_master_key(key_path)
        if not _use_up(state_dir, tid):
            return _refused(403, unknown)
        pattern = known_hosts_pattern(body["address"], body["port"])
        add_known_host(state_dir / "known_hosts", pattern, body["host_key"])
        written = _write_definition(slaves_dir, name, text)
        log.info("enrolled slave %s at %s:%d, host key %s %s", name, body["address"],
                 body["port"], body["host_key"].split()[0],
                 fingerprint(body["host_key"].split()[1]))
        result = callback(name, conf)
        if result is not None:
            await result
        answer = json.dumps({"name": name, "public_key": public_key,
                             "known_hosts": pattern,
                             "definition": str(written) if written else None}).encode()
        return web.Response(body=answer, content_type="application/json", headers={
            MAC_HEADER: response_mac(key, mac, answer)})

    return [web.post(TOKENS_PATH, make_token), web.post(ENROLL_PATH, enroll)]


def skip_client_auth(client_auth: Any) -> Any:
    """Wrap the job port's bearer-token middleware so ``POST /api/v1/enroll`` (which carries
    the enrolment token's signature instead) passes; every other request still needs it."""
    @web.middleware
    async def middleware(request: web.Request,
                         handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
                         ) -> web.StreamResponse:
        if request.method == "POST" and request.path == ENROLL_PATH:
            return await handler(request)
        result: web.StreamResponse = await client_auth(request, handler)
        return result

    return middleware
