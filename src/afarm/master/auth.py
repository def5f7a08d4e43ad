# SPDX-License-Identifier: MIT
"""Bearer tokens: stored as sha256 digests, compared in constant time.

Every request to the job port needs a token, on loopback too: a local web page or another
local user must not drive the master. So that afarmctl and the demo work with no step on
the master's machine, the master keeps one token of its own in ``<state_dir>/client-token``
(mode 0640: the master's user and group, and root), which afarmctl reads when it is given
no token (see afarm.cli.client.discover_token).
"""

import grp
import hashlib
import hmac
import logging
import os
import secrets
from pathlib import Path

from aiohttp import web

from afarm.errors import ConfigError
from afarm.master.http_util import Handler


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def load_digests(path: Path) -> set[str]:
    if not path.exists():
        return set()
    try:
        lines = path.read_text("utf-8").splitlines()
    except OSError as exc:
        raise ConfigError(str(path), [f"cannot read the token file ({exc.strerror}); it must"
                                      " be readable by the user afarm-master runs as"]) from exc
    return {ln.strip().split()[0] for ln in lines if ln.strip() and not ln.startswith("#")}


def new_token(path: Path, label: str) -> str:
    """Make a token, store only its digest, and return it (shown once)."""
    token = secrets.token_urlsafe(32)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = path.open("a", encoding="utf-8")
    with fd:
        path.chmod(0o600)
        _share_with_service(path)
        fd.write(f"{digest(token)} {label}\n")
    return token


SERVICE_GROUP = "afarm-master"  # the packaged service's group


def _share_with_service(path: Path) -> None:
    """Made by root (`afarm-master new-token` as an admin), the file must stay readable by
    the service's user: group afarm-master may read it (it holds digests only)."""
    if os.geteuid() != 0:
        return
    try:
        gid = grp.getgrnam(SERVICE_GROUP).gr_gid
    except KeyError:
        return  # no packaged service on this machine
    os.chown(path, 0, gid)
    path.chmod(0o640)


CLIENT_TOKEN = "client-token"
log = logging.getLogger("afarm.master.http")


def ensure_client_token(state_dir: Path) -> str:
    """The digest of the master's own client token, making the token file if needed."""
    path = state_dir / CLIENT_TOKEN
    try:
        token = path.read_text("utf-8").strip()
    except FileNotFoundError:
        token = ""
    if not token:
        token = secrets.token_urlsafe(32)
        tmp = path.with_name(f".{CLIENT_TOKEN}.tmp")
        tmp.unlink(missing_ok=True)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o640)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            os.fchmod(f.fileno(), 0o640)  # not widened or narrowed by the umask
            f.write(token + "\n")
        os.replace(tmp, path)
    return digest(token)


def bearer_ok(request: web.Request, digests: set[str]) -> bool:
    """Whether the request carries one of the accepted tokens (constant-time compare)."""
    header = request.headers.get("Authorization", "")
    token = header[7:] if header.startswith("Bearer ") else ""
    given = digest(token)
    return bool(token) and any(hmac.compare_digest(given, d) for d in digests)


def middleware(digests: set[str], required: bool,
               open_paths: frozenset[str] = frozenset(),
               open_prefixes: tuple[str, ...] = ()
               ) -> web.middleware:  # type: ignore[valid-type]
    """Bearer-token check; ``open_paths`` (e.g. the OpenAPI description) need none, nor do
    paths under ``open_prefixes`` (the web page's views, which check it themselves)."""
    @web.middleware
    async def check(request: web.Request, handler: Handler) -> web.StreamResponse:
        if required and request.path not in open_paths \
                and not request.path.startswith(open_prefixes or ("\0",)):
            header = request.headers.get("Authorization", "")
            token = header[7:] if header.startswith("Bearer ") else ""
            if not bearer_ok(request, digests):
                log.warning("refused %s %s from %s: %s bearer token", request.method,
                            request.path[:200], request.remote,
                            "a wrong" if token else "no")
                return web.json_response(
                    {"error": "a valid bearer token is required: pass --token-file or set"
                              " AFARM_TOKEN; on the master's machine afarmctl reads the"
                              f" master's {CLIENT_TOKEN} file in its state directory"
                              " (root and group afarm-master may read it); create more"
                              " tokens with afarm-master new-token", "kind": "auth"},
                    status=401, headers={"WWW-Authenticate": "Bearer"})
        return await handler(request)

    return check
