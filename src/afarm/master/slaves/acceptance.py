# SPDX-License-Identifier: MIT
"""Acceptance: a slave proves itself between its hello and its first task.

After the hello a slave is `testing`: the master puts a small file into its cache and gets
it back (the rsync round trip), and the agent runs its own checks (`test`: each application
renders or runs its test in the sandbox, scratch, disk, memory, GPUs). A slave that passes
is benchmarked when its Blender version or hardware changed since its last benchmark (once
per change) and becomes `online`; one that fails is `quarantined` with the reason and takes
no task until a test passes (`afarmctl slave test NAME`, or a reconnect).

A reconnecting slave whose software digest, hardware and the master's thresholds are the
same as at its last passed test goes online without a new test.
"""

import asyncio
import hashlib
import json
import logging
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from afarm.errors import AfarmError
from afarm.protocol.messages import BenchReport, Check, ProtocolError, TestReport
from afarm.store import benchmarks
from afarm.store.benchmarks import Benchmark
from afarm.store.db import Store

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class AcceptanceSettings:
    """master.conf [acceptance]."""

    enabled: bool = True
    min_disk_mib: int = 1024
    min_memory_mib: int = 256
    benchmark_frames: int = 3  # 0: never benchmark
    timeout: int = 600  # seconds the slave's checks (and its benchmark) may take

    @classmethod
    def from_config(cls, section: dict[str, Any]) -> "AcceptanceSettings":
        known = asdict(cls())
        return cls(**{k: type(known[k])(v) for k, v in section.items() if k in known})


def hardware_fingerprint(info: dict[str, Any], report: TestReport) -> str:
    """What a benchmark depends on: cpus, memory, GPUs, afarm's and Blender's versions."""
    facts = {"cpus": info.get("cpus"), "memory": info.get("memory"),
             "gpus": sorted(report.gpus), "cycles": sorted(report.cycles_devices),
             "afarm": info.get("version"), "blender": report.blender}
    return hashlib.sha256(json.dumps(facts, sort_keys=True).encode()).hexdigest()[:32]


