# SPDX-License-Identifier: MIT
"""Discovery on the slave: ``afarm-slave run`` announces the slave over Avahi, and
``afarm-slave claim`` (root) takes one master's claim.

Two processes because they need opposite rights: the daemon runs as the slave user with no
network (D-Bus is a local socket), while enrolling writes the root-owned authorized_keys
and talks to the master. Both read ``[slave] claim_port``: the daemon announces it while no
master's key is installed, the claim process listens on it until one is.

Discovery is optional: without D-Bus or avahi-daemon the daemon says so once and the slave
works as before (enrolment by token). The announcement is checked again every ``tick`` and
published anew if avahi-daemon restarted or the slave got enrolled meanwhile.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from afarm import __version__
from afarm.discovery import avahi
from afarm.discovery.claim import ClaimServer, already_enrolled
from afarm.discovery.publish import Publisher, host_key_fingerprint, mac_addresses
from afarm.discovery.txt import Announcement
from afarm.errors import AfarmError, UsageError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Options:
    host_key: Path
    ssh_port: int = 22
    user: str = "afarm"
    authorized_keys: Path | None = None
    shell_command: str = "/usr/bin/afarm-slave-shell"

    def keys_file(self) -> Path:
        """Where the master's key goes: given, or the slave user's authorized_keys."""
        if self.authorized_keys is not None:
            return self.authorized_keys
        import pwd

        try:
            return Path(pwd.getpwnam(self.user).pw_dir) / ".ssh" / "authorized_keys"
        except KeyError:
            raise UsageError(f"there is no user {self.user!r} on this machine; install the"
                             " afarm-slave package (it creates the user)") from None

    def enrolled(self) -> bool:
        return already_enrolled(self.keys_file(), self.shell_command)


class Publishing(Protocol):
    """What the announcer needs of afarm.discovery.publish.Publisher (tests fake it)."""

    state: str

    def publish(self, a: Announcement, port: int) -> None: ...
    def ensure(self) -> str: ...
    def withdraw(self) -> None: ...


class Announcer:
    def __init__(self, conf: dict[str, Any], opts: Options,
                 publisher: Publishing | None = None) -> None:
        self.conf, self.opts = conf, opts
        self.publisher: Publishing = publisher or Publisher()
        self.announcement: Announcement | None = None
        self._said_unavailable = False

    def _claim_port(self) -> int:
        port = int(self.conf.get("claim_port", 0))
        try:
            return 0 if not port or self.opts.enrolled() else port
        except (OSError, UsageError) as exc:
            log.warning("announcing no claim port: %s", exc)
            return 0

    def start(self) -> None:
        try:
            fp = host_key_fingerprint(self.opts.host_key)
        except (OSError, AfarmError) as exc:
            log.warning("not announcing this slave: cannot read its SSH host key %s (%s)",
                        self.opts.host_key, exc)
            return
        self.announcement = Announcement(self.conf["name"], fp, mac_addresses(),
                                         _txt_version(), self.opts.ssh_port,
                                         self._claim_port())
        self._publish()

    def _publish(self) -> None:
        if self.announcement is None:
            return
        a = self.announcement
        try:
            self.publisher.publish(a, a.claim_port or a.ssh_port)
        except avahi.Unavailable as exc:
            if not self._said_unavailable:
                log.info("not announced over Avahi: %s; enrol this slave with a token", exc)
                self._said_unavailable = True
            return
        self._said_unavailable = False
        log.info("announced as %s (_afarm._tcp), host key %s%s", a.name, a.fingerprint,
                 f", claims on port {a.claim_port}" if a.claim_port else "")

    def tick(self) -> None:
        """Publish again when the announcement was lost, never made it, or the slave was
        enrolled since (no claim port any more)."""
        if self.announcement is None:
            return
        if self.announcement.claim_port and not self._claim_port():
            self.announcement = dataclasses.replace(self.announcement, claim_port=0)
            self.publisher.withdraw()
        if self.publisher.state == "unpublished":
            self._publish()
            return
        try:
            self.publisher.ensure()
        except avahi.Unavailable:
            return

    def stop(self) -> None:
        self.publisher.withdraw()


def serve_claims(conf: dict[str, Any], opts: Options, stop: threading.Event,
                 host: str = "") -> int:
    """``afarm-slave claim``: take one master's claim on ``[slave] claim_port`` and enrol
    with it; returns at once when this slave is enrolled already or takes no claims."""
    port = int(conf.get("claim_port", 0))
    if not port:
        log.info("[slave] claim_port = 0: taking no claims; enrol by token")
        return 0
    if opts.enrolled():
        log.info("a master's key is installed already: taking no claims")
        return 0
    fp = host_key_fingerprint(opts.host_key)

    def enrol(master: str, token: str) -> str:
        from afarm.slave import enroll

        done = enroll.enroll(master, token, name=conf["name"], ssh_port=opts.ssh_port,
                             host_key=opts.host_key, work_dir=str(conf["work_dir"]),
                             user=opts.user, authorized_keys=opts.authorized_keys,
                             command=opts.shell_command)
        return done.name

    server = ClaimServer(conf["name"], fp, enrol, port, lambda name: stop.set(), host)
    server.start()
    log.info("taking the claim of the first master that accepts %s (host key %s) on port"
             " %d", conf["name"], fp, server.port)
    try:
        stop.wait()
    finally:
        server.stop()
    return 0


def _txt_version() -> str:
    return "".join(c for c in __version__ if c.isalnum() or c in ".+~-")[:32] or "0"
