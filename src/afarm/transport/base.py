# SPDX-License-Identifier: MIT
"""The Transport protocol the master's slave links use, its Result and its exceptions."""

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from afarm.errors import AfarmError


@dataclass(frozen=True)
class Result:
    argv: list[str]
    exit_code: int
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        return self.exit_code == 0


class TransportError(AfarmError):
    """Something between the master and a slave went wrong."""


class CommandTimedOut(TransportError):
    """The command did not finish within its timeout."""


class HostUnreachable(TransportError):
    """The host could not be reached or the connection dropped; retrying may help."""


class TooLarge(TransportError):
    """A file on the slave is larger than the master takes."""


class AuthFailure(TransportError):
    """The host refused our key or showed an unknown host key; retrying will not help."""


class Channel(Protocol):
    """A long-lived JSON-lines conversation with the slave's `serve` verb."""

    def send(self, message: dict[str, Any]) -> None: ...

    def recv(self) -> dict[str, Any] | None:
        """The next message, or None when the channel closed (the slave is gone)."""
        ...

    def close(self) -> None: ...


class Transport(Protocol):
    """What a slave link needs from a slave; paths on the slave are relative to its work dir."""

    name: str

    def run(self, argv: list[str], stdin: bytes | None = None,
            timeout: float | None = None) -> Result: ...

    def put(self, src: Path, dst: str) -> int:
        """Copy a local file to the slave; returns the bytes that crossed the wire."""
        ...

    def get(self, src: str, dst: Path, max_bytes: int | None = None) -> int:
        """Copy a file from the slave; returns the bytes that crossed the wire. A file
        larger than `max_bytes` is refused (TooLarge) and nothing of it is kept."""
        ...

    def open_channel(self) -> Channel: ...

    def close(self) -> None: ...
