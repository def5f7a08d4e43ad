# SPDX-License-Identifier: MIT
"""Bearer tokens: stored as sha256 digests, compared in constant time."""

import hashlib
import hmac
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
        fd.write(f"{digest(token)} {label}\n")
    return token


def middleware(digests: set[str], required: bool) -> web.middleware:  # type: ignore[valid-type]
    @web.middleware
    async def check(request: web.Request, handler: Handler) -> web.StreamResponse:
        if required:
            header = request.headers.get("Authorization", "")
            token = header[7:] if header.startswith("Bearer ") else ""
            given = digest(token)
            if not token or not any(hmac.compare_digest(given, d) for d in digests):
                return web.json_response(
                    {"error": "a valid bearer token is required: pass --token-file or set"
                              " AFARM_TOKEN (create one with afarm-master new-token)"},
                    status=401)
        return await handler(request)

    return check
