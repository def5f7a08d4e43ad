# SPDX-License-Identifier: MIT
"""slave.conf, read the one way afarm-slave and afarm-slave-shell both use."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from afarm.config.loader import load

DEFAULT_CONFIG = Path("/etc/afarm/slave.conf")


def load_slave_config(path: Path | None) -> dict[str, Any]:
    """The [slave] section, its name defaulting to the host name. Without ``path``, the
    default file, or the spec's defaults when that file does not exist (a slave works
    unconfigured)."""
    if path is None:
        path = DEFAULT_CONFIG if DEFAULT_CONFIG.exists() else None
    conf = load(path, "slave")
    section: dict[str, Any] = conf["slave"]
    section["name"] = section["name"] or os.uname().nodename
    section["sandbox"] = dict(conf["sandbox"])
    return section
