# SPDX-License-Identifier: MIT
"""Bearer tokens: stored as sha256 digests, compared in constant time.

Every request to the job port needs a token, on loopback too: a local web page or another
local user must not drive the master. So that afarmctl and the demo work with no step on
the master's machine, the master keeps one token of its own in ``<state_dir>/client-token``
(mode 0640: the master's user and group, and root), which afarmctl reads when it is given
no token (see afarm.cli.client.discover_token).

Each token has a scope. ``admin`` may do everything; ``submit`` (what an artist needs)
uploads files, submits and acts on jobs and reads what any token reads. A route is admin
unless its module declares it with :func:`for_submit` (fail closed: a new route nobody
thought about stays out of reach of submit tokens). A line of the token file is
``DIGEST scope=SCOPE LABEL``; a line without ``scope=`` (written before scopes existed)
keeps meaning admin, as it could do everything then. The file is read when the master
starts; restart it after adding a token.
"""

import grp
import hashlib
import hmac
import logging
import os
import re
import secrets
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web

from afarm.errors import ConfigError, UsageError
from afarm.master.http_util import Handler

ADMIN, SUBMIT = "admin", "submit"
SCOPES = (ADMIN, SUBMIT)
_DIGEST = re.compile(r"^[0-9a-f]{64}$")
# The scope is the field after the digest, so a label (the rest of the line) cannot give
# a token another scope; it must only stay on its line (ASCII: str.splitlines also breaks
# at \x1c-\x1e, \x85, \u2028).
_LABEL = re.compile(r"^[A-Za-z0-9][ -~]{0,63}$")
_SCOPE_ATTR = "afarm_scope"
FORBIDDEN = ("this token may submit and manage jobs only; ask the farm's admin or use an"
             " admin token (afarm-master new-token LABEL --scope admin)")


@dataclass(frozen=True)
class Token:
    """What a token may do, and the label the admin gave it (for the log)."""
    scope: str
    label: str = ""


Tokens = Mapping[str, Token]  # digest -> token


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def load_tokens(path: Path) -> dict[str, Token]:
    """The token file's tokens by digest; a line that is not ``DIGEST [scope=S] [LABEL]``
    is refused with its file and line, so the master never starts with a token it
    misreads."""
    if not path.exists():
        return {}
    try:
        lines = path.read_text("utf-8").splitlines()
    except OSError as exc:
        raise ConfigError(str(path), [f"cannot read the token file ({exc.strerror}); it must"
                                      " be readable by the user afarm-master runs as"]) from exc
    tokens: dict[str, Token] = {}
    seen: dict[str, int] = {}
    problems = []
    for number, line in enumerate(lines, 1):
        fields = line.split()
        if not fields or fields[0].startswith("#"):
            continue
        where = f"line {number}"
        if not _DIGEST.match(fields[0]):
            problems.append(f"{where}: the first field must be a token's sha256 (64"
                            " lowercase hex digits, as afarm-master new-token writes), not"
                            f" {fields[0][:70]!r}")
            continue
        scope, rest = ADMIN, fields[1:]
        if rest and rest[0].startswith("scope="):
            scope, rest = rest[0].removeprefix("scope="), rest[1:]
            if scope not in SCOPES:
                problems.append(f"{where}: scope={scope[:40]} is unknown; use scope=admin or"
                                " scope=submit")
                continue
        token = Token(scope, " ".join(rest))
        if fields[0] in tokens and tokens[fields[0]].scope != scope:
            problems.append(f"{where}: the same token as line {seen[fields[0]]} with"
                            " another scope; keep one of the two lines")
            continue
        tokens[fields[0]] = token
        seen.setdefault(fields[0], number)
    if problems:
        raise ConfigError(str(path), problems)
    return tokens


def load_digests(path: Path) -> set[str]:
    return set(load_tokens(path))


def check_label(label: str) -> str:
    if not _LABEL.match(label) or label != label.strip():
        raise UsageError(f"token label {label[:80]!r}: use 1 to 64 printable ASCII characters"
                         " starting with a letter or digit, e.g. alice or 'render box 2'")
    return label


