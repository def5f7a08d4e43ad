# SPDX-License-Identifier: MIT
"""Find the application definitions in a directory and build each from its kind."""

import logging
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from afarm.applications.base import Application
from afarm.applications.blender import BlenderApp
from afarm.applications.command import CommandApp
from afarm.applications.ffmpeg import FfmpegApp
from afarm.config.loader import load
from afarm.errors import ConfigError

log = logging.getLogger(__name__)

# The one place that maps a kind to its class: a new kind is one line here and a module.
KINDS: dict[str, Callable[[str, dict[str, Any]], Application]] = {
    "blender": BlenderApp,
    "ffmpeg": FfmpegApp,
    "command": CommandApp,
}
_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,62}$")


def load_application(path: Path) -> Application:
    name = path.name.removesuffix(".conf")
    if not _NAME.match(name):
        raise ConfigError(str(path), [
            "the file name must be NAME.conf with NAME in lower-case letters, digits, '.', '_'"
            " or '-'; rename the file"])
    conf = load(path, "application")
    return KINDS[conf["kind"]](name, conf)


def load_applications(directory: Path) -> dict[str, Application]:
    """Every *.conf in `directory`; raises one ConfigError listing every broken file."""
    apps: dict[str, Application] = {}
    problems: list[str] = []
    if not directory.is_dir():
        raise ConfigError(str(directory), [
            "the applications directory does not exist; create it or set"
            " [master] applications_dir"])
    for path in sorted(directory.glob("*.conf")):
        try:
            app = load_application(path)
        except ConfigError as exc:
            problems += [f"{path.name}: {p}" for p in exc.problems]
            continue
        apps[app.name] = app
    if problems:
        raise ConfigError(str(directory), problems)
    return apps
