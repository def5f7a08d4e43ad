# SPDX-License-Identifier: MIT
"""Which free slave takes the next task: the ranking as the scheduler uses it.

Once per scheduling pass the free slaves are visited best first. The order is the ranking
of the most urgent job's policy (its `--policy`, else master.conf's), cached and ranked
again only when something that orders the slaves changed: a slave was added, a property
moved by more than a few percent (at most once a RERANK_INTERVAL), or the policy reads a
property that changes with every task (load, locality; then once a RERANK_INTERVAL).
The locality bonus is the policy's to give: a policy with the key `locality` ranks slaves
that already cache the most urgent job's inputs as its keys say.
A job's own settings become per-job exclusions in the index, refreshed as often: slaves
below its --min-memory or --gpus, and under cheapest-within-deadline those its deadline
does not need. Tail avoidance (ranking.tail_defers) keeps a job's last tasks off a slave
far slower than a busy one.
"""

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from afarm.master.scheduling.index import RunnableIndex
from afarm.master.scheduling.properties import DYNAMIC, Properties
from afarm.master.scheduling.ranking import (
    PRESETS,
    Constraints,
    Policy,
    Ranking,
    admitted,
    rank,
)
from afarm.model.job import Job

RERANK_INTERVAL = 1.0  # seconds: measured changes re-rank at most this often
MIB = 1 << 20


class Ranked(Protocol):
    """What placement reads of a slave (the scheduler's Place has it)."""

    name: str
    slots: int
    running: dict[int, Any]

    @property
    def tags(self) -> list[str]: ...

    @property
    def applications(self) -> frozenset[str] | None: ...


@dataclass
class _Cached:
    key: tuple[int, int, int]
    at: float
    names: list[str]
    speed: dict[str, float]


class Placement:
    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        self.properties = Properties()
        self.site_policy: Policy = PRESETS["fastest"]
        self.policies: dict[str, Policy] = dict(PRESETS)
        self.jobs: dict[int, dict[str, Any]] = {}  # job -> its scheduling settings
        self._cache: dict[str, _Cached] = {}
        self._rules_at = -RERANK_INTERVAL
        self._rules_key: tuple[int, int] | None = None

    def configure(self, properties: Properties, policy: str,
                  policies: dict[str, Policy] | None = None) -> None:
        self.properties = properties
        self.policies = {**PRESETS, **(policies or {})}
        self.site_policy = self.policies[policy]
        self._cache.clear()
        self._rules_key = None

    def policy_of(self, job_id: int | None) -> Policy:
        name = self.jobs.get(job_id, {}).get("policy") if job_id is not None else None
        return self.policies.get(name or "", self.site_policy)

    def set_job(self, job_id: int, scheduling: dict[str, Any]) -> None:
        if scheduling:
            self.jobs[job_id] = scheduling
            self._rules_key = None
        else:
            self.jobs.pop(job_id, None)

    def drop_job(self, job_id: int) -> None:
        self.jobs.pop(job_id, None)

    # -- ranking --------------------------------------------------------------------------
    def ranking(self, places: Mapping[str, Ranked], index: RunnableIndex,
                policy: Policy | None = None, job: Job | None = None) -> Ranking:
        """The slaves ranked now; for a job, those that may not take its tasks are left
        out with the reason, its inputs decide locality and its deadline cuts
        cheapest-within-deadline."""
        policy = policy or self.site_policy
        files = locality_keys(job) if job is not None else None
        m = self.properties.matrix(dict(places), files)
        if job is None:
            return rank(m, policy)
        settings = job.scheduling
        c = Constraints(minimum=_minimums(settings), tags=frozenset(job.tags),
                        application=job.application)
        excluded = admitted(m, c, {n: frozenset(p.tags) for n, p in places.items()},
                            {n: p.applications for n, p in places.items()})
        deadline = settings.get("deadline")
        return rank(m, policy, excluded, remaining=self._frames_left(job.id, index),
                    deadline=None if deadline is None else deadline - self.clock(),
                    per_task=self._per_task(job.id))

    def _per_task(self, job_id: int) -> float:
        return float(self.jobs.get(job_id, {}).get("frames_per_task", 1.0))

    def _frames_left(self, job_id: int, index: RunnableIndex) -> float:
        return index.runnable(job_id) * self._per_task(job_id)

    def order(self, places: Mapping[str, Ranked], policy: Policy,
              job: Callable[[], Job | None] = lambda: None) -> tuple[list[str],
                                                                     dict[str, float]]:
        """Slave names best first under `policy`, and their speeds (cached). A policy
        with the key locality ranks for `job` (the most urgent one, fetched only then):
        slaves that already hold its inputs get the bonus it gives."""
        self.properties.check_tariff()
        local = "locality" in policy.columns
        head = job() if local else None
        key = (self.properties.version, len(places), head.id if head else 0)
        now = time.monotonic()
        c = self._cache.get(policy.name)
        if c is not None:
            due = now - c.at >= RERANK_INTERVAL
            changed = key != c.key
            if not ((changed and (key[1:] != c.key[1:] or due))
                    or (due and policy.columns & DYNAMIC)):
                return c.names, c.speed
        files = locality_keys(head) if head is not None else None
        r = rank(self.properties.matrix(dict(places), files), policy)
        speed = r.matrix.column("speed")
        c = _Cached(key, now, r.names,
                    {n: float(speed[i]) for i, n in enumerate(r.matrix.slaves)})
        self._cache[policy.name] = c
        return c.names, c.speed

    def apply_job_rules(self, places: Mapping[str, Ranked], index: RunnableIndex) -> None:
        """Per-job exclusions in the index: below a job's minimums, or held back by its
        deadline; refreshed at most once a RERANK_INTERVAL unless something changed."""
        if not self.jobs:
            return
        key = (self.properties.version, len(places))
        now = time.monotonic()
        if key == self._rules_key and now - self._rules_at < RERANK_INTERVAL:
            return
        self._rules_key, self._rules_at = key, now
        m = self.properties.matrix(dict(places))
        for job_id, settings in list(self.jobs.items()):
            if not index.has_job(job_id):
                del self.jobs[job_id]  # dropped (canceled, paused, failed): reloaded later
                continue
            if not index.runnable(job_id):
                continue  # nothing to hand out now (finished, or all running)
            c = Constraints(minimum=_minimums(settings))
            out = admitted(m, c, {}, {})
            policy = self.policy_of(job_id)
            deadline = settings.get("deadline")
            if policy.kind == "cheapest-within-deadline" and deadline is not None:
                r = rank(m, policy, out, deadline=deadline - self.clock(),
                         remaining=self._frames_left(job_id, index),
                         per_task=self._per_task(job_id))
                held = {m.slaves[i] for i in r.held}
            else:
                held = set()
            index.exclude(job_id, frozenset(m.slaves[i] for i in out) | held)


def locality_keys(job: Job) -> frozenset[str]:
    """What a slave must already hold to be local for a job: its inputs, and the pool
    version it runs (a link lists an installed one as app:NAME/VERSION)."""
    keys = {f.sha256 for f in job.files}
    if job.app_version:
        keys.add(f"app:{job.application}/{job.app_version}")
    return frozenset(keys)


def _minimums(settings: dict[str, Any]) -> tuple[tuple[str, float], ...]:
    out = []
    if settings.get("min_memory_mib"):
        out.append(("memory", float(settings["min_memory_mib"]) * MIB))
    if settings.get("gpus"):
        out.append(("gpus", float(settings["gpus"])))
    return tuple(out)