def new_token(path: Path, label: str, scope: str = SUBMIT) -> str:
    """Make a token, store only its digest, and return it (shown once). Submit-only unless
    ``scope`` is admin: a token handed to an artist must not manage the farm."""
    check_label(label)
    if scope not in SCOPES:
        raise UsageError(f"scope {scope[:40]!r}: use admin or submit")
    token = secrets.token_urlsafe(32)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = path.open("a", encoding="utf-8")
    with fd:
        path.chmod(0o600)
        _share_with_service(path)
        fd.write(f"{digest(token)} scope={scope} {label}\n")
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


def _as_tokens(tokens: Tokens | Collection[str]) -> Tokens:
    # A plain set of digests (tests, callers from before scopes) means admin tokens.
    if isinstance(tokens, Mapping):
        return tokens
    return {d: Token(ADMIN) for d in tokens}


def bearer_token(request: web.Request, tokens: Tokens | Collection[str]) -> Token | None:
    """The accepted token the request carries, if any (constant-time compare)."""
    header = request.headers.get("Authorization", "")
    token = header[7:] if header.startswith("Bearer ") else ""
    if not token:
        return None
    given = digest(token)
    found = None
    for d, t in _as_tokens(tokens).items():
        if hmac.compare_digest(given, d):
            found = t
    return found


def bearer_ok(request: web.Request, digests: Tokens | Collection[str]) -> bool:
    """Whether the request carries one of the accepted tokens (constant-time compare)."""
    return bearer_token(request, digests) is not None


def for_submit(*defs: web.RouteDef) -> list[web.RouteDef]:
    """Declare routes that submit tokens may use too; every other route is admin only.
    The mark is on the handler, so one handler serves one scope."""
    for d in defs:
        setattr(d.handler, _SCOPE_ATTR, SUBMIT)
    return list(defs)


def route_scope(handler: object) -> str:
    """The scope a route's handler needs: submit where declared, admin otherwise."""
    return SUBMIT if getattr(handler, _SCOPE_ATTR, None) == SUBMIT else ADMIN


def allowed(token: Token, request: web.Request) -> bool:
    """Whether ``token`` may use the route ``request`` matched. No route (404, 405) is
    left to the router, so a submit token hears "not found" like any other."""
    if token.scope == ADMIN or request.match_info.http_exception is not None:
        return True
    return route_scope(request.match_info.handler) == SUBMIT


def forbidden(request: web.Request, token: Token) -> web.Response:
    log.warning("refused %s %s from %s: token %r is submit-only", request.method,
                request.path[:200], request.remote, token.label[:64])
    return web.json_response({"error": FORBIDDEN, "kind": "forbidden"}, status=403)


def middleware(tokens: Tokens | Collection[str], required: bool,
               open_paths: frozenset[str] = frozenset(),
               open_prefixes: tuple[str, ...] = ()
               ) -> web.middleware:  # type: ignore[valid-type]
    """Bearer-token check; ``open_paths`` (e.g. the OpenAPI description) need none, nor do
    paths under ``open_prefixes`` (the web page's views, which check it themselves).
    A token whose scope does not cover the route is refused with 403."""
    accepted = _as_tokens(tokens)

    @web.middleware
    async def check(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path in open_paths or request.path.startswith(open_prefixes or ("\0",)):
            return await handler(request)
        found = bearer_token(request, accepted)
        if found is None and required:
            header = request.headers.get("Authorization", "")
            log.warning("refused %s %s from %s: %s bearer token", request.method,
                        request.path[:200], request.remote,
                        "a wrong" if header.startswith("Bearer ") and header[7:] else "no")
            return web.json_response(
                {"error": "a valid bearer token is required: pass --token-file or set"
                          " AFARM_TOKEN; on the master's machine afarmctl reads the"
                          f" master's {CLIENT_TOKEN} file in its state directory"
                          " (root and group afarm-master may read it); create more"
                          " tokens with afarm-master new-token", "kind": "auth"},
                status=401, headers={"WWW-Authenticate": "Bearer"})
        if found is not None and not allowed(found, request):
            return forbidden(request, found)
        return await handler(request)

    return check
