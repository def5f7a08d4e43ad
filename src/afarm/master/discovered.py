# SPDX-License-Identifier: MIT
"""Slaves that announce themselves: the master's browse, its pending list, and accept.

The Avahi browser (afarm.discovery.browse) runs in its own thread and hands each resolved
announcement to the event loop; :meth:`Discovery.observe` judges it (afarm.discovery.pending)
and records the verdict. A pending slave is only a row in the store, never a link of the
farm, so it gets no work.

``POST /api/v1/slaves/{name}/accept`` (bearer token, like every job-port call) with the
fingerprint the admin confirmed runs the existing enrolment for it: the master makes a
one-time token bound to that name and host key (afarm.master.enroll), hands it to the
slave's claim port (afarm.discovery.claim) with the master's own job-port address, and the
slave enrols with it as ``afarm-slave enroll`` would. The master trusts the slave only by
the accepted host key: a token seen on the wire is useless with another name or key, and
SSH refuses a host without that key.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from afarm.discovery import avahi
from afarm.discovery.browse import Browser, Found
from afarm.discovery.claim import CLAIM_PATH
from afarm.discovery.pending import MAX_PENDING, accept_problem, judge
from afarm.discovery.pending import lost as lost_row
from afarm.errors import IllegalTransition, OperationFailed, UsageError
from afarm.master import enroll
from afarm.master.farm import Farm
from afarm.master.http.limits import json_body
from afarm.master.slaves.wakeaddr import broadcast_towards, choose_mac, read_neighbours
from afarm.protocol.enroll import fingerprint
from afarm.protocol.names import is_slave_name
from afarm.protocol.net import http_url, is_loopback, join_hostport
from afarm.store import discovered as table
from afarm.store.discovered import ACCEPTED, KNOWN, Discovered

log = logging.getLogger(__name__)
PENDING_EXPIRY = 86400.0  # [discovery] pending_expiry_hours, in seconds
ACCEPT_TTL = 300  # seconds the bound token lives: the slave enrols at once or not at all
CLAIM_TIMEOUT = 60.0


class Discovery:
    def __init__(self, farm: Farm, state_dir: Path, slaves_dir: Path | None,
                 job_port: tuple[str, int], max_pending: int = MAX_PENDING,
                 pending_expiry: float = PENDING_EXPIRY) -> None:
        self.farm = farm
        self.pending_expiry = pending_expiry  # seconds a pending or gone row outlives
        #                                       its last announcement
        self.present: dict[str, str] = {}  # DNS-SD instance -> slave name, announced now
        self.state_dir = state_dir
        self.slaves_dir = slaves_dir
        self.job_port = job_port
        self.max_pending = max_pending
        self.browser: Browser | None = None
        self.unavailable = ""
        self.neighbours = read_neighbours  # the master's ARP table (tests give their own)

    # -- browsing -----------------------------------------------------------------------
    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        """Browse in a thread; without Avahi, say so once and carry on (tokens still work)."""
        def found(f: Found) -> None:
            loop.call_soon_threadsafe(self.observe, f)

        def gone(service: str) -> None:
            loop.call_soon_threadsafe(self.lost, service)

        browser = Browser(found, gone)
        try:
            browser.start()
        except avahi.Unavailable as exc:
            self.unavailable = str(exc)
            log.info("slave discovery is off: %s; slaves enrol with tokens", exc)
            return
        self.browser = browser
        log.info("browsing for slaves (%s over Avahi)", "_afarm._tcp")
        self._tick(loop)

    def _tick(self, loop: asyncio.AbstractEventLoop) -> None:
        """Expire stale rows now and then, also when nothing is announced."""
        if self.browser is None:
            return
        try:
            self.rows()
        except Exception:  # a busy store must not end the expiry
            log.exception("expiring discovered slaves failed")
        loop.call_later(min(self.pending_expiry / 4, 600.0), self._tick, loop)

    def stop(self) -> None:
        if self.browser is not None:
            self.browser.stop()
            self.browser = None

    def trusted(self, name: str) -> set[str] | None:
        """Fingerprints of the host keys trusted for slave ``name``; None: no such slave."""
        link = self.farm.dispatchers.get(name)
        if link is None and enroll._enrolled_file(self.slaves_dir, name) is None:
            return None
        keys = enroll._known_host_keys(self.state_dir, self.slaves_dir, name, link)
        return {fingerprint(k.split()[1]) for k in keys}

    def observe(self, found: Found) -> None:
        a = found.announcement
        db = self.farm.store.db
        with self.farm.store.transaction():
            old = table.get(db, a.name)
            if old is not None and old.macs and old.macs[0] in a.macs[1:]:
                # The MAC chosen to wake it (wake_address) stays first.
                a = dataclasses.replace(a, macs=(old.macs[0], *(m for m in a.macs
                                                                if m != old.macs[0])))
            now = self.farm.clock()
            self.present[found.service] = a.name
            self._expire(now)
            verdict = judge(a, found.address, old, self.trusted(a.name),
                            table.count_waiting(db), now, self.max_pending)
            if verdict.row is not None:
                table.put(db, verdict.row)
        if verdict.warning:
            log.warning("%s", verdict.warning)
        if verdict.note:
            log.info("%s", verdict.note)

    def wake_address(self, name: str) -> tuple[str, str] | None:
        """(MAC, broadcast) to wake slave ``name`` at, from what it announced; None when it
        announced no MAC or is not an enrolled or accepted slave. Of several MACs, the one
        the master's neighbour table holds for its address (master/slaves/wakeaddr.py);
        the choice is stored first, for when it sleeps and the entry is gone."""
        db = self.farm.store.db
        row = table.get(db, name)
        if row is None or row.state not in (KNOWN, ACCEPTED) or not row.macs:
            return None
        mac = choose_mac(row.address, row.macs, self.neighbours())
        if mac is None:
            return None
        if mac != row.macs[0]:
            with self.farm.store.transaction():
                table.put(db, dataclasses.replace(
                    row, macs=(mac, *(m for m in row.macs if m != mac))))
            log.info("%s is woken at %s, its card on the master's network", name, mac)
        return mac, broadcast_towards(row.address)

    def lost(self, service: str) -> None:
        """Avahi withdrew an announcement: a pending slave is shown as gone."""
        name = self.present.pop(service, None)
        if name is None or name in self.present.values():
            return  # not one we saw, or still announced under another instance name
        db = self.farm.store.db
        with self.farm.store.transaction():
            row = lost_row(table.get(db, name), self.farm.clock())
            if row is not None:
                table.put(db, row)
        if row is not None:
            log.info("pending slave %s left the network; it is forgotten in %g h unless"
                     " it comes back", name, self.pending_expiry / 3600)

    def _expire(self, now: float) -> None:
        """Forget pending and gone rows not announced for pending_expiry (in a
        transaction of the caller's)."""
        keep = frozenset(self.present.values())
        for name in table.expire(self.farm.store.db, now - self.pending_expiry, keep):
            log.info("forgot discovered slave %s: not announced for %g h", name,
                     self.pending_expiry / 3600)

    def rows(self) -> list[Discovered]:
        with self.farm.store.transaction():
            self._expire(self.farm.clock())
        return table.all_rows(self.farm.store.db)

    # -- accept and reject --------------------------------------------------------------
    def master_address(self, slave: str) -> str:
        """HOST:PORT of the job port as the slave at ``slave`` reaches it."""
        host, port = self.job_port
        if is_loopback(host):
            raise UsageError(f"the job port listens on {host} only, which the slave cannot"
                             " reach; set [job_port] listen to an address on the slaves'"
                             " network (and give clients a token: afarm-master new-token)")
        if host in ("", "0.0.0.0", "::", "[::]"):
            from afarm.slave.enroll import local_address_towards

            host = local_address_towards(slave, port)
        return join_hostport(host, port)

    async def accept(self, name: str, confirmed: str) -> dict[str, Any]:
        row = table.get(self.farm.store.db, name)
        problem = accept_problem(row, name, confirmed)
        if problem is not None or row is None:
            raise IllegalTransition(problem or name)
        master = self.master_address(row.address)
        token = enroll.new_enrollment_token(self.state_dir, ACCEPT_TTL, f"accept-{name}",
                                            bind=(name, row.fingerprint))
        with self.farm.store.transaction():
            table.put(self.farm.store.db, dataclasses.replace(row, state=ACCEPTED))
        log.info("slave %s accepted with host key %s; handing it a token at %s", name,
                 row.fingerprint, join_hostport(row.address, row.claim_port))
        body = {"name": name, "fingerprint": row.fingerprint, "master": master,
                "token": token}
        url = http_url(row.address, row.claim_port) + CLAIM_PATH
        try:
            timeout = aiohttp.ClientTimeout(total=CLAIM_TIMEOUT)
            async with aiohttp.ClientSession(timeout=timeout) as session, \
                    session.post(url, json=body) as resp:
                raw = await resp.content.read(4096)
                status = resp.status
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            raise OperationFailed(f"cannot reach {name}'s claim port at {url}"
                                  f" ({exc or 'timeout'}); is afarm-slave-claim running"
                                  " there?") from None
        try:
            answer: Any = json.loads(raw)
        except ValueError:
            answer = {}
        message = str(answer.get("error", ""))[:500] if isinstance(answer, dict) else ""
        if status != 200:
            log.warning("slave %s did not enrol: %s", name, message or f"HTTP {status}")
            raise OperationFailed(f"{name} did not enrol: {message or f'HTTP {status}'}")
        return {"name": name, "fingerprint": row.fingerprint, "address": row.address,
                "state": "enrolled", "master": master}

    def reject(self, name: str) -> bool:
        """Forget ``name``'s record; whatever announces it now is judged afresh."""
        with self.farm.store.transaction():
            forgotten = table.forget(self.farm.store.db, name)
        if forgotten and self.browser is not None:
            self.browser.rescan()
        return forgotten


def routes(d: Discovery) -> list[web.RouteDef]:
    async def accept(request: web.Request) -> web.Response:
        name = request.match_info["name"]
        body = await json_body(request)
        fp = body.get("fingerprint") if isinstance(body, dict) else None
        if not is_slave_name(name):
            raise UsageError("give the name of a pending slave (afarmctl slaves)")
        if not isinstance(fp, str) or len(fp) > 100:
            raise UsageError("fingerprint: give the SHA256:... host key fingerprint you"
                             " confirmed")
        return web.json_response(await d.accept(name, fp))

    async def reject(request: web.Request) -> web.Response:
        name = request.match_info["name"]
        if not is_slave_name(name) or not d.reject(name):
            raise web.HTTPNotFound(text=json.dumps({
                "error": f"no discovered slave {name[:64]!r}", "kind": "not-found"}),
                content_type="application/json")
        return web.json_response({"name": name, "forgotten": True})

    return [web.post("/api/v1/slaves/{name}/accept", accept),
            web.post("/api/v1/slaves/{name}/reject", reject)]