class Acceptance:
    def __init__(self, store: Store, settings: AcceptanceSettings | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.settings = settings or AcceptanceSettings()
        self.clock = clock
        self._locks: dict[str, asyncio.Lock] = {}

    def _software_key(self, info: dict[str, Any]) -> str:
        s = self.settings
        facts = {"software": info.get("software", ""), "version": info.get("version"),
                 "applications": info.get("applications"), "cpus": info.get("cpus"),
                 "memory": info.get("memory"), "min_disk_mib": s.min_disk_mib,
                 "min_memory_mib": s.min_memory_mib}
        return hashlib.sha256(json.dumps(facts, sort_keys=True).encode()).hexdigest()[:32]

    def _stored(self, name: str) -> dict[str, Any] | None:
        row = self.store.db.execute("SELECT info FROM slaves WHERE name=?", (name,)).fetchone()
        if row is None:
            return None
        try:
            found = json.loads(row[0] or "{}").get("acceptance")
        except (ValueError, AttributeError):
            return None
        return found if isinstance(found, dict) else None

    async def admit(self, link: Any, force: bool = False) -> dict[str, Any]:
        """Test the connected slave (unless nothing changed since it last passed), maybe
        benchmark it, and leave it online or quarantined. Returns the acceptance record."""
        lock = self._locks.setdefault(link.name, asyncio.Lock())
        async with lock:
            return await self._admit(link, force)

    async def _admit(self, link: Any, force: bool) -> dict[str, Any]:
        key = self._software_key(link.info)
        before = self._stored(link.name)
        # Passing clears the reason of an earlier quarantine; other errors (a lost
        # connection) stay in last_error as before.
        clear = "" if before and not before.get("passed") else None
        if not self.settings.enabled:
            off = {"passed": True, "skipped": "acceptance is off ([acceptance] enabled)"}
            link.info["acceptance"] = off
            link.accepted(clear)
            return off
        if not force and before and before.get("passed") and before.get("key") == key:
            link.info["acceptance"] = before
            link.accepted(clear)
            return before
        if before:
            link.info["acceptance"] = before
        link.set_state("testing")
        started = time.monotonic()
        report = await self._test(link)
        record: dict[str, Any] = {
            "passed": report.passed, "reason": report.reason, "key": key, "at": self.clock(),
            "seconds": round(time.monotonic() - started, 3), "blender": report.blender,
            "gpus": report.gpus, "cycles_devices": report.cycles_devices,
            "checks": [asdict(c) for c in report.checks]}
        link.info["acceptance"] = record
        if not report.passed:
            log.warning("%s failed its acceptance test: %s", link.name, report.reason)
            link.set_state("quarantined", report.reason)
            return record
        log.info("%s passed its acceptance test in %.1f s", link.name, record["seconds"])
        if report.blender and self.settings.benchmark_frames:
            await self._benchmark(link, report)
        link.accepted(clear)
        return record

    async def _test(self, link: Any) -> TestReport:
        s = self.settings
        rsync = await self._round_trip(link)
        try:
            reply = await asyncio.wait_for(link.request(
                {"op": "test", "min_disk_mib": s.min_disk_mib,
                 "min_memory_mib": s.min_memory_mib}), timeout=s.timeout)
        except TimeoutError:
            return TestReport([rsync, Check("agent", False, f"no test report within"
                                            f" {s.timeout} s ([acceptance] timeout)")])
        if reply.get("op") == "refused":
            return TestReport([rsync, Check("agent", False, "the slave does not run the"
                                            " acceptance test: " + str(reply.get("reason"))
                                            [:300] + "; install the same afarm version on"
                                            " the slave as on the master")])
        try:
            report = TestReport.from_wire(reply)
        except ProtocolError as exc:
            return TestReport([rsync, Check("agent", False, str(exc))])
        report.checks.insert(0, rsync)
        return report

    async def _round_trip(self, link: Any) -> Check:
        """Put a small file into the slave's cache, get it back, compare."""
        data = f"afarm acceptance round trip of {link.name}\n".encode()
        sha = hashlib.sha256(data).hexdigest()
        started = time.monotonic()
        try:
            with tempfile.TemporaryDirectory(prefix="afarm-roundtrip-") as tmp:
                src, back = Path(tmp) / sha, Path(tmp) / "back"
                src.write_bytes(data)
                await asyncio.to_thread(link.transport.put, src, f"cache/{sha}")
                await asyncio.to_thread(link.transport.get, f"cache/{sha}", back, 1 << 20)
                same = back.read_bytes() == data
        except (AfarmError, OSError) as exc:
            return Check("rsync", False, f"round trip failed: {exc}",
                         round(time.monotonic() - started, 3))
        return Check("rsync", same, "put and got back a file" if same else
                     "the file came back different", round(time.monotonic() - started, 3))

    async def _benchmark(self, link: Any, report: TestReport) -> None:
        fingerprint = hardware_fingerprint(link.info, report)
        if benchmarks.last_fingerprint(self.store.db, link.name) == fingerprint:
            return  # measured on this very hardware and software already
        started = time.monotonic()
        try:
            reply = await asyncio.wait_for(link.request(
                {"op": "bench", "frames": self.settings.benchmark_frames}),
                timeout=self.settings.timeout)
            bench = BenchReport.from_wire(reply) if reply.get("op") == "bench" else \
                BenchReport(error=str(reply.get("reason", "refused"))[:300])
        except TimeoutError:
            bench = BenchReport(error=f"no result within {self.settings.timeout} s")
        except ProtocolError as exc:
            bench = BenchReport(error=str(exc))
        now = self.clock()
        rows = [Benchmark(link.name, r.application, r.version, r.engine, r.device,
                          r.seconds_per_frame, fingerprint, now)
                for r in sorted(bench.results, key=lambda r: -r.seconds_per_frame)]
        if not rows:
            rows = [Benchmark(link.name, "", report.blender, "", "", None, fingerprint, now,
                              bench.error or "no result")]
        self.store.add_benchmarks(rows)
        log.info("%s benchmarked in %.1f s: %s", link.name, time.monotonic() - started,
                 ", ".join(f"{b.engine}/{b.device} {b.seconds_per_frame} s/frame"
                           for b in rows) if bench.results else bench.error)
