# SPDX-License-Identifier: MIT
"""How the master reaches a slave: one API (`Transport`) for local processes and SSH hosts."""

from afarm.transport.base import (
    AuthFailure,
    Channel,
    CommandTimedOut,
    HostUnreachable,
    Result,
    Transport,
    TransportError,
)

__all__ = ["AuthFailure", "Channel", "CommandTimedOut", "HostUnreachable", "Result",
           "Transport", "TransportError"]
