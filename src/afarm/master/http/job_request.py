# SPDX-License-Identifier: MIT
"""Bounds on every number and size in a job request, checked before any planning.

The application validates its own parameters afterwards; this is the cheap check that
keeps one request from costing the master unbounded memory or time: the number of tasks a
job would make (frames x tiles, items / chunk) is counted arithmetically here, so a
request for half a million tasks is refused in microseconds instead of being planned.
"""

import math
import re
from typing import Any

from afarm.applications.base import int_param
from afarm.errors import UsageError
from afarm.model.frames import parse_tiles

KEYS = {"name", "application", "params", "files", "priority", "timeout", "require_tags",
        "policy", "deadline", "min_memory_mib", "gpus", "device", "app"}
DEVICES = ("CPU", "GPU")
FLAGS = {"strict"}  # true/false options
POLICY_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
MAX_DEADLINE = 1e11  # epoch seconds (the year 5138): anything later is a mistake
MAX_NAME = 200
APP_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
MAX_TIMEOUT = 7 * 24 * 3600  # a task may run a week at most
MAX_FILES = 10_000
MAX_FRAMES_TEXT = 10_000
MAX_CHUNK = 100_000
MAX_FRAMES = 1_000_000
_PART = re.compile(r"^(-?\d{1,9})(?:-(-?\d{1,9})(?:x(\d{1,9}))?)?$")


def _int(body: dict[str, Any], key: str, lo: int, hi: int, flag: str, unit: str = "") -> int:
    value = body[key]
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise UsageError(f"{flag} must be a whole number{unit} from {lo} to {hi},"
                         f" not {str(value)[:40]!r}")
    return value


def check(body: Any, max_tasks: int) -> dict[str, Any]:
    """The request's top-level fields, bounded; raises UsageError naming what is wrong."""
    if not isinstance(body, dict):
        raise UsageError("the request body must be a JSON object")
    unknown = sorted(set(body) - KEYS - FLAGS)
    if unknown:
        raise UsageError(f"unknown field {unknown[0][:40]!r} in the job request; it takes: "
                         + ", ".join(sorted(KEYS | FLAGS)))
    name, app = body.get("name"), body.get("application")
    if not isinstance(name, str) or not name.strip() or len(name) > MAX_NAME:
        raise UsageError(f"name must be a non-empty text of at most {MAX_NAME} characters")
    if any(ord(c) < 32 for c in name):
        raise UsageError("name must not contain control characters")
    if not isinstance(app, str) or not APP_RE.match(app):
        raise UsageError("application must be the name of one of the master's applications"
                         " (letters, digits, '.', '_', '-'; at most 64)")
    params = body.get("params", {})
    if not isinstance(params, dict):
        raise UsageError("params must be a JSON object")
    files = body.get("files", [])
    if not isinstance(files, list) or len(files) > MAX_FILES:
        raise UsageError(f"files must be a list of at most {MAX_FILES} {{name, sha256}}")
    out = {"name": name.strip(), "application": app, "params": params, "files": files,
           "priority": 50, "timeout": None}
    if "priority" in body:
        out["priority"] = _int(body, "priority", 0, 100, "--priority")
    if body.get("timeout") is not None:
        out["timeout"] = _int(body, "timeout", 1, MAX_TIMEOUT, "--timeout", " of seconds")
    tags = body.get("require_tags", [])
    if not isinstance(tags, list) or len(tags) > 64 or not all(
            isinstance(t, str) and 0 < len(t) <= 64 for t in tags):
        raise UsageError("--require-tag must be a list of at most 64 tags of 1 to 64"
                         " characters")
    out["require_tags"] = tags
    constraint = body.get("app")  # 'blender (>= 4.2)': which pool version (versions.py)
    if constraint is not None and (not isinstance(constraint, str) or len(constraint) > 512):
        raise UsageError("app must be a constraint like 'blender (>= 4.2)' of at most 512"
                         " characters")
    out["app"] = constraint or ""
    out["scheduling"] = scheduling(body)
    n = task_count(params)
    if n > max_tasks:
        raise UsageError(
            f"this job would make {n} tasks; this master plans at most {max_tasks} per job"
            " ([scheduler] max_tasks_per_job): use a larger --chunk, fewer --tiles or fewer"
            " frames or items, or split it into several jobs")
    strict = body.get("strict", False)
    if not isinstance(strict, bool):
        raise UsageError("strict must be true or false (afarmctl submit --strict)")
    out["strict"] = strict
    return out


def scheduling(body: dict[str, Any]) -> dict[str, Any]:
    """The job's ranking policy, deadline, slave minimums and device, as given (the policy's
    existence is checked by the caller, which knows the master's policies)."""
    out: dict[str, Any] = {}
    policy = body.get("policy")
    if policy is not None:
        if not isinstance(policy, str) or not POLICY_RE.match(policy):
            raise UsageError("--policy must name a ranking policy (letters, digits, '.', '_',"
                             " '-'; at most 64): see afarmctl slaves --rank")
        out["policy"] = policy
    deadline = body.get("deadline")
    if deadline is not None:
        if isinstance(deadline, bool) or not isinstance(deadline, int | float) \
                or not 0 < deadline < MAX_DEADLINE:
            raise UsageError("deadline must be a time as seconds since 1970 (afarmctl"
                             " --deadline takes 2h, 90m or 2026-12-24T18:00)")
        out["deadline"] = float(deadline)
    for key, hi, flag in (("min_memory_mib", 1 << 30, "--min-memory"),
                          ("gpus", 64, "--gpus")):
        if body.get(key) is not None:
            out[key] = _int(body, key, 0, hi, flag)
    device = body.get("device")
    if device is not None:
        if device not in DEVICES:
            raise UsageError(f"--device must be CPU or GPU, not {str(device)[:20]!r}")
        if device == "GPU":  # CPU is what every job gets without asking
            out["device"] = device
            # one GPU slot per task: only slaves with a GPU can take it
            out["gpus"] = max(1, out.get("gpus", 0))
    return out


def frame_count(spec: str) -> int:
    """At most how many frames ``spec`` names, without listing them (parts that do not
    parse count 0: the application refuses them with its own message)."""
    if len(spec) > MAX_FRAMES_TEXT:
        raise UsageError(f"--frames is {len(spec)} characters long; at most"
                         f" {MAX_FRAMES_TEXT}: use ranges (1-240) or steps (1-100x5)")
    total = 0
    for part in spec.split(","):
        m = _PART.match(part.strip())
        if not m:
            continue
        start = int(m.group(1))
        end = int(m.group(2)) if m.group(2) is not None else start
        step = int(m.group(3)) if m.group(3) is not None else 1
        if end >= start and step >= 1:
            total += (end - start) // step + 1
    return total


def task_count(params: dict[str, Any]) -> int:
    """At most how many tasks the job's parameters make, follow-ups included."""
    frames = params.get("frames")
    items = params.get("items")
    if isinstance(frames, str | int) and not isinstance(frames, bool):
        units = frame_count(str(frames))
        if units > MAX_FRAMES:
            raise UsageError(f"--frames names {units} frames (counting repeats); a job"
                             f" renders at most {MAX_FRAMES}")
    elif isinstance(items, list):
        units = len(items)
    else:
        return 1
    tiles = params.get("tiles")
    if tiles:
        cols, rows = parse_tiles(str(tiles))
        n = units * (cols * rows + 1)  # the tiles and a stitch of each frame
    else:
        n = math.ceil(units / int_param(params, "chunk", 1, 1, MAX_CHUNK))
    return n + (1 if params.get("encode") else 0)
