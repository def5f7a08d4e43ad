# SPDX-License-Identifier: MIT
"""Write etc/afarm/master.conf and slave.conf from the specs: every key commented out.

Run as ``python3 -m afarm.config.sample etc/afarm``; a test checks the files are current.
Each key appears as ``#key = default`` below its documentation, so uncommenting a line
changes nothing until its value is edited (a test checks that too).
"""

import sys
from pathlib import Path

from afarm.config.manpage import Key, Section, format_value, read_spec

# spec -> file name in etc/afarm
SAMPLES = {"master": "master.conf", "slave": "slave.conf"}


def _key_lines(key: Key) -> list[str]:
    out = [f"# {line}" if line else "#" for line in key.doc]
    value = key.name.upper() if key.required else format_value(key.default)
    if key.check == "option":
        out.append(f"# One of: {', '.join(key.args)}.")
    if key.name == "__many__":  # any number of NAME = VALUE lines
        return out + ["#NAME = VALUE"]
    return out + [f"#{key.name} = {value}"]


def _section_lines(section: Section) -> list[str]:
    out: list[str] = []
    if section.path and section.path[-1] == "__many__":
        # A repeated section: one example, entirely commented out.
        depth = len(section.path)
        out += [f"# One {'[' * depth}NAME{']' * depth} sub-section per entry, for example:",
                f"#{'[' * depth}example{']' * depth}"]
        for key in section.keys:
            out += _key_lines(key)
        return out
    if section.path:
        depth = len(section.path)
        out += [f"# {line}" if line else "#" for line in section.doc]
        # inside a repeated section's example, its sub-sections are commented out too
        mark = "#" if "__many__" in section.path else ""
        out.append(f"{mark}{'[' * depth}{section.path[-1]}{']' * depth}")
    for key in section.keys:
        out += _key_lines(key)
    return out


def render(spec_name: str) -> str:
    spec = read_spec(spec_name)
    out = ["# SPDX-License-Identifier: MIT"]
    out += [f"# {line}" if line else "#" for line in spec.description]
    out += ["#",
            "# Every key is shown commented out at its default: to change one, uncomment it",
            "# and edit its value. afarm.conf(5) documents every key. Written from the",
            f"# shipped {spec_name}.spec by: python3 -m afarm.config.sample"]
    for section in spec.sections:
        out.append("")
        out += _section_lines(section)
    return "\n".join(out) + "\n"


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python3 -m afarm.config.sample DIRECTORY", file=sys.stderr)
        return 2
    for spec_name, file_name in SAMPLES.items():
        (Path(argv[0]) / file_name).write_text(render(spec_name), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
