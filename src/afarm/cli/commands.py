# SPDX-License-Identifier: MIT
"""What each afarmctl verb shows: it calls afarm.cli.ops and prints the answer (text or
--json); `main` maps their exceptions to exit codes."""

import argparse
import json
import os
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from afarm.cli import ops
from afarm.cli.client import Client
from afarm.cli.progress import ProgressBar
from afarm.cli.text import printable
from afarm.errors import OperationFailed, UsageError
from afarm.model.frames import parse_frames, parse_tiles
from afarm.model.slave import shown


def _print(args: argparse.Namespace, data: Any, text: str) -> None:
    # Flushed, so through a pipe `submit --wait` shows "accepted" before the wait, not after.
    print(json.dumps(data, indent=2) if args.json else printable(text), flush=True)


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
            if path.is_symlink():  # name where it leads, not only the link
                what += f" (a symlink to {os.readlink(path)}, which"
                what += " is a directory)" if path.is_dir() else " does not exist)"
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
    if getattr(args, "strict", False):
        request["strict"] = True
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


def size_text(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"


def missing_text(p: Any) -> list[str]:
    return [printable(f"{m.reason}: {m.path} (wanted by the {m.wanted_by} in {m.blend})")
            for m in p.missing]


def dependencies_text(p: Any, new: set[str] | None) -> str:
    """The files a packed project carries, one a line: size, new or on the master, name."""
    lines = [f"project root: {p.root}"]
    for f in p.files:
        state = "" if new is None else ("new    " if f.sha256 in new else "present")
        note = " (paths rewritten)" if f.rewritten else ""
        lines.append(f"  {size_text(f.size):>10}  {state}  {f.name}{note}")
    upload = sum(f.size for f in p.files if new is None or f.sha256 in new)
    lines.append(f"{len(p.files)} files, {size_text(p.size)}"
                 + ("" if new is None else
                    f"; {len({f.sha256 for f in p.files} & new)} new to the master"
                    f" ({size_text(upload)} to upload)")
                 + f"; traced in {p.trace.seconds:.2f} s")
    return "\n".join(lines + missing_text(p))


def cmd_submit(args: argparse.Namespace, client: Client) -> int:
    request, path = submission(args)
    if path is not None and path.suffix.lower() == ".blend":
        return _submit_project(args, client, request, path)
    if getattr(args, "dry_run", False) or getattr(args, "project_root", None):
        raise UsageError("--dry-run and --project-root go with a .blend FILE")
    inputs = [(path.name, path), *ops.extra_inputs(path, args.extra)] if path else None
    job = ops.submit(client, request, inputs)
    return _submitted(args, client, job)


def _submit_project(args: argparse.Namespace, client: Client, request: dict[str, Any],
                    path: Path) -> int:
    root = Path(args.project_root) if getattr(args, "project_root", None) else None
    with ops.pack_project(path, root, args.extra) as p:
        if args.dry_run:
            new = ops.new_files(client, [f.sha256 for f in p.files])
            data = {"root": str(p.root), "main": p.main, "seconds": p.trace.seconds,
                    "files": [{"name": f.name, "size": f.size, "sha256": f.sha256,
                               "new": f.sha256 in new, "rewritten": f.rewritten,
                               "wanted_by": list(f.wanted_by)} for f in p.files],
                    "missing": [{"path": str(m.path), "wanted_by": m.wanted_by,
                                 "blend": str(m.blend), "reason": m.reason}
                                for m in p.missing]}
            _print(args, data, dependencies_text(p, new))
            return 1 if p.missing and not args.allow_missing else 0
        if p.missing:
            for line in missing_text(p):
                print(line, file=sys.stderr)
            if not args.allow_missing:
                print(f"{len(p.missing)} file(s) {path.name} needs are missing or not"
                      " carried; nothing was submitted. Restore them (a private or system"
                      " file only with --with), or pass --allow-missing to render without"
                      " them", file=sys.stderr)
                return 1
        job = ops.submit(client, request, p.inputs(),
                         shas={f.name: f.sha256 for f in p.files})
    return _submitted(args, client, job)


def _submitted(args: argparse.Namespace, client: Client, job: dict[str, Any]) -> int:
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


WARNED = "!"  # marks a job with task warnings in afarmctl jobs


def cmd_jobs(args: argparse.Namespace, client: Client) -> int:
    listed = ops.jobs(client, args.before, args.limit, args.every)
    jobs = listed.jobs
    lines = [f"{'ID':>5}  {'STATUS':<10} {'DONE':>11}  {'KWH':>8} {'COST':>8}  {'APP':<10}"
             " NAME"]
    warned = False
    for j in jobs:
        p = j["progress"]
        e = j.get("energy") or {}
        mark = WARNED if j.get("warned_tasks") else " "
        warned = warned or bool(j.get("warned_tasks"))
        lines.append(f"{j['id']:>5}{mark} {j['status']:<10} {p['completed']:>5}/{p['tasks']:<5}"
                     f"  {figure(e.get('kwh')):>8} {figure(e.get('cost'), 2):>8}"
                     f"  {j['application']:<10} {j['name']}")
    if warned:
        lines.append(f"{WARNED}: the job has task warnings (a file it needs was missing, the"
                     " denoiser was off): afarmctl status ID")
    # With --all every job is there (one submitted while the pages were read is newer
    # than the first page, and not asked for).
    cut = "" if args.every else cut_note(listed, args.before, args.limit)
    if cut and not args.json:
        lines.append(cut)
    _print(args, jobs, "\n".join(lines) if jobs else cut or "no jobs")
    if cut and args.json:
        print(printable(cut), file=sys.stderr)  # the JSON stays a list of jobs
    return 0


def cut_note(listed: ops.JobList, before: int | None, limit: int | None) -> str:
    """The line that says a list of jobs is not all of them, and how to see the rest."""
    n, total = len(listed.jobs), listed.total
    if total is None or n >= total:
        return ""  # every job, or a master that does not say how many it has
    which = f"the {n} newest" if before is None else f"{n}"
    below = "" if before is None else f" (those below job {before})"
    nxt = "" if listed.older is None else \
        f" (or --before {listed.older}{f' --limit {limit}' if limit else ''} the next page)"
    return (f"showing {which} of {total} jobs{below}; afarmctl jobs --all lists every"
            f" one{nxt}")


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
    if job.get("strict"):
        lines.append("strict: a task warning fails the job")
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
    lines += task_warning_lines(job)
    for t in job["tasks"]:
        where = f" on {t['slave']}" if t["slave"] else ""
        err = f"  ({t['error']})" if t["error"] and t["status"] != "completed" else ""
        if t.get("warnings"):
            err += f"  ({t['warnings']} warnings)"
        lines.append(f"  {t['id']:>6} {t['label']:<28} {t['status']:<11}{where}{err}")
    if job["outputs"]:
        lines.append(f"outputs: {len(job['outputs'])} files (afarmctl fetch {job['id']})")
    _print(args, job, "\n".join(lines))
    return 0


EX_WARNINGS = 3  # the job completed, but some tasks reported warnings


def task_warning_lines(job: dict[str, Any], most: int = 20) -> list[str]:
    """The job's task warnings, one line each, with how many tasks gave each."""
    warned = job.get("warned_tasks") or 0
    if not warned:
        return []
    found = job.get("task_warnings") or []
    lines = [f"task warnings ({warned} tasks; their frames may be wrong):"]
    for w in found[:most]:
        n = w.get("tasks", 1)
        lines.append(f"  {w.get('warning')}" + (f"  [{n} tasks]" if n > 1 else
                                                 f"  [task {w.get('first_task')}]"))
    if len(found) > most:
        lines.append(f"  ... {len(found) - most} more (afarmctl status {job['id']} --json)")
    return lines


def first_failure(job: dict[str, Any]) -> dict[str, Any] | None:
    """The failed task to show for a failed job: the first (by index) with an error."""
    failed = [t for t in job.get("tasks", []) if t.get("status") == "failed"]
    return min(failed, key=lambda t: t.get("index", 0)) if failed else None


def ending(job: dict[str, Any]) -> tuple[int, list[str]]:
    """How a finished job ended: wait's exit code, and what to tell the user about it."""
    status = job["status"]
    if status == "completed":
        return 0, []
    if status == "completed-with-warnings":
        return EX_WARNINGS, [f"job {job['id']} completed with warnings:",
                             *task_warning_lines(job)[1:],
                             f"see afarmctl status {job['id']}; submit --strict makes such"
                             " a job fail"]
    if status == "failed":
        t = first_failure(job)
        lines = [f"job {job['id']} failed"
                 + (f": task {t['id']} ({t['label']}) failed: {t.get('error') or '?'}"
                    if t else "")]
        tries = (t or {}).get("failures") or []
        if len(tries) > 1:
            slaves = sorted({str(f.get("slave")) for f in tries})
            lines.append(f"  it failed {len(tries)} times, on {', '.join(slaves)}")
        task = f" --task {t['id']}" if t else ""
        lines.append(f"see afarmctl logs {job['id']}{task} for the task's output")
        return 1, lines
    return 1, [f"job {job['id']} {status}"]


def wait_for(client: Client, job_id: int, quiet: bool = False) -> int:
    """Show a progress bar until the job ends; 0 if it completed, 3 if it completed with
    warnings, else 1. Says why a job failed (unless quiet: --json)."""
    bar = ProgressBar(sys.stderr, enabled=not quiet)
    job = ops.wait(client, job_id, bar.update)
    bar.close(job)
    code, lines = ending(job)
    if not quiet:
        for line in lines:
            print(printable(line), file=sys.stderr, flush=True)
    return code


def cmd_wait(args: argparse.Namespace, client: Client) -> int:
    code = wait_for(client, args.job, quiet=args.json)
    job = ops.job(client, args.job)
    _print(args, job, f"job {args.job} {job['status']}")
    return code


def cmd_fetch(args: argparse.Namespace, client: Client) -> int:
    out = Path(args.output or f"afarm-job-{args.job}")
    job = ops.job(client, args.job)
    paths = ops.fetch(client, args.job, out, force=getattr(args, "force", False), found=job)
    _print(args, [str(p) for p in paths],
           f"{len(paths)} files in {out}/" if paths else f"job {args.job} has no outputs yet")
    if job["status"] in ("failed", "canceled"):
        _, lines = ending(job)
        for line in lines:
            print(printable(line), file=sys.stderr, flush=True)
        return 1
    if job["status"] == "completed-with-warnings" and not args.json:
        print(f"note: job {args.job} completed with warnings; its frames may be wrong"
              f" (afarmctl status {args.job})", file=sys.stderr, flush=True)
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
    lines = [f"{'NAME':<14} {'STATE':<12} {'FOR':>6} {'S/FRAME':>8} {'RUNNING':<10} "
             f"{'BLOCKLISTED FOR':<16} LAST ERROR"]
    for s in slaves:
        running = ",".join(map(str, s["running"])) or "-"
        blocked = ",".join(f"job {j}" for j in s.get("blocklisted_for", [])) or "-"
        spf = (s.get("benchmark") or {}).get("seconds_per_frame")
        bench = f"{spf:.3g}" if isinstance(spf, int | float) else "-"
        last = s.get('last_error') or '-'
        found = s.get("discovered")
        if isinstance(found, dict) and not s.get("last_error"):
            last = f"{found['fingerprint']} at {found['address']}"
        lines.append(f"{s['name']:<14} {shown(s.get('shown_state') or s['state']):<12}"
                     f" {duration(s.get('seconds_in_state')):>6} {bench:>8} {running:<10}"
                     f" {blocked:<16} {last}")
        for key, why in (s.get("quarantined_versions") or {}).items():
            lines.append(f"{'':<14} quarantined for {key.replace('/', ' ')}: {why}")
        if s.get("discovery_warning"):
            lines.append(f"{'':<14} WARNING: {s['discovery_warning']}")
    _print(args, slaves, "\n".join(lines) if slaves else "no slaves defined")
    return 0


def duration(seconds: float | None) -> str:
    """Time in a state, short: 45s, 12m, 3h, 2d."""
    if not isinstance(seconds, int | float):
        return "-"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{int(seconds // size)}{unit}"
    return f"{int(max(seconds, 0))}s"


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
    if rep.get("days"):  # the machines' own draw, awake (idle and tasks) versus asleep
        lines += ["", "per day:", f"{'DAY':<12} {'KWH AWAKE':>10} {'KWH ASLEEP':>11}"
                  f" {'AWAKE H':>8} {'ASLEEP H':>9}"]
        lines += [f"{d['day']:<12} {figure(d['kwh_awake']):>10} {figure(d['kwh_asleep']):>11}"
                  f" {figure(d['awake_hours']):>8} {figure(d['asleep_hours']):>9}"
                  for d in rep["days"]]
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
    if args.action == "wake":
        woke = ops.wake_slave(client, args.name)
        _print(args, woke, f"{woke['name']}: magic packet sent to {woke['mac']};"
                           " afarmctl slaves shows it waking, then testing and idle")
        return 0
    if args.action in ("drain", "undrain"):
        got = ops.drain_slave(client, args.name, args.action == "drain")
        running = int(got.get("running") or 0)
        text = (f"{got['name']}: draining, takes no new task"
                + (f"; {running} running finish first" if running else "")
                if got.get("drained") else f"{got['name']}: {shown(got['state'])},"
                " takes tasks again")
        _print(args, got, text)
        return 0
    if args.action == "test":
        rec = ops.test_slave(client, args.name)
        checks = [f"  {'ok  ' if c.get('ok') else 'FAIL'} {c.get('name')}: {c.get('detail')}"
                  for c in rec.get("checks", [])]
        head = (f"{rec['name']}: passed, {rec['state']}" if rec.get("passed")
                else f"{rec['name']}: {rec['state']}: {rec.get('reason')}")
        _print(args, rec, "\n".join([head, *checks]))
        return 0 if rec.get("passed") else 1
    if args.action in ("accept", "reject"):
        return _accept_or_reject(args, client)
    if args.name:
        raise UsageError("slave token takes no NAME (did you mean: slave test NAME?)")
    answer = ops.enroll_token(client, args.ttl, args.replace)
    _print(args, answer, f"one-time token, valid {args.ttl} s: {answer['token']}\n"
                         f"on the slave, as root: {answer['command']}")
    return 0


def _accept_or_reject(args: argparse.Namespace, client: Client) -> int:
    if not args.name:
        raise UsageError(f"give the slave's name: afarmctl slave {args.action} NAME")
    if args.action == "reject":
        _print(args, ops.reject_slave(client, args.name), f"forgot {args.name}")
        return 0
    found = ops.pending_slave(client, args.name)
    print(f"slave {found['name']} at {found['address']} (afarm {found['version']},"
          f" MAC {', '.join(found['macs']) or '-'})\n"
          f"  SSH host key fingerprint: {found['fingerprint']}\n"
          "  compare it on the slave: ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub",
          file=sys.stderr if args.json else sys.stdout)
    if found.get("warning"):
        raise OperationFailed(f"not accepted: {found['warning']}")
    if not args.yes:
        if not sys.stdin.isatty():
            raise UsageError("confirm on a terminal, or give --yes after comparing the"
                             " fingerprint")
        if input("accept this slave with this fingerprint? [y/N] ").strip().lower() \
                not in ("y", "yes"):
            print("nothing accepted")
            return 1
    answer = ops.accept_slave(client, args.name, found["fingerprint"])
    _print(args, answer, f"{args.name} enrolled with host key {answer['fingerprint']};"
                         " it is tested now and then takes work (afarmctl slaves)")
    return 0


def cmd_app(args: argparse.Namespace, client: Client) -> int:
    if args.action == "list":
        if args.name or args.version or args.source:
            raise UsageError("app list takes no NAME, VERSION or ARCHIVE")
        versions = ops.app_list(client)
        rows = []
        for v in versions:
            rows.append(f"{v['package']:<12} {v['version']:<12} {v['arch']:<6}"
                        f" {v['size'] / 1e6:>9.1f} MB  {v['unpacked'] / 1e6:>9.1f} MB unpacked  "
                        + (", ".join(v["slaves"]) or "(on no slave yet)"))
            rows += [f"{'':<12} quarantined on {slave}: {why}"
                     for slave, why in (v.get("quarantined") or {}).items()]
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
                        args.executable,
                        Path(args.definition) if args.definition else None)
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
