# SPDX-License-Identifier: MIT
"""The master's side: browse ``_afarm._tcp`` over D-Bus and report each resolved slave.

Avahi reports services by D-Bus signals, so a GLib main loop runs in a thread of its own
(dbus-python's GLib integration, python3-gi). Each resolved service is checked
(afarm.discovery.txt) and handed to ``on_found`` **in that thread**: the master passes it
on to its event loop with ``call_soon_threadsafe``. A record that breaks the rules is
dropped and logged (rate-limited by the master's log filter).
"""

from __future__ import annotations

import ipaddress
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from afarm.discovery import avahi
from afarm.discovery.txt import SERVICE_TYPE, Announcement, BadRecord, decode

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Found:
    """A resolved announcement and where it came from."""

    announcement: Announcement
    address: str  # the slave's address as Avahi resolved it
    service: str  # the DNS-SD instance name (may differ from the slave's name)


def usable_address(text: str) -> bool:
    """An address the master can dial back without a zone: not link-local, not loopback
    from another host's claim, not multicast or unspecified."""
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        return False
    ip = getattr(ip, "ipv4_mapped", None) or ip
    return not (ip.is_link_local or ip.is_multicast or ip.is_unspecified or ip.is_loopback)


class Browser:
    """Browse until :meth:`stop`; :meth:`start` raises avahi.Unavailable when it cannot."""

    def __init__(self, on_found: Callable[[Found], None],
                 on_lost: Callable[[str], None] | None = None,
                 protocol: int = avahi.PROTO_INET) -> None:
        self.on_found = on_found
        self.on_lost = on_lost
        self.protocol = protocol
        self._loop: Any = None
        self._thread: threading.Thread | None = None
        self._bus: Any = None
        self._srv: Any = None
        self._paths: set[str] = set()

    def start(self) -> None:
        try:
            from dbus.mainloop.glib import DBusGMainLoop
            from gi.repository import GLib
        except ImportError:
            raise avahi.Unavailable("the GLib main loop is missing (apt install python3-gi)") \
                from None
        bus = avahi.system_bus(DBusGMainLoop())
        srv = avahi.server(bus)
        # Subscribe before the browser exists: Avahi may signal before we could match its
        # object path (the well-known race of ServiceBrowserNew); filter by path instead.
        paths: set[str] = set()

        def item_new(interface: int, protocol: int, name: str, stype: str, domain: str,
                     flags: int, path: str) -> None:
            if path not in paths and paths:
                return
            srv.ResolveService(interface, protocol, name, stype, domain, protocol,
                               0, reply_handler=self._resolved,
                               error_handler=lambda e: log.debug("resolve %s: %s", name, e))

        def item_remove(interface: int, protocol: int, name: str, stype: str, domain: str,
                        flags: int, path: str) -> None:
            if self.on_lost is not None and (path in paths or not paths):
                self.on_lost(str(name))

        for signal, handler in (("ItemNew", item_new), ("ItemRemove", item_remove)):
            bus.add_signal_receiver(handler, signal_name=signal,
                                    dbus_interface=avahi.SERVICE_BROWSER, path_keyword="path")
        self._paths, self._srv = paths, srv
        self._browse()
        self._bus = bus
        self._loop = GLib.MainLoop()
        self._thread = threading.Thread(target=self._loop.run, name="avahi-browse",
                                        daemon=True)
        self._thread.start()

    def _browse(self) -> bool:
        """A new ServiceBrowser: Avahi reports every service it knows again (ItemNew)."""
        self._paths.add(str(self._srv.ServiceBrowserNew(
            avahi.IF_UNSPEC, self.protocol, SERVICE_TYPE, "", 0, timeout=avahi.CALL_TIMEOUT)))
        return False  # as a GLib idle callback: run once

    def rescan(self) -> None:
        """Report every slave announced now again (after the master forgot one)."""
        if self._loop is not None:
            from gi.repository import GLib

            GLib.idle_add(self._browse)

    def _resolved(self, interface: int, protocol: int, name: str, stype: str, domain: str,
                  host: str, aprotocol: int, address: str, port: int, txt: Any,
                  flags: int) -> None:
        try:
            a = decode([bytes(bytearray(item)) for item in txt])
        except BadRecord as exc:
            log.warning("ignored an _afarm._tcp announcement from %s: %s", address, exc)
            return
        if not usable_address(str(address)):
            log.info("ignored %s at %s: not an address the master can dial", a.name, address)
            return
        try:
            self.on_found(Found(a, str(address), str(name)))
        except Exception:  # a bug there must not stop the browsing thread
            log.exception("handling the announcement of %s failed", a.name)

    def stop(self) -> None:
        if self._loop is not None:
            self._loop.quit()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self._bus is not None:
            self._bus.close()
        self._loop = self._thread = self._bus = None
