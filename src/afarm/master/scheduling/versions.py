# SPDX-License-Identifier: MIT
"""Which version of an application a job runs: Debian-dependency-style constraints
(``blender (>= 4.2), blender (<< 5)``) matched against the pool's versions.

Versions compare as Debian's do (debian.debian_support.Version). A constraint names one
package; its clauses must all hold (alternatives with ``|`` are refused: a job runs one
program). The newest version that satisfies every clause wins.
"""

import re
from collections.abc import Iterable
from dataclasses import dataclass

from debian.debian_support import Version

from afarm.errors import UsageError

_CLAUSE = re.compile(
    r"^\s*(?P<name>[a-z0-9][a-z0-9.+-]{0,62})\s*"
    r"(?:\(\s*(?P<op><<|<=|=|>=|>>)\s*(?P<version>[A-Za-z0-9.+~:-]{1,64})\s*\))?\s*$")
OPERATORS = ("<<", "<=", "=", ">=", ">>")
MAX_CONSTRAINT = 512


@dataclass(frozen=True)
class Clause:
    op: str  # one of OPERATORS, or "" for any version
    version: str

    def allows(self, version: str) -> bool:
        if not self.op:
            return True
        a, b = Version(version), Version(self.version)
        return {"<<": a < b, "<=": a <= b, "=": a == b, ">=": a >= b, ">>": a > b}[self.op]

    def __str__(self) -> str:
        return f"({self.op} {self.version})" if self.op else ""


@dataclass(frozen=True)
class Constraint:
    package: str
    clauses: tuple[Clause, ...]

    def allows(self, version: str) -> bool:
        return all(c.allows(version) for c in self.clauses)

    def __str__(self) -> str:
        parts = [f"{self.package} {c}".strip() for c in self.clauses if c.op]
        return ", ".join(parts) or self.package


def valid_version(text: str) -> str:
    """A Debian version string as given, or UsageError saying what is wrong with it."""
    if not re.fullmatch(r"[0-9][A-Za-z0-9.+~-]{0,63}", text or ""):
        raise UsageError(f"version {text!r} is not a Debian-style version: start with a"
                         " digit, then letters, digits and . + ~ - (e.g. 4.2.3)")
    try:
        Version(text)
    except ValueError as exc:
        raise UsageError(f"version {text!r}: {exc}") from None
    return text


def parse_constraint(text: str) -> Constraint:
    """``NAME``, ``NAME (OP VERSION)``, clauses separated by commas, one package."""
    if not isinstance(text, str) or not text.strip() or len(text) > MAX_CONSTRAINT:
        raise UsageError(f"--app must be like 'blender (>= 4.2), blender (<< 5)', at most"
                         f" {MAX_CONSTRAINT} characters")
    if "|" in text:
        raise UsageError("--app: alternatives ('|') are not supported: a job runs one"
                         " application; give clauses of one package separated by commas")
    package = ""
    clauses = []
    for raw in text.split(","):
        m = _CLAUSE.match(raw)
        if not m:
            raise UsageError(f"--app: {raw.strip()!r} is not NAME or NAME (OP VERSION) with OP"
                             f" one of {' '.join(OPERATORS)}, e.g. 'blender (>= 4.2)'")
        if package and m["name"] != package:
            raise UsageError(f"--app names {package!r} and {m['name']!r}: every clause must"
                             " name the same application")
        package = m["name"]
        if m["op"]:
            clauses.append(Clause(m["op"], valid_version(m["version"])))
    return Constraint(package, tuple(clauses))


def newest(versions: Iterable[str]) -> list[str]:
    """Versions newest first (Debian order), without duplicates."""
    return sorted(set(versions), key=Version, reverse=True)


def choose(constraint: Constraint, versions: Iterable[str]) -> str:
    """The newest version satisfying the constraint; UsageError listing what exists."""
    have = newest(versions)
    for v in have:
        if constraint.allows(v):
            return v
    if not have:
        raise UsageError(f"no version of {constraint.package!r} is in the pool; add one"
                         f" with afarmctl app add {constraint.package} VERSION ARCHIVE")
    raise UsageError(f"no version of {constraint.package} satisfies '{constraint}'; the pool"
                     f" has: {', '.join(have)}")
