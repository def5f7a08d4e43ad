# SPDX-License-Identifier: MIT
"""What a client can do with a master (submit, wait, fetch, ...), as data in and out: nothing
here prints or exits; afarmctl's verbs and the demo show the results their own way."""

import re
import time
import urllib.parse
from collections.abc import Callable
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

from afarm.cli.client import Client
from afarm.errors import OperationFailed, UsageError

FINISHED = ("completed", "failed", "canceled", "completed-with-warnings")

Job = dict[str, Any]


def extra_inputs(main: Path, extra: list[str]) -> list[tuple[str, Path]]:
    """(name relative to FILE's directory, path) of each --with file, directories walked."""
    base = main.resolve().parent
    found: dict[str, Path] = {}
    for given in extra:
        path = Path(given)
        if not path.exists():
            raise UsageError(f"--with {given}: no such file or directory")
        files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
        for f in files:
            real = f.resolve()
            if not real.is_relative_to(base):
                raise UsageError(f"--with {given}: {f} is not beside {main.name} (in"
                                 f" {base}); the slave finds it at the same relative path,"
                                 " so it must be inside that directory")
            found[str(real.relative_to(base))] = real
    found.pop(main.name, None)
    return sorted(found.items())


def pack_project(blend: Path, project_root: Path | None = None,
                 extra: list[str] | None = None) -> Any:
    """The .blend and every file it needs, laid out for the job (afarm.project.pack.Pack;
    close it, or use it in a with block, to remove its rewritten copies)."""
    from afarm.project.pack import pack  # imports blender-asset-tracer: only when needed

    try:
        return pack(blend, project_root, list(extra or []))
    except ModuleNotFoundError as exc:
        if not (exc.name or "").startswith("blender_asset_tracer"):
            raise
        raise UsageError("finding a .blend's files needs blender-asset-tracer, which is"
                         " missing: apt install python3-blender-asset-tracer (the afarmctl"
                         " package depends on it)") from None


def new_files(client: Client, shas: list[str]) -> set[str]:
    """Which of `shas` the master does not have yet."""
    return {sha for sha in dict.fromkeys(shas) if not client.has_file(sha)}


def submit(client: Client, request: dict[str, Any],
           inputs: list[tuple[str, Path]] | None = None,
           shas: dict[str, str] | None = None) -> Job:
    """Submit `request` with `inputs` (name, path) uploaded first; returns the new job.
    `shas`: the sha256 of inputs already hashed, by name."""
    request = dict(request)
    if inputs:
        known = shas or {}
        # A dry run first, so a typo in --frames never costs a multi-GB upload.
        request["files"] = [{"name": name, "sha256": "0" * 64} for name, _ in inputs]
        client.post("/api/v1/jobs?dry_run=1", request)
        request["files"] = [{"name": name, "sha256": client.upload(p, known.get(name),
                                                                    blend=name.endswith(".blend"))}
                            for name, p in inputs]
    job: Job = client.post("/api/v1/jobs", request)
    return job


def job(client: Client, job_id: int) -> Job:
    found: Job = client.get(f"/api/v1/jobs/{job_id}")
    return found


@dataclass
class JobList:
    """Jobs newest first, and what is not among them."""

    jobs: list[Job]
    total: int | None  # every job on the master; None from a master that does not page
    older: int | None  # `before` of the next, older page; None: the oldest job is here


NEXT_RE = re.compile(r'<([^>]*)>\s*;\s*rel="?next"?', re.IGNORECASE)
MAX_PAGE = 1000  # jobs the master sends at most per request


def older_than(headers: dict[str, str]) -> int | None:
    """The ``before`` of the page a rel="next" Link names (only that number is used: the
    next request is built here, never taken from the master's answer)."""
    m = NEXT_RE.search(headers.get("link", ""))
    if not m:
        return None
    found = urllib.parse.parse_qs(urllib.parse.urlsplit(m.group(1)).query).get("before", [""])
    raw = found[0]
    if not (raw.isascii() and raw.isdigit() and len(raw) <= 19):
        raise OperationFailed(f"the master's next page is not a job number: {raw[:40]!r}")
    return int(raw)


