# SPDX-License-Identifier: MIT
"""The few names and numbers of avahi-daemon's D-Bus API that afarm uses, in one place."""

from __future__ import annotations

from typing import Any

NAME = "org.freedesktop.Avahi"
SERVER = "org.freedesktop.Avahi.Server"
ENTRY_GROUP = "org.freedesktop.Avahi.EntryGroup"
SERVICE_BROWSER = "org.freedesktop.Avahi.ServiceBrowser"
IF_UNSPEC = -1
PROTO_UNSPEC, PROTO_INET, PROTO_INET6 = -1, 0, 1
# EntryGroup states
UNCOMMITED, REGISTERING, ESTABLISHED, COLLISION, FAILURE = range(5)
CALL_TIMEOUT = 5.0  # seconds


class Unavailable(RuntimeError):
    """No D-Bus system bus, no avahi-daemon on it, or no dbus-python: discovery is off."""


def system_bus(mainloop: Any = None) -> Any:
    """A private connection to the system bus ($DBUS_SYSTEM_BUS_ADDRESS if set), or
    Unavailable with the reason."""
    try:
        import dbus
    except ImportError:
        raise Unavailable("dbus-python is not installed (apt install python3-dbus)") from None
    try:
        kwargs = {"mainloop": mainloop} if mainloop is not None else {}
        return dbus.SystemBus(private=True, **kwargs)
    except dbus.exceptions.DBusException as exc:
        raise Unavailable(f"no D-Bus system bus ({exc.get_dbus_message()})") from None


def server(bus: Any) -> Any:
    """avahi-daemon's Server interface on ``bus``, or Unavailable."""
    import dbus

    try:
        obj = bus.get_object(NAME, "/")
        srv = dbus.Interface(obj, SERVER)
        # Fails now, not at the first real call, when Avahi is absent; the timeout bounds
        # a bus that tries to start an Avahi that does not come up.
        srv.GetVersionString(timeout=CALL_TIMEOUT)
        return srv
    except dbus.exceptions.DBusException as exc:
        raise Unavailable(f"avahi-daemon is not on the system bus ({exc.get_dbus_name()});"
                          " apt install avahi-daemon") from None
