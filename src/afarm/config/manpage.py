# SPDX-License-Identifier: MIT
"""Write man/afarm.conf.5 from the config specs, so the page and the code never disagree.

Run as ``python3 -m afarm.config.manpage man/afarm.conf.5``; a test checks the file is
current. A key's documentation is the comment block right above it in its spec; its type,
default, range and values come from the check (``integer(min=1, default=3)``).
``read_spec`` is also what afarm.config.sample uses to write the commented sample files.
"""

import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from validate import Validator

from afarm import __version__
from afarm.config.loader import spec_lines

# (spec, where the file lives, title of its part of the page), in the page's order.
FILES: tuple[tuple[str, str, str], ...] = (
    ("master", "/etc/afarm/master.conf", "MASTER.CONF"),
    ("slavedef", "/etc/afarm/slaves.d/NAME.conf", "SLAVES.D"),
    ("slave", "/etc/afarm/slave.conf", "SLAVE.CONF"),
    ("application", "/etc/afarm/applications.d/NAME.conf", "APPLICATIONS.D"),
)

_SECTION = re.compile(r"^(\[+)\s*([^\]]+?)\s*(\]+)$")
_KEY = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.+)$")
_NO_DEFAULT = object()


@dataclass
class Key:
    name: str
    check: str  # the check's function: string, integer, option, ...
    args: list[str]
    kwargs: dict[str, str]
    default: Any  # _NO_DEFAULT when the key is required
    doc: list[str]

    @property
    def required(self) -> bool:
        return self.default is _NO_DEFAULT


@dataclass
class Section:
    path: tuple[str, ...]  # () for the top level, ("slaves", "__many__") for a repeat
    doc: list[str] = field(default_factory=list)
    keys: list[Key] = field(default_factory=list)


@dataclass
class Spec:
    name: str
    description: list[str]
    sections: list[Section]

    def all_keys(self) -> list[tuple[Section, Key]]:
        return [(s, k) for s in self.sections for k in s.keys]


def _parse_check(text: str) -> tuple[str, list[str], dict[str, str], Any]:
    # configobj's own parser of checks, so quoting and list() work exactly as in validation.
    fun, args, kwargs, default = Validator()._parse_with_caching(text)
    return str(fun), [str(a) for a in args], {str(k): str(v) for k, v in kwargs.items()}, \
        _NO_DEFAULT if default is None else default


def read_spec(name: str) -> Spec:
    """The spec's description, sections and keys with their comment blocks."""
    description: list[str] = []
    top = Section(())
    sections = [top]
    current = top
    stack: list[str] = []
    pending: list[str] = []
    seen_item = False
    for raw in spec_lines(name):
        line = raw.strip()
        if not line:
            if not seen_item and pending:
                description += pending
            pending = []
            continue
        if line.startswith("#"):
            pending.append(line[1:].strip())
            continue
        m = _SECTION.match(line)
        if m:
            depth = len(m.group(1))
            stack = stack[:depth - 1] + [m.group(2)]
            current = Section(tuple(stack), doc=pending)
            sections.append(current)
        else:
            k = _KEY.match(line)
            if not k:
                raise ValueError(f"{name}.spec: cannot read the line {raw!r}")
            fun, args, kwargs, default = _parse_check(k.group(2))
            current.keys.append(Key(k.group(1), fun, args, kwargs, default, pending))
        pending = []
        seen_item = True
    return Spec(name, description, [s for s in sections if s.keys or s.path])


# ---------------------------------------------------------------------------- roff


def esc(text: str) -> str:
    """Text safe in roff: backslashes and hyphens escaped, no request at line start."""
    text = text.replace("\\", "\\e").replace("-", "\\-")
    return "\\&" + text if text[:1] in (".", "'") else text


