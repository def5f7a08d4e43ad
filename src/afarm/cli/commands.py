# SPDX-License-Identifier: MIT
"""What each afarmctl verb shows: it calls afarm.cli.ops and prints the answer (text or
--json); `main` maps their exceptions to exit codes."""

import argparse
import json
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from afarm.cli import ops
from afarm.cli.client import Client
from afarm.cli.progress import ProgressBar
from afarm.errors import UsageError
from afarm.model.frames import parse_frames, parse_tiles


def _print(args: argparse.Namespace, data: Any, text: str) -> None:
    # Flushed, so through a pipe `submit --wait` shows "accepted" before the wait, not after.
    print(json.dumps(data, indent=2) if args.json else text, flush=True)


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
    # --app 'blender (>= 4.2), blender (<< 5)': the application, and which pool version.
    app = args.app.split("(", 1)[0].split(",", 1)[0].strip()
    request: dict[str, Any] = {
        "name": args.name or (path.name if path else app),
        "application": app, "params": params}
    if args.app.strip() != app:
        request["app"] = args.app.strip()
    if args.require_tags:
        request["require_tags"] = args.require_tags
    if args.priority is not None:
        request["priority"] = args.priority
    if args.timeout is not None:
        request["timeout"] = args.timeout
    if args.policy is not None:
        request["policy"] = args.policy
    if args.deadline is not None:
        request["deadline"] = parse_deadline(args.deadline)
    if getattr(args, "device", None) == "GPU":
        request["device"] = "GPU"
    for key in ("min_memory_mib", "gpus"):
        if getattr(args, key) is not None:
            request[key] = getattr(args, key)
    return request, path


_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_deadline(text: str, now: float | None = None) -> float:
    """--deadline as seconds since 1970: a duration from now (90m, 2h, 1d, 3600) or a
    local date and time (2026-12-24T18:00)."""
    now = time.time() if now is None else now
    t = text.strip()
    unit = _UNITS.get(t[-1:].lower(), 0)
    number = t[:-1] if unit else t
    try:
        amount = float(number)
        if not (amount > 0 and amount < 1e9):
            raise ValueError
        return now + amount * (unit or 1)
    except ValueError:
        pass
    try:
        return datetime.fromisoformat(t).timestamp()
    except ValueError:
        raise UsageError(f"--deadline {text!r}: give a duration (90m, 2h, 1d, or seconds)"
                         " or a local time (2026-12-24T18:00)") from None


def cmd_submit(args: argparse.Namespace, client: Client) -> int:
    request, path = submission(args)
    inputs = [(path.name, path), *ops.extra_inputs(path, args.extra)] if path else None
    job = ops.submit(client, request, inputs)
    _print(args, job, f"job {job['id']} accepted: {job['progress']['tasks']} tasks"
                      + (f", {job['progress']['frames_total']} frames"
                         if job["progress"]["frames_total"] else ""))
    if args.wait:
        return wait_for(client, job["id"], quiet=args.json)
    return 0


def figure(value: float | None, digits: int = 3) -> str:
    """A kWh or cost figure: unknown is "?", never 0, and a small one keeps two significant
    digits instead of rounding to 0.000 (a test job's 6.2e-05 kWh)."""
    if value is None:
        return "?"
    if value and abs(value) < 10 ** -digits:
        return f"{value:.2g}"
    return f"{value:.{digits}f}"


def energy_text(energy: dict[str, Any] | None) -> str:
    """"0.0123 kWh, 0.0037 EUR (estimated)" for a job's or a report line's energy."""
    if not energy:
        return "unknown"
    kwh = "unknown kWh" if energy.get("kwh") is None else f"{figure(energy['kwh'])} kWh"
    cost = ("cost unknown" if energy.get("cost") is None
            else f"{figure(energy['cost'], 2)} {energy.get('currency', '')}".rstrip())
    how = " (estimated)" if energy.get("estimated") else " (measured)"
    return f"{kwh}, {cost}" + (how if energy.get("attempts") else "")


def cmd_jobs(args: argparse.Namespace, client: Client) -> int:
    jobs = ops.jobs(client)
    lines = [f"{'ID':>5}  {'STATUS':<10} {'DONE':>11}  {'KWH':>8} {'COST':>8}  {'APP':<10}"
             " NAME"]
    for j in jobs:
        p = j["progress"]
        e = j.get("energy") or {}
        lines.append(f"{j['id']:>5}  {j['status']:<10} {p['completed']:>5}/{p['tasks']:<5}"
                     f"  {figure(e.get('kwh')):>8} {figure(e.get('cost'), 2):>8}"
                     f"  {j['application']:<10} {j['name']}")
    _print(args, jobs, "\n".join(lines) if jobs else "no jobs")
    return 0


