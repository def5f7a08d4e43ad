# SPDX-License-Identifier: MIT
"""What ``afarm-slave run`` does for discovery: announce the slave over Avahi and, when
asked to (``--claim-port``, as root), take one master's claim.

Discovery is optional: without D-Bus or avahi-daemon it says so once and the slave works
as before (enrolment by token). The announcement is checked again every ``tick`` and
published anew if avahi-daemon restarted.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from afarm import __version__
from afarm.discovery import avahi
from afarm.discovery.claim import ClaimServer, already_enrolled
from afarm.discovery.publish import Publisher, host_key_fingerprint, mac_addresses
from afarm.discovery.txt import Announcement
from afarm.errors import AfarmError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Options:
    host_key: Path
    ssh_port: int = 22
    claim_port: int = 0  # 0: take no claims
    user: str = "afarm"
    authorized_keys: Path | None = None
    shell_command: str = "/usr/bin/afarm-slave-shell"


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
        self.claims: ClaimServer | None = None
        self.announcement: Announcement | None = None
        self._said_unavailable = False

    def _authorized_keys(self) -> Path:
        if self.opts.authorized_keys is not None:
            return self.opts.authorized_keys
        import pwd

        return Path(pwd.getpwnam(self.opts.user).pw_dir) / ".ssh" / "authorized_keys"

    def _enrol(self, master: str, token: str) -> str:
        from afarm.slave import enroll

        done = enroll.enroll(master, token, name=self.conf["name"], ssh_port=self.opts.ssh_port,
                             host_key=self.opts.host_key, work_dir=str(self.conf["work_dir"]),
                             user=self.opts.user, authorized_keys=self.opts.authorized_keys,
                             command=self.opts.shell_command)
        return done.name

    def _claimed(self, name: str) -> None:
        # Claims are closed: announce without the claim port from now on.
        if self.announcement is not None:
            self.announcement = dataclasses.replace(self.announcement, claim_port=0)
            self._publish()

    def start(self) -> None:
        try:
            fp = host_key_fingerprint(self.opts.host_key)
        except (OSError, AfarmError) as exc:
            log.warning("not announcing this slave: cannot read its SSH host key %s (%s)",
                        self.opts.host_key, exc)
            return
        claim_port = 0
        if self.opts.claim_port:
            try:
                enrolled = already_enrolled(self._authorized_keys(), self.opts.shell_command)
            except KeyError:
                log.warning("not taking claims: there is no user %r", self.opts.user)
                enrolled = True
            if enrolled:
                log.info("enrolled with a master already: taking no claims")
            else:
                try:
                    self.claims = ClaimServer(self.conf["name"], fp, self._enrol,
                                              self.opts.claim_port, self._claimed)
                except OSError as exc:
                    log.warning("not taking claims: cannot listen on port %d (%s)",
                                self.opts.claim_port, exc.strerror)
                else:
                    self.claims.start()
                    claim_port = self.claims.port
        self.announcement = Announcement(self.conf["name"], fp, mac_addresses(),
                                         _txt_version(), self.opts.ssh_port, claim_port)
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
                 f", taking a master's claim on port {a.claim_port}" if a.claim_port else "")

    def tick(self) -> None:
        """Publish again when the announcement was lost or never made it."""
        if self.announcement is None:
            return
        if self.publisher.state == "unpublished":
            self._publish()
            return
        try:
            self.publisher.ensure()
        except avahi.Unavailable:
            return

    def stop(self) -> None:
        if self.claims is not None:
            self.claims.stop()
        self.publisher.withdraw()


def _txt_version() -> str:
    return "".join(c for c in __version__ if c.isalnum() or c in ".+~-")[:32] or "0"
