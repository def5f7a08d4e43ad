# SPDX-License-Identifier: MIT
"""A pool version's own application definition (afarmctl app add --definition FILE).

The text is an application definition file as the master's applications directory holds
(application.spec): it is checked here when the version is added, whole, so a bad one is
refused naming its key instead of failing later on every slave that installs it.
"""

import re
from typing import Any

from afarm.applications.base import Application
from afarm.config.loader import load, spec_lines
from afarm.errors import AfarmError, ConfigError, UsageError

MAX_DEFINITION = 4096  # characters (it travels in the URL); a definition is a dozen keys
_SPEC_KEY = re.compile(r"^([a-z_]+)\s*=")


def _spec_keys() -> set[str]:
    return {m[1] for line in spec_lines("application") if (m := _SPEC_KEY.match(line))}


def parse_definition(package: str, text: str) -> dict[str, Any]:
    """The checked definition of one version of `package`; UsageError naming the bad key."""
    if not isinstance(text, str) or not text.strip():
        raise UsageError("--definition: the file is empty; give an application definition"
                         " (kind = ..., executable = ..., see afarm.conf(5))")
    if len(text) > MAX_DEFINITION or "\0" in text:
        raise UsageError(f"--definition: at most {MAX_DEFINITION} characters of text"
                         " (comments left out)")
    where = f"the definition of {package}"
    lines = text.splitlines()
    try:
        conf = load(None, "application", text=lines, warn=False)
    except ConfigError as exc:
        raise UsageError(f"--definition: {where}: " + "; ".join(exc.problems)) from None
    unknown = sorted(set(conf) - _spec_keys())
    if unknown:
        raise UsageError(f"--definition: {where}: unknown key {unknown[0]!r}; the keys are"
                         " those of an application definition (afarm.conf(5))")
    if conf.get("runs_on") == "master":
        raise UsageError(f"--definition: {where}: runs_on = master; a pool version runs on"
                         " slaves (leave runs_on out)")
    build(package, conf, "--definition")
    return conf


def build(package: str, conf: dict[str, Any], what: str = "the version's definition"
          ) -> Application:
    """The Application a definition describes, as master and slaves build it."""
    from afarm.applications.registry import KINDS
    kind = conf.get("kind")
    if kind not in KINDS:
        raise UsageError(f"{what}: kind {kind!r} is not one of {', '.join(sorted(KINDS))}")
    try:
        return KINDS[str(kind)](package, dict(conf))
    except ConfigError as exc:
        raise UsageError(f"{what}: " + "; ".join(exc.problems)) from None
    except (AfarmError, KeyError, ValueError, TypeError) as exc:
        raise UsageError(f"{what}: {exc}") from None
