# SPDX-License-Identifier: MIT
"""Wake-on-LAN: the magic packet (6 x 0xFF, then the MAC 16 times) as a UDP broadcast.

The `wakeonlan` module sends it when it is installed (Recommends); afarm's own sender does
the same otherwise, so a master without it still wakes its slaves.
"""

import re
import socket
from typing import Any, Protocol

PORT = 9  # discard; 7 (echo) is the other port NICs listen on
BROADCAST = "255.255.255.255"
_MAC = re.compile(r"^[0-9a-f]{2}([:-]?)[0-9a-f]{2}(\1[0-9a-f]{2}){4}$")


class Waker(Protocol):
    """What the power manager needs to wake a machine (tests record instead of sending)."""

    def wake(self, mac: str, broadcast: str, port: int) -> None: ...


def check_mac(mac: str) -> str:
    """A MAC address as 12 lower-case hex digits; ValueError names the expected form."""
    m = mac.strip().lower()
    if not _MAC.match(m):
        raise ValueError(f"MAC address {mac!r} is not six hex bytes, e.g."
                         " 52:54:00:12:34:56")
    return re.sub(r"[:-]", "", m)


def magic_packet(mac: str) -> bytes:
    return b"\xff" * 6 + bytes.fromhex(check_mac(mac)) * 16


def send_own(mac: str, broadcast: str = BROADCAST, port: int = PORT) -> None:
    """afarm's sender: one UDP datagram to the broadcast address."""
    packet = magic_packet(mac)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
        s.sendto(packet, (broadcast, port))


class WakeOnLan:
    """Sends with the wakeonlan module if importable, else with send_own."""

    def __init__(self, prefer_module: bool = True) -> None:
        self.module: Any = None
        if prefer_module:
            try:
                import wakeonlan

                self.module = wakeonlan
            except ImportError:
                pass

    def wake(self, mac: str, broadcast: str = BROADCAST, port: int = PORT) -> None:
        check_mac(mac)
        if self.module is not None:
            self.module.send_magic_packet(mac, ip_address=broadcast, port=port)
        else:
            send_own(mac, broadcast, port)
