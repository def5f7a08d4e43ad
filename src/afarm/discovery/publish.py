# SPDX-License-Identifier: MIT
"""The slave's side: announce ``_afarm._tcp`` with its TXT record through Avahi over D-Bus.

No main loop is needed: the entry group lives as long as this process's bus connection.
:meth:`Publisher.ensure` re-publishes when avahi-daemon restarted (the group is gone) and
says when another machine holds the same service name.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from afarm.discovery import avahi
from afarm.discovery.txt import SERVICE_TYPE, Announcement, encode
from afarm.protocol.enroll import fingerprint, parse_public_key

log = logging.getLogger(__name__)
SYS_NET = Path("/sys/class/net")


def host_key_fingerprint(path: Path) -> str:
    """SHA256:... of the public SSH host key in ``path``, as ``ssh-keygen -lf`` prints it."""
    return fingerprint(parse_public_key(path.read_text("ascii"), str(path))[1])


def mac_addresses(root: Path = SYS_NET, limit: int = 8) -> tuple[str, ...]:
    """This machine's Ethernet MAC addresses (for Wake-on-LAN), loopback and zero left out."""
    found = []
    for dev in sorted(root.iterdir()) if root.is_dir() else []:
        try:
            kind = (dev / "type").read_text().strip()
            mac = (dev / "address").read_text().strip().lower()
        except OSError:
            continue
        if kind == "1" and mac and mac != "00:00:00:00:00:00" and mac not in found:
            found.append(mac)
    return tuple(found[:limit])


class Publisher:
    """One announced service. ``bus``: a dbus connection (tests); default: the system bus."""

    def __init__(self, bus: Any = None) -> None:
        self._bus = bus
        self._group: Any = None
        self._announcement: Announcement | None = None
        self._service = ""
        self._port = 0
        self.state = "unpublished"

    def publish(self, a: Announcement, port: int, service: str | None = None) -> None:
        """Announce ``a`` at ``port`` (the SRV record) as DNS-SD instance ``service``
        (default: the slave's name); Unavailable when Avahi is not there."""
        import dbus

        txt = [dbus.ByteArray(b) for b in encode(a)]
        if self._bus is None:
            self._bus = avahi.system_bus()
        srv = avahi.server(self._bus)
        try:
            self.withdraw()
            group = dbus.Interface(self._bus.get_object(avahi.NAME, srv.EntryGroupNew()),
                                   avahi.ENTRY_GROUP)
            group.AddService(avahi.IF_UNSPEC, avahi.PROTO_UNSPEC, dbus.UInt32(0),
                             service or a.name,
                             SERVICE_TYPE, "", "", dbus.UInt16(port),
                             dbus.Array(txt, signature="ay"))
            group.Commit()
        except dbus.exceptions.DBusException as exc:
            raise avahi.Unavailable(f"Avahi refused the service ({exc.get_dbus_message()})") \
                from None
        self._group, self._announcement, self._port = group, a, port
        self._service = service or a.name
        self.state = "published"

    def ensure(self) -> str:
        """Publish again if the group was lost; the group's state in words."""
        import dbus

        if self._group is None or self._announcement is None:
            return self.state
        try:
            state = int(self._group.GetState())
        except dbus.exceptions.DBusException:
            log.info("avahi-daemon lost the announcement (restarted?); publishing again")
            self._group = None
            self._bus = None
            self.publish(self._announcement, self._port)
            return self.state
        if state == avahi.COLLISION:
            # Another machine holds the instance name: take Avahi's alternative ("NAME #2");
            # the master goes by the TXT name and fingerprint, not by the instance name.
            other = str(avahi.server(self._bus).GetAlternativeServiceName(self._service))
            log.warning("another machine announces the service name %s; announcing as %s",
                        self._service, other)
            self.publish(self._announcement, self._port, other)
            return "collision"
        self.state = "failed" if state == avahi.FAILURE else "published"
        return self.state

    def withdraw(self) -> None:
        import dbus

        if self._group is not None:
            try:
                self._group.Free()
            except dbus.exceptions.DBusException:
                pass
            self._group = None
            self.state = "unpublished"
