# SPDX-License-Identifier: MIT
"""sd_notify(3) for both daemons, without libsystemd: one datagram to $NOTIFY_SOCKET."""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Mapping

log = logging.getLogger(__name__)


def notify(state: str, environ: Mapping[str, str] | None = None) -> bool:
    """Tell systemd ``state`` (READY=1, STOPPING=1, WATCHDOG=1, STATUS=...) if it set
    $NOTIFY_SOCKET; False when not run that way or the socket refused. A broken socket
    must not take a daemon down, so it is logged, never raised."""
    env = os.environ if environ is None else environ
    address = env.get("NOTIFY_SOCKET", "")
    if not address or address[0] not in "/@":
        return False
    target = "\0" + address[1:] if address[0] == "@" else address  # @: abstract namespace
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as s:
        try:
            s.connect(target)
            s.sendall(state.encode())
        except OSError as exc:
            log.warning("cannot notify systemd (%s): %s", state.split("\n")[0], exc)
            return False
    return True
