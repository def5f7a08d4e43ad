# SPDX-License-Identifier: MIT
"""The exceptions every part of afarm raises; `cli.main` and the daemons map them to exit codes."""


class AfarmError(Exception):
    """Base of afarm's own errors; the message names what is wrong and how to fix it."""


class UsageError(AfarmError):
    """The caller asked for something malformed (exit 2); nothing was stored."""


class OperationFailed(AfarmError):
    """A well-formed request that could not be carried out (exit 1)."""


class ConfigError(AfarmError):
    """A configuration file is invalid (daemons exit 78, EX_CONFIG)."""

    def __init__(self, path: str, problems: list[str]) -> None:
        self.path = path
        self.problems = problems
        lines = "\n".join(f"  - {p}" for p in problems)
        super().__init__(f"{path}: {len(problems)} problem(s):\n{lines}")


class IllegalTransition(AfarmError):
    """A task was asked to move between two statuses the status table does not connect."""
