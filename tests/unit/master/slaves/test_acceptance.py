# SPDX-License-Identifier: MIT
"""Acceptance on the master: testing, then online or quarantined; the benchmark runs once
per change of Blender or hardware; an unchanged slave is not tested again on reconnect."""

import asyncio
import shutil
from pathlib import Path
from typing import Any

from afarm.master.slaves.acceptance import Acceptance, AcceptanceSettings
from afarm.store.db import Store


class FakeTransport:
    def __init__(self, root: Path) -> None:
        self.root = root

    def put(self, src: Path, dst: str) -> int:
        (self.root / dst).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, self.root / dst)
        return src.stat().st_size

    def get(self, src: str, dst: Path, max_bytes: int | None = None) -> int:
        shutil.copyfile(self.root / src, dst)
        return dst.stat().st_size


class FakeLink:
    def __init__(self, store: Store, root: Path, passes: bool = True) -> None:
        self.name, self.store, self.passes = "s1", store, passes
        self.transport = FakeTransport(root)
        self.info: dict[str, Any] = {"version": "0.2", "cpus": 4, "memory": 8 << 30,
                                     "software": "abc", "applications": ["blender"]}
        self.state, self.running, self.slots = "connecting", {}, 1
        self.asked: list[str] = []
        self.blender = "3.4.1"

    async def request(self, msg: dict[str, Any]) -> dict[str, Any]:
        self.asked.append(msg["op"])
        if msg["op"] == "test":
            return {"op": "test", "blender": self.blender, "gpus": [], "checks": [
                {"name": "application blender", "ok": self.passes,
                 "detail": "" if self.passes else "blender exited 1"}]}
        return {"op": "bench", "results": [{
            "application": "blender", "version": self.blender, "engine": "CYCLES",
            "device": "CPU", "seconds_per_frame": 0.25, "frames": 3}]}

    def set_state(self, state: str, error: str | None = None) -> None:
        self.state = state
        self.store.set_slave(self.name, state, error, self.info)

    def accepted(self, error: str | None = "") -> None:
        self.set_state("online", error)


def states(store: Store) -> list[str]:
    return [e["kind"] + ":" + str(e.get("state", "")) for e in store.events()]


def test_a_passing_slave_is_tested_benchmarked_once_and_then_online(tmp_path: Path) -> None:
    store = Store(tmp_path / "db")
    acc = Acceptance(store, AcceptanceSettings(benchmark_frames=3))
    link = FakeLink(store, tmp_path)
    record = asyncio.run(acc.admit(link))
    assert record["passed"] and link.state == "online"
    assert [c["name"] for c in record["checks"]] == ["rsync", "application blender"]
    assert record["checks"][0]["ok"]
    assert link.asked == ["test", "bench"]
    assert states(store) == ["slave-state:testing", "slave-benchmarked:", "slave-state:online"]
    assert store.latest_benchmarks() == {"s1": 0.25}
    # Reconnect with nothing changed: no test, no benchmark.
    link.asked.clear()
    asyncio.run(acc.admit(link))
    assert link.asked == [] and link.state == "online"
    # A forced re-test runs the checks but not the benchmark (same Blender, same hardware).
    asyncio.run(acc.admit(link, force=True))
    assert link.asked == ["test"]
    # A new Blender: tested (its software digest changed) and benchmarked again.
    link.info["software"], link.blender = "def", "4.2.0"
    link.asked.clear()
    asyncio.run(acc.admit(link))
    assert link.asked == ["test", "bench"]


def test_a_failing_slave_is_quarantined_with_the_reason_and_retested(tmp_path: Path) -> None:
    store = Store(tmp_path / "db")
    acc = Acceptance(store)
    link = FakeLink(store, tmp_path, passes=False)
    record = asyncio.run(acc.admit(link))
    assert not record["passed"] and link.state == "quarantined"
    assert store.slaves()[0]["last_error"] == "application blender: blender exited 1"
    assert link.asked == ["test"]  # no benchmark for a slave that failed
    # A reconnect of a quarantined slave tests again; passing clears the reason.
    link.passes = True
    asyncio.run(acc.admit(link))
    assert link.state == "online" and store.slaves()[0]["last_error"] == ""


def test_thresholds_that_changed_mean_a_new_test(tmp_path: Path) -> None:
    store = Store(tmp_path / "db")
    link = FakeLink(store, tmp_path)
    asyncio.run(Acceptance(store, AcceptanceSettings(benchmark_frames=0)).admit(link))
    link.asked.clear()
    asyncio.run(Acceptance(store, AcceptanceSettings(benchmark_frames=0,
                                                     min_disk_mib=5)).admit(link))
    assert link.asked == ["test"]


def test_a_failed_benchmark_is_not_repeated_until_something_changes(tmp_path: Path) -> None:
    store = Store(tmp_path / "db")
    acc = Acceptance(store)
    link = FakeLink(store, tmp_path)

    async def no_bench(msg: dict[str, Any]) -> dict[str, Any]:
        if msg["op"] == "bench":
            link.asked.append(msg["op"])
            return {"op": "bench", "results": [], "error": "render failed"}
        return await FakeLink.request(link, msg)

    link.request = no_bench  # type: ignore[method-assign]
    asyncio.run(acc.admit(link))
    asyncio.run(acc.admit(link, force=True))
    assert link.asked == ["test", "bench", "test"]
    assert store.latest_benchmarks() == {} and link.state == "online"