def jobs(client: Client, before: int | None = None, limit: int | None = None,
         every: bool = False) -> JobList:
    """A page of jobs (the master's own default size unless `limit`), below job `before`
    if given; `every`: follow the pages to the oldest job, `limit` (default the most the
    master sends) jobs a request."""
    if limit is not None and not 1 <= limit <= MAX_PAGE:
        raise UsageError(f"--limit {limit}: give 1 to {MAX_PAGE} jobs a page")
    if before is not None and before < 0:
        raise UsageError(f"--before {before}: give a job number (see afarmctl jobs)")
    if every and limit is None:
        limit = MAX_PAGE
    found: list[Job] = []
    while True:
        query = {**({"before": before} if before is not None else {}),
                 **({"limit": limit} if limit is not None else {})}
        page, headers = client.get_with_headers(
            "/api/v1/jobs" + ("?" + urllib.parse.urlencode(query) if query else ""))
        found += page
        total = int(headers["x-total-count"]) if headers.get("x-total-count", "").isdigit() \
            else None
        older = older_than(headers)
        if not every or older is None:
            return JobList(found, total, older)
        if before is not None and older >= before or not page:
            # Each page must start below the last: a master that says otherwise would
            # have this loop ask forever.
            raise OperationFailed(f"the master's next page (before {older}) does not go"
                                  " back from the last one; list it with --before")
        before = older


def report(client: Client, since: str, until: str | None = None) -> dict[str, Any]:
    """Energy, cost and busy hours per job and per slave of attempts that ended in
    [since, until) (dates as the master reads them: ISO 8601, its local time)."""
    query = {"since": since, **({"until": until} if until else {})}
    found: dict[str, Any] = client.get("/api/v1/report?" + urllib.parse.urlencode(query))
    return found


def wait(client: Client, job_id: int,
         on_progress: Callable[[Job], None] = lambda job: None) -> Job:
    """Follow a job until it is finished, calling `on_progress` with each state seen, and
    return the finished job. A master restart is waited out; an unreachable master raises."""
    current = job(client, job_id)
    last_event = 0
    while current["status"] not in FINISHED:
        on_progress(current)
        try:
            # Closed here, not by the garbage collector: an exception raised while a
            # collected generator closes (Ctrl-C) is printed and dropped, not raised.
            with closing(client.events(job=job_id, after=last_event)) as events:
                for ev in events:
                    last_event = max(last_event, int(ev.get("id") or last_event))
                    current = job(client, job_id)
                    on_progress(current)
                    if current["status"] in FINISHED:
                        break
        except OperationFailed:
            time.sleep(1)  # the master restarted: reconnect and pick up where we were
        current = job(client, job_id)
    on_progress(current)
    return current


def fetch(client: Client, job_id: int, output: Path, force: bool = False,
          found: Job | None = None) -> list[Path]:
    """Download every output of a job into `output`; returns the paths written. A file
    already there is an error (nothing is downloaded) unless `force`."""
    found = found or job(client, job_id)
    planned = []
    for rel in found["outputs"]:
        parts = Path(rel).parts
        if not parts or Path(rel).is_absolute() or any(p in ("..", ".") for p in parts):
            raise OperationFailed(f"the master listed an output {rel!r} outside the job;"
                                  " refusing to write it")
        planned.append((rel, output / rel))
    there = [dst for _, dst in planned if dst.exists() or dst.is_symlink()]
    if there and not force:
        raise UsageError(f"{there[0]} exists ({len(there)} of the job's {len(planned)} files"
                         f" are already in {output}); fetch does not overwrite files: pass"
                         " --force to replace them, or --output DIR for another directory")
    output.mkdir(parents=True, exist_ok=True)
    paths = []
    for rel, dst in planned:
        dst.parent.mkdir(parents=True, exist_ok=True)
        client.download(f"/api/v1/jobs/{job_id}/outputs/{quote(rel)}", dst)
        paths.append(dst)
    return paths


def act(client: Client, job_id: int, action: str) -> Job:
    """cancel, pause, resume or requeue a job; returns it as it is now."""
    found: Job = client.post(f"/api/v1/jobs/{job_id}/{action}", {})
    return found


def logs(client: Client, job_id: int, task: str | None = None) -> str:
    query = f"?task={task}" if task else ""
    return client.get_text(f"/api/v1/jobs/{job_id}/log{query}")


def slaves(client: Client) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = client.get("/api/v1/slaves")
    return found


def slave_rank(client: Client, job_id: int | None = None,
               policy: str | None = None) -> dict[str, Any]:
    """The slaves ranked by the master's policy (or `policy`), for a job if given."""
    query = "&".join(f"{k}={quote(str(v))}" for k, v in (("job", job_id), ("policy", policy))
                     if v is not None)
    found: dict[str, Any] = client.get("/api/v1/slaves/rank" + (f"?{query}" if query else ""))
    return found


