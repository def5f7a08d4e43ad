# SPDX-License-Identifier: MIT
"""A private system bus with a stand-in logind that records Suspend and Inhibit calls.

`PrivateBus` runs its own dbus-daemon with a config derived from Debian's system.conf
(TESTBED.md: a hand-written minimal one makes clients hang), that lets anyone own and call
org.freedesktop.login1. `FakeLogind` serves that name from a child process and writes one
JSON line per call to its record file: {"call": "Suspend", ...}, {"call": "Inhibit", ...},
and {"call": "Released", ...} when the inhibitor's file descriptor was closed by the slave.
Point a client at it with DBUS_SYSTEM_BUS_ADDRESS. Everything stops on close().
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType
from typing import Any

SYSTEM_CONF = Path("/usr/share/dbus-1/system.conf")

_SERVICE = r'''
import json, os, sys, threading, time
import dbus, dbus.service
from dbus.mainloop.glib import DBusGMainLoop
from gi.repository import GLib

record = sys.argv[1]
lock = threading.Lock()

def note(**kw):
    with lock, open(record, "a") as f:
        f.write(json.dumps(kw) + "\n")

class Manager(dbus.service.Object):
    @dbus.service.method("org.freedesktop.login1.Manager", in_signature="b",
                         out_signature="")
    def Suspend(self, interactive):
        note(call="Suspend", interactive=bool(interactive), at=time.time())

    @dbus.service.method("org.freedesktop.login1.Manager", in_signature="ssss",
                         out_signature="h")
    def Inhibit(self, what, who, why, mode):
        r, w = os.pipe()
        note(call="Inhibit", what=str(what), who=str(who), why=str(why), mode=str(mode),
             at=time.time(),
             fd=r)
        def watch():
            while os.read(r, 1):
                pass
            os.close(r)
            note(call="Released", fd=r, at=time.time())
        threading.Thread(target=watch, daemon=True).start()
        fd = dbus.types.UnixFd(w)
        os.close(w)
        return fd

DBusGMainLoop(set_as_default=True)
bus = dbus.SystemBus()
name = dbus.service.BusName("org.freedesktop.login1", bus)
Manager(bus, "/org/freedesktop/login1")
note(call="Ready")
GLib.MainLoop().run()
'''


class PrivateBus:
    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.dir.mkdir(parents=True, exist_ok=True)
        os.chmod(self.dir, 0o755)
        self.socket = self.dir / "system_bus_socket"
        self.address = f"unix:path={self.socket}"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> PrivateBus:
        conf = SYSTEM_CONF.read_text()
        conf = re.sub(r"<user>.*?</user>", "", conf)
        conf = re.sub(r"<pidfile>.*?</pidfile>", f"<pidfile>{self.dir}/pid</pidfile>", conf)
        conf = re.sub(r"<listen>.*?</listen>", f"<listen>{self.address}</listen>", conf)
        conf = conf.replace("<includedir>system.d</includedir>",
                            "<includedir>/usr/share/dbus-1/system.d</includedir>")
        conf = conf.replace("</busconfig>", """
  <policy context="default">
    <allow own="org.freedesktop.login1"/>
    <allow send_destination="org.freedesktop.login1"/>
  </policy>
</busconfig>""")
        path = self.dir / "system.conf"
        path.write_text(conf)
        self.proc = subprocess.Popen(["dbus-daemon", f"--config-file={path}", "--nofork",
                                      "--nosyslog"], stdout=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while not self.socket.exists():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the private dbus-daemon did not start")
            time.sleep(0.02)
        os.chmod(self.socket, 0o777)  # slave users of namespace hosts connect too
        return self

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)


class FakeLogind:
    def __init__(self, bus: PrivateBus) -> None:
        self.bus = bus
        self.record = bus.dir / "logind.jsonl"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> FakeLogind:
        self.record.write_text("")
        env = {**os.environ, "DBUS_SYSTEM_BUS_ADDRESS": self.bus.address}
        self.proc = subprocess.Popen(["/usr/bin/python3", "-c", _SERVICE, str(self.record)],
                                     env=env)
        self.wait_for(lambda calls: any(c["call"] == "Ready" for c in calls), 15)
        return self

    def calls(self, kind: str | None = None) -> list[dict[str, Any]]:
        out = [json.loads(line) for line in self.record.read_text().splitlines() if line]
        return [c for c in out if kind is None or c["call"] == kind]

    def wait_for(self, cond: Any, timeout: float = 10) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while True:
            calls = self.calls()
            if cond(calls):
                return calls
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError("the fake logind died")
            if time.monotonic() > deadline:
                raise TimeoutError(f"logind calls so far: {calls}")
            time.sleep(0.05)

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)


class LogindOnPrivateBus:
    """Both, as one context manager: `with LogindOnPrivateBus(dir) as (bus, logind):`."""

    def __init__(self, directory: Path) -> None:
        self.bus = PrivateBus(directory)
        self.logind = FakeLogind(self.bus)

    def __enter__(self) -> tuple[PrivateBus, FakeLogind]:
        try:
            self.bus.start()
            self.logind.start()
        except BaseException:
            self.close()
            raise
        return self.bus, self.logind

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        self.logind.close()
        self.bus.close()


if __name__ == "__main__":  # a bus to try by hand: python3 tests/logind.py DIR
    with LogindOnPrivateBus(Path(sys.argv[1])) as (b, _):
        print(f"DBUS_SYSTEM_BUS_ADDRESS={b.address}")
        time.sleep(3600)
