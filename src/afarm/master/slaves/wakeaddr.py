# SPDX-License-Identifier: MIT
"""Where a slave found by discovery is woken: which of its announced MACs, which broadcast.

A slave announces every Ethernet MAC it has (afarm.discovery.publish), in the order of its
interface names, which says nothing about the network the master is on. The master picks
the one its own neighbour table (/proc/net/arp) holds for the slave's address: that is the
card the master's packets reach, so the card that must wake. The table only has the entry
while the two machines talk, so the choice is made when the slave comes online and kept
(master/discovered.py keeps the chosen MAC first in the stored record); without an entry
the first announced MAC is used. The magic packet goes to the broadcast address of the
master's interface that routes to the slave, since 255.255.255.255 leaves by the default
route only.
"""

from __future__ import annotations

import fcntl
import ipaddress
import socket
import struct
from collections.abc import Sequence
from pathlib import Path

from afarm.master.slaves.wol import BROADCAST

ARP = Path("/proc/net/arp")
_SIOCGIFADDR, _SIOCGIFNETMASK = 0x8915, 0x891B
_ZERO_MAC = "00:00:00:00:00:00"


def neighbours(text: str) -> dict[str, str]:
    """/proc/net/arp as {IPv4 address: MAC}, complete entries only."""
    out = {}
    for line in text.splitlines()[1:]:
        words = line.split()
        # IP address, HW type, Flags, HW address, Mask, Device; flags 0x0: incomplete
        if len(words) >= 6 and words[2] != "0x0" and words[3] != _ZERO_MAC:
            out[words[0]] = words[3].lower()
    return out


def read_neighbours(path: Path = ARP) -> dict[str, str]:
    try:
        return neighbours(path.read_text("ascii", errors="replace"))
    except OSError:
        return {}


def choose_mac(address: str, macs: Sequence[str], table: dict[str, str]) -> str | None:
    """The announced MAC the master's neighbour table holds for `address`, else the first
    announced one; None when the slave announced none. A table entry that is not among
    the announced MACs is not used: the slave's own word decides what may be woken."""
    if not macs:
        return None
    seen = table.get(address)
    return seen if seen in macs else macs[0]


def _ifreq(sock: socket.socket, request: int, name: str) -> str | None:
    try:
        got = fcntl.ioctl(sock.fileno(), request, struct.pack("256s", name[:15].encode()))
    except OSError:
        return None
    return socket.inet_ntoa(got[20:24])


def broadcast_towards(address: str) -> str:
    """The broadcast address of the master's interface that routes to `address` (IPv4);
    255.255.255.255 when there is none to find (IPv6, no route)."""
    try:
        if ipaddress.ip_address(address).version != 4:
            return BROADCAST
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.connect((address, 9))  # UDP: picks the route, sends nothing
            local = s.getsockname()[0]
            for _, name in socket.if_nameindex():
                if _ifreq(s, _SIOCGIFADDR, name) != local:
                    continue
                # From the netmask: an address set without "brd" has no broadcast set.
                mask = _ifreq(s, _SIOCGIFNETMASK, name)
                if mask is None or mask == "255.255.255.255":
                    return BROADCAST
                net = ipaddress.IPv4Network(f"{local}/{mask}", strict=False)
                return str(net.broadcast_address)
    except (OSError, ValueError):
        pass
    return BROADCAST
