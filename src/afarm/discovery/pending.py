# SPDX-License-Identifier: MIT
"""What the master makes of an announcement, and whether a pending slave may be accepted.

Pure functions over facts (the stored record, the host keys the master trusts): the
master's discovery service stores what they return and logs their warnings. The rules,
written for a LAN where anyone can publish mDNS records:

- a new name becomes ``pending`` (never scheduled) while fewer than ``max_pending`` wait
  (pending and gone rows count: gone ones are kept until they expire);
- a pending slave whose announcement is withdrawn is ``gone``; announced again with the
  same key it is pending again;
- a pending name keeps the fingerprint it was first seen with: another one under the same
  name is a loud warning, and accepting the name is refused until the admin looked
  (``afarmctl slave reject NAME`` forgets it; the next announcement starts over);
- an enrolled name announced with a host key the master does not trust is a loud warning
  too; the slave keeps working with the key it was enrolled with (SSH refuses any other);
- accepting is bound to the fingerprint the admin saw.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from afarm.discovery.txt import Announcement
from afarm.store.discovered import ACCEPTED, GONE, KNOWN, PENDING, Discovered

MAX_PENDING = 64


@dataclass(frozen=True)
class Verdict:
    row: Discovered | None  # what to store; None: nothing
    warning: str = ""  # log it loudly
    note: str = ""  # log it as news


def _row(a: Announcement, address: str, state: str, now: float,
         old: Discovered | None = None, fingerprint: str | None = None,
         warning: str | None = None) -> Discovered:
    return Discovered(a.name, state, fingerprint or a.fingerprint, address, a.ssh_port,
                      a.claim_port, a.macs, a.version, old.first_seen if old else now, now,
                      warning if warning is not None else (old.warning if old else ""))


def judge(a: Announcement, address: str, old: Discovered | None, trusted: set[str] | None,
          pending: int, now: float, max_pending: int = MAX_PENDING) -> Verdict:
    """``trusted``: fingerprints of the host keys the master trusts for a slave of this name
    (None: no such slave); ``pending``: how many wait now."""
    if trusted is not None:
        if not trusted or a.fingerprint in trusted:
            return Verdict(_row(a, address, KNOWN, now, old,
                                fingerprint=None if not trusted else a.fingerprint))
        warning = (f"{a.name} is announced from {address} with host key {a.fingerprint},"
                   f" but the master trusts {', '.join(sorted(trusted))}: refused. If the"
                   f" machine was reinstalled: afarmctl slave token --replace {a.name};"
                   " otherwise someone on the network claims its name")
        if old is not None:
            # The impostor's address and MACs are not stored: the slave is still woken
            # and listed where it really is (also right after its accept, before its own
            # announcement as an enrolled slave came).
            return Verdict(replace(old, state=KNOWN, fingerprint=sorted(trusted)[0],
                                   last_seen=now, warning=warning), warning=warning)
        return Verdict(_row(a, address, KNOWN, now, old, fingerprint=sorted(trusted)[0],
                            warning=warning), warning=warning)
    if old is None or old.state == KNOWN:
        if pending >= max_pending:
            return Verdict(None, warning=f"{a.name} at {address} is not listed as pending:"
                                         f" {max_pending} slaves wait already (accept or"
                                         " reject some: afarmctl slaves)")
        return Verdict(_row(a, address, PENDING, now, warning=""),
                       note=f"new slave {a.name} at {address}, host key {a.fingerprint}, is"
                            f" pending: afarmctl slave accept {a.name}")
    if a.fingerprint != old.fingerprint:
        warning = (f"{a.name} is announced from {address} with host key {a.fingerprint},"
                   f" but it was first seen with {old.fingerprint}: refused. Check both"
                   f" machines; afarmctl slave reject {a.name} forgets the name")
        return Verdict(replace(old, last_seen=now, warning=warning), warning=warning)
    if old.state == GONE:  # back on the network, with the key it was first seen with
        return Verdict(_row(a, address, PENDING, now, old),
                       note=f"pending slave {a.name} is back at {address}")
    return Verdict(_row(a, address, old.state, now, old))


def lost(old: Discovered | None, now: float) -> Discovered | None:
    """A withdrawn announcement: a pending slave is shown as gone from now (and forgotten
    after the expiry); accepted and enrolled ones are the farm's to judge (None)."""
    if old is None or old.state != PENDING:
        return None
    return replace(old, state=GONE, last_seen=now)


def accept_problem(row: Discovered | None, name: str, confirmed: str) -> str | None:
    """Why ``name`` may not be accepted with fingerprint ``confirmed``; None if it may."""
    if row is None or row.state == KNOWN:
        return (f"no pending slave {name!r}; afarmctl slaves lists them (an enrolled slave"
                " needs no accept)")
    if row.warning:
        return f"{name} is not accepted: {row.warning}"
    if confirmed != row.fingerprint:
        return (f"{name}'s host key is {row.fingerprint}, not {confirmed}: it changed since"
                " you looked, or the wrong one was confirmed; nothing was accepted")
    if not row.claim_port:
        return (f"{name} does not take claims from a master (it runs afarm-slave without"
                " --claim-port); enrol it with a token: afarmctl slave token")
    if row.state == ACCEPTED:
        return None  # accepting again retries an enrolment that did not finish
    if row.state == GONE:
        return (f"{name} left the network (its announcement was withdrawn); it is pending"
                " again when it comes back")
    return None if row.state == PENDING else f"{name} is {row.state}"