def collect_garbage(client: Client, older_than_days: float | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {}
    if older_than_days is not None:
        if older_than_days < 0:
            raise UsageError("--older-than must be 0 or more days")
        body["older_than_days"] = older_than_days
    result: dict[str, Any] = client.post("/api/v1/gc", body)
    return result


def test_slave(client: Client, name: str) -> dict[str, Any]:
    """Run a slave's acceptance test again; its record (passed, reason, checks)."""
    if not name:
        raise UsageError("give the slave's name: afarmctl slave test NAME")
    # The test renders and encodes on the slave: it may take minutes ([acceptance] timeout).
    answer: dict[str, Any] = client.post(
        f"/api/v1/slaves/{urllib.parse.quote(name, safe='')}/test", {}, timeout=3600)
    return answer


def wake_slave(client: Client, name: str) -> dict[str, Any]:
    """Send a sleeping slave its Wake-on-LAN packet now."""
    if not name:
        raise UsageError("give the slave's name: afarmctl slave wake NAME")
    answer: dict[str, Any] = client.post(
        f"/api/v1/slaves/{urllib.parse.quote(name, safe='')}/wake", {})
    return answer


def drain_slave(client: Client, name: str, on: bool) -> dict[str, Any]:
    """Give a slave no new tasks (on), or let it take them again."""
    verb = "drain" if on else "undrain"
    if not name:
        raise UsageError(f"give the slave's name: afarmctl slave {verb} NAME")
    answer: dict[str, Any] = client.post(
        f"/api/v1/slaves/{urllib.parse.quote(name, safe='')}/{verb}", {})
    return answer


def enroll_token(client: Client, ttl: int, replace: str | None = None) -> dict[str, Any]:
    body: dict[str, object] = {"ttl": ttl}
    if replace:
        body["replace"] = replace
    answer: dict[str, Any] = client.post("/api/v1/enroll-tokens", body)
    return answer


def pending_slave(client: Client, name: str) -> dict[str, Any]:
    """The discovered record of ``name`` as afarmctl slaves lists it, or UsageError."""
    for s in slaves(client):
        if s.get("name") == name and isinstance(s.get("discovered"), dict):
            found: dict[str, Any] = s["discovered"]
            return found
    raise UsageError(f"no pending slave {name!r}; afarmctl slaves lists them")


def accept_slave(client: Client, name: str, fingerprint: str) -> dict[str, Any]:
    """Accept a discovered slave with the host-key fingerprint the admin confirmed."""
    # The slave enrols back with the master during the call: allow for its SSH key work.
    answer: dict[str, Any] = client.post(
        f"/api/v1/slaves/{urllib.parse.quote(name, safe='')}/accept",
        {"fingerprint": fingerprint}, timeout=120)
    return answer


def reject_slave(client: Client, name: str) -> dict[str, Any]:
    answer: dict[str, Any] = client.post(
        f"/api/v1/slaves/{urllib.parse.quote(name, safe='')}/reject", {})
    return answer


def app_add(client: Client, name: str, version: str, source: Path, arch: str = "amd64",
            executable: str | None = None,
            definition: Path | None = None) -> dict[str, Any]:
    """Upload an archive (a directory is packed into a .tar.gz first) into the pool, with
    the version's own definition file if given (the master checks it)."""
    import tempfile
    text = None
    if definition is not None:
        try:
            raw = definition.read_text("utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise UsageError(f"--definition {definition}: cannot read it ({exc})") from None
        # Only the keys travel (in the URL): comment and blank lines are left out.
        text = "\n".join(ln for ln in raw.splitlines()
                         if ln.strip() and not ln.lstrip().startswith("#"))
        if len(urllib.parse.quote(text)) > 6000:  # the master reads URLs up to 8 KiB
            raise UsageError(f"--definition {definition}: too long to send (over 6000"
                             " characters URL-encoded, comments left out); shorten it")

    from afarm.pool.archive import ArchiveError, pack_dir, suffix_of
    if not source.exists():
        raise UsageError(f"{source}: no such file or directory")
    with tempfile.TemporaryDirectory() as tmp:
        if source.is_dir():
            archive = Path(tmp) / f"{name}-{version}.tar.gz"
            pack_dir(source, archive)
        else:
            try:
                suffix_of(source.name)
            except ArchiveError as exc:
                raise UsageError(str(exc)) from None
            archive = source
        query = {"filename": archive.name, "arch": arch}
        if executable:
            query["executable"] = executable
        if text is not None:
            query["definition"] = text
        answer: dict[str, Any] = client.put_file(
            f"/api/v1/apps/{urllib.parse.quote(name)}/{urllib.parse.quote(version)}?"
            + urllib.parse.urlencode(query), archive)
        return answer


def app_list(client: Client) -> list[dict[str, Any]]:
    versions: list[dict[str, Any]] = client.get_job("/api/v1/apps")["versions"]
    return versions


def app_remove(client: Client, name: str, version: str) -> dict[str, Any]:
    answer: dict[str, Any] = client.post(
        f"/api/v1/apps/{urllib.parse.quote(name)}/{urllib.parse.quote(version)}/remove", {})
    return answer
