# SPDX-License-Identifier: MIT
"""The Application protocol: what the master and the slaves need from a kind of program."""

import re
import shutil
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Protocol

from afarm.errors import UsageError
from afarm.model.job import InputFile, TaskSpec


@dataclass
class RunContext:
    """Where a task's files are, on whichever machine builds its argv."""

    inputs: list[Path]
    out_dir: Path
    scratch: Path
    outputs: list[str]  # basenames the task must leave in out_dir
    in_dir: Path | None = None  # where the inputs are linked; everything a task reads


@dataclass(frozen=True)
class Command:
    argv: list[str]
    stdout_name: str | None = None  # file in out_dir that receives stdout, else the log


class Application(Protocol):
    name: str
    kind: str
    description: str
    runs_on: str
    timeout: int

    def validate(self, params: dict[str, Any], files: list[InputFile]) -> dict[str, Any]:
        """Checked, normalised job parameters; raises UsageError naming the bad one."""
        ...

    def plan(self, job_name: str, params: dict[str, Any],
             files: list[InputFile]) -> list[TaskSpec]:
        """Split a validated job into tasks, follow-ups included."""
        ...

    def check_inputs(self, paths: list[Path]) -> None:
        """Look inside the uploaded inputs before the job is accepted."""
        ...

    def commands(self, kind: str, params: dict[str, Any], ctx: RunContext) -> list[Command]:
        """The processes one task runs, in order; every argv element is one argument and
        no shell ever sees it."""
        ...

    def failure(self, exit_code: int, log_lines: list[str]) -> str | None:
        """Why a finished process failed, from its exit code and output; None if it did not."""
        ...

class ConfiguredApp:
    """The keys every application definition has (application.spec); kinds add theirs."""

    kind = ""

    def __init__(self, name: str, conf: dict[str, Any]) -> None:
        self.name = name
        self.conf = dict(conf)  # travels with each pool version of it (master/pool/)
        self.description = str(conf.get("description", ""))
        self.executable = str(conf["executable"])
        self.timeout = int(conf.get("timeout", 3600))
        self.runs_on = str(conf.get("runs_on", "slave"))

    def check_inputs(self, paths: list[Path]) -> None:
        """Most kinds take their inputs as they come."""


def script_path(name: str) -> Path:
    """A script afarm ships (the only kind Blender is allowed to run)."""
    return Path(str(resources.files("afarm.applications").joinpath("scripts", name)))


def resolve_executable(executable: str) -> str:
    """An absolute path for the configured program; the name is looked up in PATH."""
    if "/" in executable:
        return executable
    return shutil.which(executable) or executable


# Lines that look like errors and are not: EEVEE and Workbench in background mode try the
# display's EGL first; these come before "Managed to successfully fallback to surfaceless
# EGL rendering!" on every headless slave (measured with Debian's Blender 3.4).
HARMLESS_LINE = re.compile(r"^EGL Error \(0x300[19]\): EGL_(NOT_INITIALIZED|BAD_MATCH):")


def check_keys(params: dict[str, Any], allowed: set[str], app: str) -> None:
    unknown = sorted(set(params) - allowed)
    if unknown:
        raise UsageError(
            f"application {app!r} has no option {unknown[0]!r}; it accepts: "
            + ", ".join(sorted(allowed))
        )


def plain_name(name: str, what: str) -> str:
    """A file name with no directory part, so it can never leave the job's directory."""
    if "\\" in name:
        # Named on its own: Windows paths (textures\\wood.png) are the usual cause.
        raise UsageError(f"{what} {name!r} holds a backslash ('\\'), which afarm does not"
                         " allow in file names (on Windows it separates folders); rename the"
                         " file or use '/' between folders")
    if (not name or name in (".", "..") or "/" in name or "\0" in name
            or len(name.encode()) > 255 or any(ord(c) < 32 for c in name)):
        raise UsageError(f"{what} {name!r} must be a plain file name (no '/', no control "
                         "characters, at most 255 bytes)")
    return name


def relative_name(name: str, what: str) -> str:
    """A relative path of plain names (textures/wood.png): it stays inside any directory."""
    if not name or name.startswith("/") or len(name.encode()) > 1024:
        raise UsageError(f"{what} {name!r} must be a relative path inside the job")
    for part in name.split("/"):
        plain_name(part, what)
    return name


def int_param(params: dict[str, Any], key: str, default: int, lo: int, hi: int) -> int:
    value = params.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise UsageError(f"--{key} must be a whole number from {lo} to {hi}")
    try:
        n = int(value)
    except ValueError:
        raise UsageError(f"--{key} {value!r} is not a whole number; give {lo} to {hi}") from None
    if not lo <= n <= hi:
        raise UsageError(f"--{key} {n} is out of range; give {lo} to {hi}")
    return n
