# SPDX-License-Identifier: MIT
"""HTTP client of the job and results ports (stdlib only, so afarmctl starts fast)."""

import json
import os
import urllib.error
import urllib.request
from collections.abc import Generator
from pathlib import Path
from typing import Any

from afarm.digest import sha256_file
from afarm.errors import OperationFailed, UsageError
from afarm.protocol.net import JOB_PORT, RESULTS_PORT, http_url, is_loopback, parse_hostport

DEFAULT_MASTER = f"127.0.0.1:{JOB_PORT}"
MASTER_CONF = Path("/etc/afarm/master.conf")
DEFAULT_STATE_DIR = "/var/lib/afarm-master"
CLIENT_TOKEN = "client-token"  # as afarm.master.auth writes it into the state directory


def master_state_dir(conf: Path = MASTER_CONF) -> Path:
    """``[master] state_dir`` of the local master.conf (read by hand: afarmctl does not
    import the configuration machinery), or the packaged default."""
    try:
        lines = conf.read_text("utf-8").splitlines()
    except (OSError, UnicodeDecodeError):
        return Path(DEFAULT_STATE_DIR)
    section = ""
    for line in lines:
        text = line.split("#", 1)[0].strip()
        if text.startswith("[") and text.endswith("]"):
            section = text.strip("[]").strip()
        elif section == "master" and text.partition("=")[0].strip() == "state_dir":
            value = text.partition("=")[2].strip().strip("\"'")
            if value:
                return Path(value)
    return Path(DEFAULT_STATE_DIR)


def read_client_token(state_dir: Path) -> str | None:
    """The token a master keeps for clients on its own machine, if this user may read it."""
    try:
        return (state_dir / CLIENT_TOKEN).read_text("utf-8").strip() or None
    except (OSError, UnicodeDecodeError):
        return None




class Client:
    def __init__(self, master: str | None = None, results: str | None = None,
                 token: str | None = None) -> None:
        given = master or os.environ.get("AFARM_MASTER")
        what = "--master" if master else "AFARM_MASTER"
        jhost, jport = parse_hostport(given or DEFAULT_MASTER, JOB_PORT, what)
        # Without --results, the results port is the next one on the same host.
        rhost, rport = parse_hostport(results, RESULTS_PORT, "--results") if results \
            else (jhost, jport + 1)
        if rport > 65535:
            raise UsageError(f"{what} {given!r}: the results port would be {rport}; pass"
                             " --results HOST:PORT")
        self.job_url = http_url(jhost, jport)
        self.results_url = http_url(rhost, rport)
        self.token = token
        self.local = is_loopback(jhost) and is_loopback(rhost)

    def local_token(self, state_dir: Path | None = None) -> str | None:
        """The local master's client token, for a master on loopback only: it is never
        sent to another machine."""
        if not self.local:
            return None
        return read_client_token(state_dir or master_state_dir())

    def _request(self, url: str, method: str = "GET", body: bytes | None = None,
                 headers: dict[str, str] | None = None, timeout: float = 60) -> Any:
        h = dict(headers or {})
        if self.token:
            h["Authorization"] = f"Bearer {self.token}"
        req = urllib.request.Request(url, data=body, method=method, headers=h)
        try:
            return urllib.request.urlopen(req, timeout=timeout)  # noqa: S310 (http only)
        except urllib.error.HTTPError as exc:
            try:
                message = json.loads(exc.read() or b"{}").get("error") or exc.reason
            except ValueError:
                message = exc.reason
            if exc.code in (400, 404):
                raise UsageError(str(message)) from None
            raise OperationFailed(f"the master refused ({exc.code}): {message}") from None
        except (urllib.error.URLError, ConnectionError, TimeoutError) as exc:
            reason = getattr(exc, "reason", exc)
            raise OperationFailed(
                f"cannot reach the master at {url.split('/api')[0]} ({reason}); is"
                " afarm-master running? Pass --master HOST:PORT or set AFARM_MASTER") from None

    def get(self, path: str) -> Any:
        with self._request(self.results_url + path) as resp:
            return json.loads(resp.read())

    def get_with_headers(self, path: str) -> tuple[Any, dict[str, str]]:
        """GET JSON from the results port, with the answer's headers (names lower case):
        a page of a list says there, in Link and X-Total-Count, that it is cut."""
        with self._request(self.results_url + path) as resp:
            return json.loads(resp.read()), {k.lower(): v for k, v in resp.headers.items()}

    def get_text(self, path: str) -> str:
        with self._request(self.results_url + path) as resp:
            return str(resp.read().decode("utf-8", errors="replace"))

    def get_job(self, path: str) -> Any:
        """GET from the job port (authenticated routes such as the pool's)."""
        with self._request(self.job_url + path) as resp:
            return json.loads(resp.read())

    def put_file(self, path: str, src: Path, timeout: float = 3600) -> Any:
        """PUT a file's bytes to the job port; returns the JSON answer."""
        with open(src, "rb") as f:
            body: Any = f
            with self._request(self.job_url + path, "PUT", body,
                               {"Content-Length": str(src.stat().st_size),
                                "Content-Type": "application/octet-stream"},
                               timeout) as resp:
                return json.loads(resp.read())

    def post(self, path: str, data: dict[str, Any], timeout: float = 60) -> Any:
        body = json.dumps(data).encode()
        with self._request(self.job_url + path, "POST", body,
                           {"Content-Type": "application/json"}, timeout) as resp:
            return json.loads(resp.read())

    def has_file(self, sha: str) -> bool:
        try:
            with self._request(f"{self.job_url}/api/v1/files/{sha}", "HEAD"):
                return True
        except UsageError:
            return False  # 404: not there yet

    def upload(self, path: Path, sha: str | None = None, blend: bool = False) -> str:
        """Send a file unless the master has it already; returns its sha256. `blend`: ask
        the master to check it is a complete .blend (a broken one is refused, not kept)."""
        sha = sha or sha256_file(path)
        if self.has_file(sha):
            return sha  # already there: nothing to send
        size = path.stat().st_size
        query = "?kind=blend" if blend else ""
        with open(path, "rb") as f:
            req_body: Any = f
            with self._request(f"{self.job_url}/api/v1/files/{sha}{query}", "PUT", req_body,
                               {"Content-Length": str(size),
                                "Content-Type": "application/octet-stream"},
                               timeout=3600):
                pass
        return sha

    def download(self, path: str, dst: Path) -> int:
        tmp = dst.with_name(f".{dst.name}.part")
        with self._request(self.results_url + path, timeout=600) as resp, open(tmp, "wb") as f:
            n = 0
            while chunk := resp.read(1 << 20):
                f.write(chunk)
                n += len(chunk)
        os.replace(tmp, dst)
        return n

    def events(self, job: int | None = None,
               after: int = 0) -> Generator[dict[str, Any], None, None]:
        """Server-sent events as they happen (blocks between them)."""
        query = f"?after={after}" + (f"&job={job}" if job is not None else "")
        resp = self._request(f"{self.results_url}/api/v1/events{query}", timeout=3600)
        with resp:
            data = ""
            for raw in resp:
                line = raw.decode("utf-8").rstrip("\n")
                if line.startswith("data: "):
                    data = line[6:]
                elif not line and data:
                    yield json.loads(data)
                    data = ""