def cmd_status(args: argparse.Namespace, client: Client) -> int:
    job = ops.job(client, args.job)
    p = job["progress"]
    app = job["application"] + (f" {job['app_version']}" if job.get("app_version") else "")
    lines = [f"job {job['id']} {job['name']!r} ({app}): {job['status']}",
             f"tasks: {p['completed']}/{p['tasks']} completed, {p['active']} active,"
             f" {p['queued'] + p['soft-failed']} waiting, {p['failed']} failed",
             ]
    if p["frames_total"]:
        lines.append(f"frames: {p['frames_done']}/{p['frames_total']}")
    if "energy" in job:
        lines.append(f"energy: {energy_text(job['energy'])},"
                     f" {figure(job['energy'].get('busy_hours', 0))} busy hours")
    if job.get("blocklist"):
        lines.append("blocklisted slaves: " + ", ".join(job["blocklist"]))
    if job.get("tags"):
        lines.append("requires tags: " + ", ".join(job["tags"]))
    sched = job.get("scheduling") or {}
    if sched:
        parts = [f"policy {sched['policy']}" if "policy" in sched else "",
                 "deadline " + time.strftime("%Y-%m-%d %H:%M", time.localtime(
                     sched["deadline"])) if "deadline" in sched else "",
                 f"at least {sched['min_memory_mib']} MiB" if "min_memory_mib" in sched
                 else "", f"at least {sched['gpus']} GPUs" if "gpus" in sched else ""]
        lines.append("slaves: " + ", ".join(p for p in parts if p)
                     + f" (afarmctl slaves --rank --job {job['id']})")
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
    """Show a progress bar until the job ends; 0 if it completed, else 1."""
    bar = ProgressBar(sys.stderr, enabled=not quiet)
    job = ops.wait(client, job_id, bar.update)
    bar.close(job)
    return 0 if job["status"] == "completed" else 1


def cmd_wait(args: argparse.Namespace, client: Client) -> int:
    code = wait_for(client, args.job, quiet=args.json)
    job = ops.job(client, args.job)
    _print(args, job, f"job {args.job} {job['status']}")
    return code


def cmd_fetch(args: argparse.Namespace, client: Client) -> int:
    out = Path(args.output or f"afarm-job-{args.job}")
    paths = ops.fetch(client, args.job, out)
    _print(args, [str(p) for p in paths],
           f"{len(paths)} files in {out}/" if paths else f"job {args.job} has no outputs yet")
    return 0


def _action(name: str) -> Any:
    def run(args: argparse.Namespace, client: Client) -> int:
        job = ops.act(client, args.job, name)
        _print(args, job, f"job {job['id']}: {job['status']}")
        return 0
    return run


def cmd_logs(args: argparse.Namespace, client: Client) -> int:
    text = ops.logs(client, args.job, args.task)
    _print(args, {"log": text}, text.rstrip() or "no logs yet")
    return 0


def rank_text(r: dict[str, Any]) -> str:
    """The ranking as a table: one row per slave, one column per property, and why."""
    cols = list(r["columns"])
    rows = r["slaves"]
    if not rows:
        return f"policy: {r['description']}\nno slaves defined"
    table = [["POS", "NAME", *cols, "WHY"]]
    for s in rows:
        held = " (held back)" if s["held"] else ""
        table.append([ordinal(s["position"]) if s["position"] else "-", s["slave"],
                      *(_num(s["properties"].get(c)) for c in cols), s["why"] + held])
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]) - 1)]
    lines = [f"policy: {r['description']}"]
    for row in table:
        cells = [row[0].ljust(widths[0]), row[1].ljust(widths[1]),
                 *(v.rjust(w) for v, w in zip(row[2:-1], widths[2:], strict=True))]
        lines.append("  ".join(cells) + "  " + row[-1])
    return "\n".join(lines)


def ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def _num(v: float | None) -> str:
    return "-" if v is None else f"{v:.4g}"


def cmd_slaves(args: argparse.Namespace, client: Client) -> int:
    if args.rank:
        r = ops.slave_rank(client, args.job, args.policy)
        _print(args, r, rank_text(r))
        return 0
    if args.job is not None or args.policy is not None:
        raise UsageError("--job and --policy go with --rank: afarmctl slaves --rank"
                         " --job ID")
    slaves = ops.slaves(client)
    lines = [f"{'NAME':<14} {'STATE':<12} {'S/FRAME':>8} {'RUNNING':<10} "
             f"{'BLOCKLISTED FOR':<16} LAST ERROR"]
    for s in slaves:
        running = ",".join(map(str, s["running"])) or "-"
        blocked = ",".join(f"job {j}" for j in s.get("blocklisted_for", [])) or "-"
        spf = (s.get("benchmark") or {}).get("seconds_per_frame")
        bench = f"{spf:.3g}" if isinstance(spf, int | float) else "-"
        lines.append(f"{s['name']:<14} {s['state']:<12} {bench:>8} {running:<10}"
                     f" {blocked:<16} {s.get('last_error') or '-'}")
    _print(args, slaves, "\n".join(lines) if slaves else "no slaves defined")
    return 0


