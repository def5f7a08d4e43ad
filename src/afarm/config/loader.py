# SPDX-License-Identifier: MIT
"""Load a configobj file against a shipped spec, reporting every problem at once."""

import logging
from collections.abc import Iterable
from importlib import resources
from pathlib import Path
from typing import Any

from configobj import ConfigObj, ConfigObjError, flatten_errors, get_extra_values
from validate import Validator, VdtValueError

from afarm.errors import ConfigError

log = logging.getLogger(__name__)


def spec_lines(name: str) -> list[str]:
    """The lines of a spec shipped in this package, e.g. ``master``."""
    text = resources.files("afarm.config").joinpath(f"{name}.spec").read_text("utf-8")
    return text.splitlines()


def _where(section_path: Iterable[str], key: str | None) -> str:
    parts = [f"[{s}]" for s in section_path]
    return " ".join(parts + ([key] if key else [])) or "the file's top level"


_KINDS = {"integer": "a whole number", "float": "a number", "boolean": "yes or no",
          "string": "a text", "string_list": "a comma-separated list of texts",
          "force_list": "one text or a comma-separated list of texts",
          "int_list": "a comma-separated list of whole numbers", "ip_addr": "an IP address"}


def allowed(check: str) -> str:
    """What a spec check such as ``integer(min=1, max=100, default=3)`` accepts, in words."""
    try:
        name, args, kwargs, _ = Validator()._parse_with_caching(check)
    except Exception:  # an unparsable check: say what the spec says
        return check
    if name == "option":
        return "one of " + ", ".join(repr(a) if a == "" else str(a) for a in args)
    what = _KINDS.get(name, name)
    lo, hi = kwargs.get("min"), kwargs.get("max")
    if lo is not None and hi is not None:
        return f"{what} from {lo} to {hi}"
    if lo is not None:
        return f"{what}, at least {lo}"
    if hi is not None:
        return f"{what}, at most {hi}"
    return what


def _expected(cfg: Any, section_path: list[str], key: str) -> str:
    section = cfg
    for name in section_path:
        section = section[name]
    return allowed(str((section.configspec or {}).get(key, "")))


def _problem(cfg: Any, section_path: list[str], key: str, spec: str) -> str:
    section = cfg
    for name in section_path:
        section = section[name]
    value = section.get(key)
    shown = ", ".join(value) if isinstance(value, list) else value
    return (f"{_where(section_path, key)} = {shown!r} is not allowed; give"
            f" {_expected(cfg, section_path, key)} (see afarm.conf(5), {spec}.spec)")


def load(
    path: str | Path | None,
    spec: str,
    *,
    text: list[str] | None = None,
    warn: bool = True,
) -> dict[str, Any]:
    """Validated config as plain dicts; raises ConfigError listing every problem.

    ``path`` None with ``text`` None loads only the defaults of ``spec``.
    """
    label = str(path) if path is not None else f"<{spec} defaults>"
    source: Any = text if text is not None else (str(path) if path is not None else [])
    try:
        cfg = ConfigObj(
            source,
            configspec=spec_lines(spec),
            interpolation=False,
            file_error=path is not None and text is None,
            encoding="utf-8",
        )
    except OSError as exc:
        why = exc.strerror or ("it does not exist" if path is not None and not Path(path).exists()
                               else "this user may not read it")
        raise ConfigError(label, [f"cannot read the file ({why}); check the path"]
                          ) from exc
    except ConfigObjError as exc:
        syntax = [f"line {e.line_number}: {e.msg}: {e.line!r}" for e in exc.errors] \
            or [str(exc)]
        raise ConfigError(label, syntax) from exc

    result = cfg.validate(Validator(), preserve_errors=True)
    problems: list[str] = []
    if result is not True:
        for section_path, key, error in flatten_errors(cfg, result):
            where = _where(section_path, key)
            if error is False:
                if key is None:
                    problems.append(f"{where}: section is missing; add it")
                else:
                    problems.append(f"{where}: required key is missing; set it to"
                                    f" {_expected(cfg, section_path, key)}")
            elif isinstance(error, VdtValueError | Exception):
                problems.append(_problem(cfg, section_path, key, spec) if key is not None
                                else f"{where}: {error}")
    if problems:
        raise ConfigError(label, problems)
    if warn:
        for section_path, name in get_extra_values(cfg):
            log.warning("%s: unknown key or section %s is ignored; check its spelling",
                        label, _where(section_path, name))
    return _plain(cfg)


def _plain(section: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in section.items():
        out[key] = _plain(value) if hasattr(value, "items") else value
    return out
