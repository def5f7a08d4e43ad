# SPDX-License-Identifier: MIT
"""What each afarmctl verb does; `main` maps their exceptions to exit codes."""

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from afarm.cli.client import Client
from afarm.cli.progress import ProgressBar
from afarm.errors import OperationFailed, UsageError
from afarm.model.frames import parse_frames, parse_tiles

FINISHED = ("completed", "failed", "canceled")


def _print(args: argparse.Namespace, data: Any, text: str) -> None:
    print(json.dumps(data, indent=2) if args.json else text)


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


def submission(args: argparse.Namespace) -> tuple[dict[str, Any], Path | None]:
    """The job request, checked as far as the client can before anything is sent."""
    params: dict[str, Any] = {}
    if args.frames is not None:
        parse_frames(args.frames)  # fail early, before a large upload
        params["frames"] = args.frames
    if args.chunk is not None:
        if args.chunk < 1:
            raise UsageError(f"--chunk {args.chunk}: a chunk holds at least 1 frame;"
                             " use --chunk 1 or more")
        params["chunk"] = args.chunk
    if args.tiles:
        parse_tiles(args.tiles)
        params["tiles"] = args.tiles
    for key in ("engine", "format", "encode", "fps", "scene"):
        value = getattr(args, key)
        if value is not None:
            params[key] = value
    if args.items is not None and args.items_file is not None:
        raise UsageError("give --items or --items-file, not both")
    if args.items is not None:
        params["items"] = [i for i in args.items.split(",") if i != ""]
    if args.items_file is not None:
        try:
            text = Path(args.items_file).read_text("utf-8")
        except OSError as exc:
            raise UsageError(f"--items-file {args.items_file}: {exc.strerror}") from None
        params["items"] = [ln for ln in text.splitlines() if ln.strip()]
    path = None
    if args.extra and args.file is None:
        raise UsageError("--with needs FILE: the extra inputs sit beside it")
    if args.file is not None:
        path = Path(args.file)
        if not path.is_file():
            what = "is a directory" if path.is_dir() else "no such file"
            raise UsageError(f"{args.file}: {what}; give the path of the input file")
    request: dict[str, Any] = {
        "name": args.name or (path.name if path else args.app),
        "application": args.app, "params": params}
    if args.require_tags:
        request["require_tags"] = args.require_tags
    if args.priority is not None:
        request["priority"] = args.priority
    if args.timeout is not None:
        request["timeout"] = args.timeout
    return request, path


def cmd_submit(args: argparse.Namespace, client: Client) -> int:
    request, path = submission(args)
    if path is not None:
        inputs = [(path.name, path), *extra_inputs(path, args.extra)]
        # A dry run first, so a typo in --frames never costs a multi-GB upload.
        request["files"] = [{"name": name, "sha256": "0" * 64} for name, _ in inputs]
        client.post("/api/v1/jobs?dry_run=1", request)
        request["files"] = [{"name": name, "sha256": client.upload(p)} for name, p in inputs]
    job = client.post("/api/v1/jobs", request)
    _print(args, job, f"job {job['id']} accepted: {job['progress']['tasks']} tasks"
                      + (f", {job['progress']['frames_total']} frames"
                         if job["progress"]["frames_total"] else ""))
    if args.wait:
        return wait_for(client, job["id"], quiet=args.json)
    return 0


def cmd_jobs(args: argparse.Namespace, client: Client) -> int:
    jobs = client.get("/api/v1/jobs")
    lines = [f"{'ID':>5}  {'STATUS':<10} {'DONE':>11}  {'APP':<10} NAME"]
    for j in jobs:
        p = j["progress"]
        lines.append(f"{j['id']:>5}  {j['status']:<10} {p['completed']:>5}/{p['tasks']:<5}"
                     f"  {j['application']:<10} {j['name']}")
    _print(args, jobs, "\n".join(lines) if jobs else "no jobs")
    return 0


def cmd_status(args: argparse.Namespace, client: Client) -> int:
    job = client.get(f"/api/v1/jobs/{args.job}")
    p = job["progress"]
    lines = [f"job {job['id']} {job['name']!r} ({job['application']}): {job['status']}",
             f"tasks: {p['completed']}/{p['tasks']} completed, {p['active']} active,"
             f" {p['queued'] + p['soft-failed']} waiting, {p['failed']} failed",
             ]
    if p["frames_total"]:
        lines.append(f"frames: {p['frames_done']}/{p['frames_total']}")
    if job.get("blocklist"):
        lines.append("blocklisted slaves: " + ", ".join(job["blocklist"]))
    if job.get("tags"):
        lines.append("requires tags: " + ", ".join(job["tags"]))
    for w in job.get("warnings", []):
        lines.append(f"warning: {w}")
    for t in job["tasks"]:
        where = f" on {t['slave']}" if t["slave"] else ""
        err = f"  ({t['error']})" if t["error"] and t["status"] != "completed" else ""
        lines.append(f"  {t['id']:>6} {t['label']:<28} {t['status']:<11}{where}{err}")
    if job["outputs"]:
        lines.append(f"outputs: {len(job['outputs'])} files (afarmctl fetch {job['id']})")
    _print(args, job, "\n".join(lines))
    return 0


