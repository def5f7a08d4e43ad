# SPDX-License-Identifier: MIT
"""The ``_afarm._tcp`` TXT record: what a slave announces, encoded and checked with bounds.

Anyone on the LAN can publish mDNS records, so the master treats every field as hostile
input: each item and the whole record have a size limit, each value a strict shape, and a
record that breaks a rule is dropped with the reason. Unknown keys are ignored (a newer
slave may add some); a repeated key counts only its first time (RFC 6763 6.4).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from afarm.protocol.names import RULE, is_slave_name

SERVICE_TYPE = "_afarm._tcp"
TXT_VERSION = "1"
MAX_ITEM = 255  # a DNS-SD string is one length byte
MAX_TOTAL = 1300  # fits one mDNS packet with room for the rest of the answer
MAX_ITEMS = 16
MAX_MACS = 8
_FP = re.compile(r"SHA256:[A-Za-z0-9+/]{43}")
_MAC = re.compile(r"[0-9a-f]{2}(:[0-9a-f]{2}){5}")
_VERSION = re.compile(r"[0-9A-Za-z.+~-]{1,32}")
_KEY = re.compile(r"[a-z]{1,9}")


class BadRecord(ValueError):
    """A TXT record that breaks a rule; the text says which."""


@dataclass(frozen=True)
class Announcement:
    """What one slave says about itself."""

    name: str
    fingerprint: str  # SHA256:... of its SSH host key, as ssh-keygen -l prints it
    macs: tuple[str, ...]
    version: str  # afarm's
    ssh_port: int = 22
    claim_port: int = 0  # where it takes a master's claim; 0: it takes none

    def check(self) -> None:
        if not is_slave_name(self.name):
            raise BadRecord(f"name {self.name[:70]!r}: {RULE}")
        if not _FP.fullmatch(self.fingerprint):
            raise BadRecord("fp: expected SHA256: and 43 base64 characters")
        if len(self.macs) > MAX_MACS or not all(_MAC.fullmatch(m) for m in self.macs):
            raise BadRecord(f"mac: expected up to {MAX_MACS} addresses like 52:54:00:12:34:56")
        if not _VERSION.fullmatch(self.version):
            raise BadRecord("ver: expected a version of at most 32 characters")
        for what, port in (("ssh", self.ssh_port), ("claim", self.claim_port)):
            if not 0 <= port < 65536 or (what == "ssh" and port == 0):
                raise BadRecord(f"{what}: expected a port number")


def encode(a: Announcement) -> list[bytes]:
    """The record's items, in Avahi's ``aay`` shape (a list of byte strings)."""
    a.check()
    items = [f"txtvers={TXT_VERSION}", f"name={a.name}", f"fp={a.fingerprint}",
             f"mac={','.join(a.macs)}", f"ver={a.version}", f"ssh={a.ssh_port}"]
    if a.claim_port:
        items.append(f"claim={a.claim_port}")
    out = [s.encode("ascii") for s in items]
    if sum(len(b) + 1 for b in out) > MAX_TOTAL:  # cannot happen with the checks above
        raise BadRecord("the record is too large")
    return out


def _port(fields: dict[str, str], key: str, default: int) -> int:
    text = fields.get(key)
    if text is None:
        return default
    if not (text.isascii() and text.isdigit() and len(text) <= 5):
        raise BadRecord(f"{key}: expected a port number")
    return int(text)


def decode(items: list[bytes]) -> Announcement:
    """The announcement in a TXT record, or BadRecord saying what is wrong with it."""
    if len(items) > MAX_ITEMS:
        raise BadRecord(f"more than {MAX_ITEMS} items")
    if sum(len(b) + 1 for b in items) > MAX_TOTAL:
        raise BadRecord(f"larger than {MAX_TOTAL} bytes")
    fields: dict[str, str] = {}
    for raw in items:
        if len(raw) > MAX_ITEM:
            raise BadRecord(f"an item is longer than {MAX_ITEM} bytes")
        try:
            text = bytes(raw).decode("ascii")
        except UnicodeDecodeError:
            raise BadRecord("an item is not ASCII") from None
        key, sep, value = text.partition("=")
        key = key.lower()
        if _KEY.fullmatch(key) and sep and key not in fields:
            fields[key] = value
    if fields.get("txtvers") != TXT_VERSION:
        raise BadRecord(f"txtvers: expected {TXT_VERSION}")
    macs = tuple(m for m in fields.get("mac", "").lower().split(",") if m)
    a = Announcement(name=fields.get("name", ""), fingerprint=fields.get("fp", ""),
                     macs=macs, version=fields.get("ver", ""),
                     ssh_port=_port(fields, "ssh", 22), claim_port=_port(fields, "claim", 0))
    a.check()
    return a