def format_value(value: Any) -> str:
    """A default as configobj would read it back from the file."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | tuple):
        if not value:
            return ","  # configobj's empty list
        items = ", ".join(format_value(v) for v in value)
        return items + "," if len(value) == 1 else items
    text = str(value)
    if text == "" or text != text.strip() or any(c in text for c in ',#"\''):
        return '"' + text.replace('"', '\\"') + '"'
    return text


def _value_text(key: Key) -> list[str]:
    parts: list[str] = []
    if key.check == "option":
        parts.append("Values: " + ", ".join(f"\\fB{esc(a)}\\fR" for a in key.args) + ".")
    lo, hi = key.kwargs.get("min"), key.kwargs.get("max")
    if lo is not None and hi is not None:
        parts.append(f"Range: {esc(lo)} to {esc(hi)}.")
    elif lo is not None:
        parts.append(f"At least {esc(lo)}.")
    elif hi is not None:
        parts.append(f"At most {esc(hi)}.")
    if key.check in ("string_list", "list", "int_list", "force_list"):
        parts.append("A comma-separated list.")
    if key.required:
        parts.append("Required: there is no default.")
    else:
        shown = format_value(key.default)
        parts.append("Default: " + ("empty" if shown in ('""', ",") else
                                    f"\\fI{esc(shown)}\\fR") + ".")
    return parts


_TYPES = {"string": "text", "integer": "number", "boolean": "true|false",
          "string_list": "list", "force_list": "list"}


def _key(key: Key) -> list[str]:
    kind = "|".join(key.args) if key.check == "option" else _TYPES.get(key.check, key.check)
    return [".TP", f"\\fB{esc(key.name)}\\fR = \\fI{esc(kind)}\\fR",
            esc(" ".join(key.doc)) if key.doc else "(undocumented)",
            ".br", " ".join(_value_text(key))]


def _section_title(path: tuple[str, ...]) -> str:
    names = ["NAME" if p == "__many__" else p for p in path]
    return " ".join(f"[{'[' * i}{n}{']' * i}]" for i, n in enumerate(names))


def render() -> str:
    # .nh: no hyphenation, so paths, key names and values stay whole.
    out = ['.\\" SPDX-License-Identifier: MIT',
           '.\\" Generated from the config specs by: python3 -m afarm.config.manpage; do not edit.',
           f'.TH AFARM.CONF 5 "" "afarm {__version__}" "afarm manual"', ".nh",
           ".SH NAME", "afarm.conf \\- configuration files of the afarm render farm",
           ".SH SYNOPSIS", ".nf"]
    out += [esc(path) for _, path, _ in FILES]
    out += [".fi", ".SH DESCRIPTION",
            "afarm reads INI\\-style files (Python configobj syntax): \\fBkey = value\\fR"
            " lines in \\fB[section]\\fR blocks, \\fB[[sub\\-sections]]\\fR one level"
            " deeper, and comments from \\fB#\\fR to the end of the line. Lists are"
            " comma\\-separated (\\fBtags = gpu, fast\\fR; one element needs a trailing"
            " comma). Quote a value holding a comma or a \\fB#\\fR.",
            ".PP",
            "Every file is checked against a specification shipped with afarm. A file"
            " with errors is refused as a whole, and every error is reported with its"
            " section and key, so one run shows them all; the daemons then exit with"
            " status 78 (EX_CONFIG). Unknown keys are reported as warnings and ignored.",
            ".PP",
            "The files in \\fI/etc/afarm\\fR are configuration files of the Debian"
            " packages: the shipped \\fImaster.conf\\fR and \\fIslave.conf\\fR show every"
            " key commented out at its default, and changes survive upgrades. Slaves and"
            " applications are drop\\-in files, one per slave or application, so a new"
            " one never means editing a shipped file."]
    for spec_name, _path, title in FILES:
        spec = read_spec(spec_name)
        out += [f'.SH "{title}"', esc(" ".join(spec.description))]
        for section in spec.sections:
            if section.path and (section.keys or section.doc):
                out.append(f'.SS "{esc(_section_title(section.path))}"')
                if section.doc:
                    out.append(esc(" ".join(section.doc)))
            for key in section.keys:
                out += _key(key)
    out += [".SH FILES",
            ".TP", "\\fI/var/lib/afarm\\-master/known_hosts\\fR",
            "the host keys of the slaves, as the master checks them (written by"
            " enrolment)",
            ".TP", "\\fI/var/lib/afarm\\-master/.ssh/id_ed25519\\fR",
            "the key the master logs in to slaves with",
            ".SH EXAMPLE",
            "A slave defined by hand, \\fI/etc/afarm/slaves.d/render1.conf\\fR:",
            ".PP", ".RS", ".nf", "host = 192.0.2.21", "tags = gpu,", "slots = 2",
            ".fi", ".RE", ".PP",
            "The same file is written by \\fBafarm\\-slave enroll\\fR on the slave.",
            ".SH SEE ALSO",
            "\\fBafarm\\-master\\fR(8), \\fBafarm\\-slave\\fR(8),"
            " \\fBafarm\\-slave\\-shell\\fR(8), \\fBafarmctl\\fR(1)"]
    return "\n".join(out) + "\n"


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python3 -m afarm.config.manpage OUTPUT", file=sys.stderr)
        return 2
    Path(argv[0]).write_text(render(), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