def wait_for(client: Client, job_id: int, quiet: bool = False) -> int:
    job = client.get(f"/api/v1/jobs/{job_id}")
    bar = ProgressBar(sys.stderr, enabled=not quiet)
    last_event = 0
    while job["status"] not in FINISHED:
        bar.update(job)
        try:
            for ev in client.events(job=job_id, after=last_event):
                last_event = max(last_event, int(ev.get("id") or last_event))
                job = client.get(f"/api/v1/jobs/{job_id}")
                bar.update(job)
                if job["status"] in FINISHED:
                    break
        except OperationFailed:
            time.sleep(1)  # the master restarted: reconnect and pick up where we were
        job = client.get(f"/api/v1/jobs/{job_id}")
    bar.update(job)
    bar.close(job)
    return 0 if job["status"] == "completed" else 1


def cmd_wait(args: argparse.Namespace, client: Client) -> int:
    code = wait_for(client, args.job, quiet=args.json)
    job = client.get(f"/api/v1/jobs/{args.job}")
    _print(args, job, f"job {args.job} {job['status']}")
    return code


def fetch(client: Client, job_id: int, output: Path) -> list[Path]:
    job = client.get(f"/api/v1/jobs/{job_id}")
    output.mkdir(parents=True, exist_ok=True)
    paths = []
    for rel in job["outputs"]:
        parts = Path(rel).parts
        if not parts or Path(rel).is_absolute() or any(p in ("..", ".") for p in parts):
            raise OperationFailed(f"the master listed an output {rel!r} outside the job;"
                                  " refusing to write it")
        dst = output / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        client.download(f"/api/v1/jobs/{job_id}/outputs/{rel}", dst)
        paths.append(dst)
    return paths


def cmd_fetch(args: argparse.Namespace, client: Client) -> int:
    out = Path(args.output or f"afarm-job-{args.job}")
    paths = fetch(client, args.job, out)
    _print(args, [str(p) for p in paths],
           f"{len(paths)} files in {out}/" if paths else f"job {args.job} has no outputs yet")
    return 0


def _action(name: str) -> Any:
    def run(args: argparse.Namespace, client: Client) -> int:
        job = client.post(f"/api/v1/jobs/{args.job}/{name}", {})
        _print(args, job, f"job {job['id']}: {job['status']}")
        return 0
    return run


def cmd_logs(args: argparse.Namespace, client: Client) -> int:
    query = f"?task={args.task}" if args.task else ""
    text = client.get_text(f"/api/v1/jobs/{args.job}/log{query}")
    _print(args, {"log": text}, text.rstrip() or "no logs yet")
    return 0


def cmd_slaves(args: argparse.Namespace, client: Client) -> int:
    slaves = client.get("/api/v1/slaves")
    lines = [f"{'NAME':<14} {'STATE':<12} {'RUNNING':<10} {'BLOCKLISTED FOR':<16} LAST ERROR"]
    for s in slaves:
        running = ",".join(map(str, s["running"])) or "-"
        blocked = ",".join(f"job {j}" for j in s.get("blocklisted_for", [])) or "-"
        lines.append(f"{s['name']:<14} {s['state']:<12} {running:<10} {blocked:<16}"
                     f" {s.get('last_error') or '-'}")
    _print(args, slaves, "\n".join(lines) if slaves else "no slaves defined")
    return 0


def cmd_demo(args: argparse.Namespace, client: Client) -> int:
    from afarm.demo import run_demo

    return run_demo(args)


def cmd_gc(args: argparse.Namespace, client: Client) -> int:
    body: dict[str, Any] = {}
    if args.older_than is not None:
        if args.older_than < 0:
            raise UsageError("--older-than must be 0 or more days")
        body["older_than_days"] = args.older_than
    result = client.post("/api/v1/gc", body)
    _print(args, result, f"removed {result['files_removed']} unreferenced uploads"
                         f" ({result['bytes_freed']} bytes); slaves cleaned: "
                         + (", ".join(f"{k} ({v} dirs)" for k, v in result["slaves"].items())
                            or "none online"))
    return 0


def cmd_slave(args: argparse.Namespace, client: Client) -> int:
    body: dict[str, object] = {"ttl": args.ttl}
    if args.replace:
        body["replace"] = args.replace
    answer = client.post("/api/v1/enroll-tokens", body)
    _print(args, answer, f"one-time token, valid {args.ttl} s: {answer['token']}\n"
                         f"on the slave, as root: {answer['command']}")
    return 0


HANDLERS = {
    "submit": cmd_submit, "jobs": cmd_jobs, "status": cmd_status, "wait": cmd_wait,
    "fetch": cmd_fetch, "cancel": _action("cancel"), "pause": _action("pause"),
    "resume": _action("resume"), "requeue": _action("requeue"), "logs": cmd_logs,
    "slaves": cmd_slaves, "slave": cmd_slave, "gc": cmd_gc, "demo": cmd_demo,
}
