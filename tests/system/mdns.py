# SPDX-License-Identifier: MIT
"""A private D-Bus system bus and avahi-daemon for one namespace host (no systemd needed).

The recipe of shared/TESTBED.md: dbus-daemon with a config derived from Debian's
system.conf (own socket and pid file, no <user>, absolute includedirs), and avahi-daemon
in its own mount namespace with its own /run/avahi-daemon bind-mounted, told to use that
bus by DBUS_SYSTEM_BUS_ADDRESS. :meth:`MdnsHost.stop` kills both, also after a failure.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

SYSTEM_CONF = Path("/usr/share/dbus-1/system.conf")
# Runs inside `unshare -m`: bind our run dir over /run/avahi-daemon (its pid file and
# socket), then become avahi-daemon. Python, not a shell: no argv goes through a shell.
_LAUNCH = ("import os, subprocess, sys; os.makedirs('/run/avahi-daemon', exist_ok=True);"
           " subprocess.run(['mount', '--bind', sys.argv[1], '/run/avahi-daemon'],"
           " check=True); os.execv('/usr/sbin/avahi-daemon', ['avahi-daemon', '-f',"
           " sys.argv[2], '--no-drop-root', '--no-chroot', '--no-rlimits', '--debug'])")


def bus_config(socket: Path, pidfile: Path) -> str:
    text = SYSTEM_CONF.read_text()
    text = re.sub(r"<user>.*?</user>", "", text)
    text = text.replace("<fork/>", "")
    text = re.sub(r"<servicehelper>.*?</servicehelper>", "", text)
    text = text.replace("<syslog/>", "")
    text = re.sub(r"<pidfile>.*?</pidfile>", f"<pidfile>{pidfile}</pidfile>", text)
    text = re.sub(r"<listen>.*?</listen>", f"<listen>unix:path={socket}</listen>", text)
    text = re.sub(r"<includedir>system\.d</includedir>",
                  "<includedir>/etc/dbus-1/system.d</includedir>", text)
    text = re.sub(r'<include ignore_missing="yes">system\.local\.conf</include>', "", text)
    text = text.replace("<standard_system_servicedirs/>", "")
    return text.replace("</busconfig>",
                        "<includedir>/usr/share/dbus-1/system.d</includedir></busconfig>")


class MdnsHost:
    """dbus-daemon + avahi-daemon in network namespace ``netns`` (a path; None: this one),
    publishing only on ``interface``."""

    def __init__(self, base: Path, netns: Path | None, interface: str, host_name: str) -> None:
        self.base = base
        self.netns = netns
        self.interface = interface
        self.host_name = host_name
        self.socket = base / "bus.sock"
        self.address = f"unix:path={self.socket}"
        self.procs: list[subprocess.Popen[bytes]] = []

    def _ns(self) -> list[str]:
        return ["nsenter", f"--net={self.netns}", "--"] if self.netns else []

    def start(self) -> MdnsHost:
        self.base.mkdir(parents=True, exist_ok=True)
        conf = self.base / "bus.conf"
        conf.write_text(bus_config(self.socket, self.base / "bus.pid"))
        with open(self.base / "dbus.log", "ab") as log:
            self.procs.append(subprocess.Popen(
                ["dbus-daemon", "--config-file", str(conf), "--nofork", "--nopidfile"],
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True))
        deadline = time.monotonic() + 10
        while not self.socket.exists():
            if time.monotonic() > deadline or self.procs[0].poll() is not None:
                self.stop()
                raise RuntimeError("dbus-daemon did not start: "
                                   + (self.base / "dbus.log").read_text())
            time.sleep(0.02)
        run = self.base / "run"
        run.mkdir(exist_ok=True)
        aconf = self.base / "avahi-daemon.conf"
        aconf.write_text(f"[server]\nhost-name={self.host_name}\nuse-ipv4=yes\nuse-ipv6=no\n"
                         f"allow-interfaces={self.interface}\nenable-dbus=yes\n"
                         "ratelimit-interval-usec=1000000\nratelimit-burst=1000\n"
                         "[wide-area]\nenable-wide-area=no\n"
                         "[publish]\npublish-hinfo=no\npublish-workstation=no\n")
        with open(self.base / "avahi.log", "ab") as log:
            self.procs.append(subprocess.Popen(
                [*self._ns(), "unshare", "-m", "--propagation", "private", sys.executable,
                 "-c", _LAUNCH, str(run), str(aconf)],
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                env={**os.environ, "DBUS_SYSTEM_BUS_ADDRESS": self.address}))
        deadline = time.monotonic() + 15
        while "Server startup complete" not in self.log():
            if time.monotonic() > deadline or self.procs[1].poll() is not None:
                text = self.log()
                self.stop()
                raise RuntimeError(f"avahi-daemon did not start: {text[-2000:]}")
            time.sleep(0.05)
        return self

    def log(self) -> str:
        p = self.base / "avahi.log"
        return p.read_text(errors="replace") if p.exists() else ""

    def stop(self) -> None:
        for p in reversed(self.procs):
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGTERM)
                try:
                    p.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    os.killpg(p.pid, signal.SIGKILL)
                    p.wait()
        self.procs.clear()