def cmd_report(args: argparse.Namespace, client: Client) -> int:
    rep = ops.report(client, args.since, args.until)
    cur = rep.get("currency", "")

    def row(name: str, r: dict[str, Any]) -> str:
        kwh = figure(r["kwh"]) if r["kwh"] is not None else figure(r["kwh_known"]) + "+?"
        cost = figure(r["cost"], 2) if r["cost"] is not None else \
            figure(r["cost_known"], 2) + "+?"
        return (f"{name:<28.28} {kwh:>12} {cost:>10} {figure(r['busy_hours']):>10}"
                f" {r['tasks']:>6} {r['attempts']:>8}")

    head = (f"{'':<28} {'KWH':>12} {'COST ' + cur:>10} {'BUSY H':>10} {'TASKS':>6}"
            f" {'ATTEMPTS':>8}")
    lines = ["per job:", head.replace(" " * 28, f"{'JOB':<28}", 1)]
    lines += [row(f"{j['job']} {j['name']}", j) for j in rep["jobs"]] or ["  (none)"]
    lines += ["", "per slave:", head.replace(" " * 28, f"{'SLAVE':<28}", 1)]
    lines += [row(s["slave"], s) for s in rep["slaves"]] or ["  (none)"]
    lines += ["", row("total", rep["total"])]
    lines += [f"warning: {w}" for w in rep["total"]["warnings"]]
    if rep["total"]["kwh"] is None or rep["total"]["cost"] is None:
        lines.append("(+? : the sum of what is known; some attempts have no watts or price)")
    _print(args, rep, "\n".join(lines))
    return 0


def cmd_demo(args: argparse.Namespace, client: Client) -> int:
    from afarm.cli.demo import run_demo  # Blender and the embedded farm: only when asked for

    return run_demo(args)


def cmd_gc(args: argparse.Namespace, client: Client) -> int:
    result = ops.collect_garbage(client, args.older_than)
    _print(args, result, f"removed {result['files_removed']} unreferenced uploads"
                         f" ({result['bytes_freed']} bytes); slaves cleaned: "
                         + (", ".join(f"{k} ({v} dirs)" for k, v in result["slaves"].items())
                            or "none online"))
    return 0


def cmd_slave(args: argparse.Namespace, client: Client) -> int:
    if args.action == "test":
        rec = ops.test_slave(client, args.name)
        checks = [f"  {'ok  ' if c.get('ok') else 'FAIL'} {c.get('name')}: {c.get('detail')}"
                  for c in rec.get("checks", [])]
        head = (f"{rec['name']}: passed, {rec['state']}" if rec.get("passed")
                else f"{rec['name']}: {rec['state']}: {rec.get('reason')}")
        _print(args, rec, "\n".join([head, *checks]))
        return 0 if rec.get("passed") else 1
    if args.name:
        raise UsageError("slave token takes no NAME (did you mean: slave test NAME?)")
    answer = ops.enroll_token(client, args.ttl, args.replace)
    _print(args, answer, f"one-time token, valid {args.ttl} s: {answer['token']}\n"
                         f"on the slave, as root: {answer['command']}")
    return 0


def cmd_app(args: argparse.Namespace, client: Client) -> int:
    if args.action == "list":
        if args.name or args.version or args.source:
            raise UsageError("app list takes no NAME, VERSION or ARCHIVE")
        versions = ops.app_list(client)
        rows = [f"{v['package']:<12} {v['version']:<12} {v['arch']:<6}"
                f" {v['size'] / 1e6:>9.1f} MB  {v['unpacked'] / 1e6:>9.1f} MB unpacked  "
                + (", ".join(v["slaves"]) or "(on no slave yet)") for v in versions]
        _print(args, {"versions": versions}, "\n".join(rows) or "the pool is empty")
        return 0
    if not args.name or not args.version:
        raise UsageError(f"app {args.action} needs NAME VERSION")
    if args.action == "remove":
        answer = ops.app_remove(client, args.name, args.version)
        _print(args, answer, f"removed {args.name} {args.version}")
        return 0
    if not args.source:
        raise UsageError("app add needs NAME VERSION ARCHIVE|DIR")
    entry = ops.app_add(client, args.name, args.version, Path(args.source), args.arch,
                        args.executable)
    _print(args, entry, f"added {entry['package']} {entry['version']} ({entry['arch']}):"
                        f" {entry['size']} bytes, sha256 {entry['sha256'][:16]}...,"
                        f" runs {entry['executable']}")
    return 0


HANDLERS = {
    "submit": cmd_submit, "jobs": cmd_jobs, "status": cmd_status, "wait": cmd_wait,
    "fetch": cmd_fetch, "cancel": _action("cancel"), "pause": _action("pause"),
    "resume": _action("resume"), "requeue": _action("requeue"), "logs": cmd_logs,
    "slaves": cmd_slaves, "slave": cmd_slave, "gc": cmd_gc, "demo": cmd_demo,
    "report": cmd_report, "app": cmd_app,
}
