# SPDX-License-Identifier: MIT
"""The farm as the HTTP handlers see it: submit, control and inspect jobs and slaves.

It wires the store, the file store, the results and the scheduler together and is the one
service the job and results ports call; scheduling itself lives in master/scheduling/,
slaves in master/slaves/.
"""

import asyncio
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from afarm.applications.base import Application, relative_name
from afarm.errors import OperationFailed, UsageError
from afarm.master.files import FileStore, JobDir, check_sha
from afarm.master.metering import Meter
from afarm.master.pool.definition import build as build_definition
from afarm.master.pool.definition import parse_definition
from afarm.master.pool.index import Pool, PoolEntry, PoolError
from afarm.master.results import Results
from afarm.master.scheduling.scheduler import Scheduler
from afarm.master.scheduling.versions import choose, parse_constraint
from afarm.master.slaves.acceptance import Acceptance
from afarm.master.slaves.link import SlaveGone, SlaveLink
from afarm.master.slaves.master_runner import MasterRunner
from afarm.master.slaves.waker import PowerManager
from afarm.model.job import InputFile, Job, JobSpec, Task
from afarm.model.policy import FailurePolicy
from afarm.protocol.messages import Progress
from afarm.runner.sandbox import Sandbox
from afarm.store import slave_versions
from afarm.store.db import Store

log = logging.getLogger(__name__)
Listener = Callable[[dict[str, Any]], None]
PLAN_CHUNK = 5000  # tasks written per transaction of a large submission
GC_DEBOUNCE = 5.0  # seconds between garbage collections on the slaves


class Farm:
    def __init__(self, state_dir: Path, applications: dict[str, Application], *,
                 slave_failures_per_job: int = 3, slaves_per_task: int = 3,
                 task_timeout: int = 3600, followup_workers: int = 1,
                 file_retention: float = 7 * 86400, sandbox: Sandbox | None = None,
                 max_output_bytes: int = 16 << 30,
                 clock: Callable[[], float] = time.time, pool_dir: Path | None = None,
                 app_keep_days: float = 30.0) -> None:
        self.state_dir = state_dir
        self.apps = applications
        self.clock = clock
        self.listeners: list[Listener] = []
        self.store = Store(state_dir / "afarm.db", on_event=self._broadcast, clock=clock)
        self.files = FileStore(state_dir / "files")
        self.jobs_root = state_dir / "jobs"
        self.jobs_root.mkdir(parents=True, exist_ok=True)
        self.task_timeout = task_timeout
        self.file_retention = file_retention
        self.max_output_bytes = max_output_bytes
        self.results = Results(self.jobs_root)
        self.scheduler = Scheduler(self.store, self.results,
                                   FailurePolicy(slave_failures_per_job, slaves_per_task),
                                   self._timeout_of)
        self.scheduler.master = MasterRunner(applications, followup_workers, self.files,
                                             self.results.scratch, self.results.published,
                                             sandbox)
        self.meter = Meter(self.store, clock)  # the daemon sets watts and prices
        self.scheduler.meter = self.meter.record
        self.acceptance = Acceptance(self.store, clock=clock)  # the daemon sets its settings
        self.bytes_sent: dict[str, int] = {}
        # Application versions kept as Debian keeps packages (master/pool/index.py).
        self.pool = Pool(pool_dir or state_dir / "pool")
        self.app_keep_days = app_keep_days
        self._version_apps: dict[str, tuple[str, Application]] = {}  # key -> (sha, app)
        self.scheduler.version_of = self._version_of
        self.scheduler.version_arches = self._version_arches
        self._tasks: list[asyncio.Task[None]] = []
        self._started = False
        self._gc_due: asyncio.TimerHandle | None = None
        self.power: PowerManager | None = None  # the daemon sets it (master/slaves/waker.py)
        self.power_loop = False  # run the policy ([power] enabled)

    @property
    def dispatchers(self) -> dict[str, SlaveLink]:
        """The slaves' links by name (the results port lists them)."""
        return self.scheduler.places  # type: ignore[return-value]

    # -- life cycle -----------------------------------------------------------------------
    def link(self, name: str, transport: Any, slots: int,
             tags: list[str] | None = None) -> SlaveLink:
        link = SlaveLink(name, transport, slots, self, self.files, tags=tags,
                         max_output_bytes=self.max_output_bytes, acceptance=self.acceptance)
        link.pool = self.pool
        # Versions it failed the acceptance test of stay refused across master restarts.
        link.quarantined = slave_versions.quarantined(self.store.db, name)
        link.on_versions = self._save_versions
        return link

    def _save_versions(self, link: SlaveLink) -> None:
        with self.store.transaction() as db:
            slave_versions.save(db, link.name, link.installed, link.quarantined, self.clock())

    def add_slave(self, link: SlaveLink) -> None:
        old = self.scheduler.places.get(link.name)
        if getattr(old, "drained", False):
            # Re-enrolling (a new key or address) is not an undrain; only the user's is.
            link.drained = True
        self.scheduler.places[link.name] = link
        if self._started:  # enrolled while running: connect now, not at the next start
            self._tasks.append(asyncio.create_task(link.keep_connected()))
            self.wake()

    async def start(self) -> None:
        dropped = self.store.drop_unfinished_submissions()
        if dropped:
            log.info("removed %d submissions the master never finished accepting", dropped)
        n = self.store.recover_active()
        if n:
            log.info("requeued %d tasks that were active when the master stopped", n)
        # Whatever is in a .partial dir now belongs to an attempt that died with the master.
        for partial in self.jobs_root.glob("*/.partial/*"):
            partial.unlink(missing_ok=True)
        self.scheduler.load()
        self._load_drained()
        for slave, seconds in self.store.latest_benchmarks().items():
            self.scheduler.properties.benchmarked(slave, seconds)
        if self.power is not None and self.power_loop:
            # Sleeping slaves stay asleep (set before their links start connecting).
            self.power.restore(self.store.slave_states(),
                               {s["name"]: s["info"] for s in self.store.slaves()})
            self._tasks.append(asyncio.create_task(self.power.run()))
        self._started = True
        for link in self.scheduler.places.values():
            self._tasks.append(asyncio.create_task(link.keep_connected()))  # type: ignore
        self.scheduler.start()

    async def stop(self) -> None:
        if self._gc_due is not None:
            self._gc_due.cancel()
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.scheduler.stop()
        await asyncio.gather(*(p.stop() for p in self.scheduler.all_places()),
                             return_exceptions=True)
        self.store.close()

    def wake(self) -> None:
        self.scheduler.wake()

    # -- LinkHooks ------------------------------------------------------------------------
    def slave_state(self, name: str, state: str, error: str | None,
                    info: dict[str, Any] | None) -> None:
        self.store.set_slave(name, state, error, info)
        if self.power is not None:
            self.power.observe(name, state)

    async def test_slave(self, name: str) -> dict[str, Any]:
        """Run a connected slave's acceptance test again now (afarmctl slave test NAME)."""
        link = self.scheduler.places.get(name)
        if not isinstance(link, SlaveLink):
            raise UsageError(f"no slave {name!r}; afarmctl slaves lists them")
        if link.channel is None or link.state in ("offline", "connecting", "unreachable",
                                                  "refused"):
            raise UsageError(f"slave {name} is {link.state}, not connected; it is tested"
                             " when it connects")
        # A test by hand gives every version it was quarantined for another chance.
        had = bool(link.quarantined)
        link.quarantined.clear()
        with self.store.transaction() as db:
            slave_versions.clear_quarantine(db, name)
        try:
            record = await self.acceptance.admit(link, force=True)
        except SlaveGone as exc:
            raise OperationFailed(f"slave {name} went away during its test: {exc}; it is"
                                  " tested again when it reconnects") from None
        if had and record.get("passed"):  # its last error was a version's quarantine
            self.store.set_slave(name, link.state, "", None)
        self.wake()
        return {"name": name, "state": link.state, **record}

    def wake_slave(self, name: str) -> dict[str, Any]:
        """Send a slave the Wake-on-LAN packet now (afarmctl slave wake NAME)."""
        if self.power is None:
            raise UsageError("this master does not manage power")
        return self.power.wake_by_hand(name)

    def drain_slave(self, name: str, on: bool) -> dict[str, Any]:
        """afarmctl slave drain/undrain NAME: take no new tasks (running ones finish; with
        [power] enabled and a MAC it is then suspended), or take them again. Kept in the
        state dir's `drained` file across restarts of the master."""
        link = self.scheduler.places.get(name)
        if not isinstance(link, SlaveLink):
            raise UsageError(f"no slave {name!r}; afarmctl slaves lists them")
        link.drain(on)
        self._save_drained()
        self.wake()
        return {"name": name, "state": link.state, "drained": link.drained,
                "running": len(link.running)}

    def _save_drained(self) -> None:
        names = sorted(n for n, p in self.scheduler.places.items()
                       if getattr(p, "drained", False))
        path = self.state_dir / "drained"
        tmp = path.with_name(".drained.tmp")
        tmp.write_text("".join(f"{n}\n" for n in names), encoding="utf-8")
        tmp.replace(path)

    def _load_drained(self) -> None:
        try:
            names = (self.state_dir / "drained").read_text("utf-8").split()
        except FileNotFoundError:
            return
        for name in names:
            link = self.scheduler.places.get(name)
            if isinstance(link, SlaveLink):
                link.drained = True

    def slave_ready(self, name: str) -> None:
        self.wake()

    def progress(self, name: str, msg: Progress) -> None:
        self._broadcast({"kind": "frame-saved", "slave": name, "task": msg.task,
                         "file": msg.saved, "at": self.clock()})

    def count_bytes(self, name: str, n: int) -> None:
        self.bytes_sent[name] = self.bytes_sent.get(name, 0) + n

    # -- jobs -----------------------------------------------------------------------------
    def app_for(self, application: str, version: str = "") -> Application | None:
        """The Application a job of this pool version runs: built from the version's own
        definition (it travels with the version); without a version, the master's."""
        if not version:
            return self.apps.get(application)
        entry = next((e for e in self.pool.versions(application) if e.version == version),
                     None)
        if entry is None:
            return self.apps.get(application)
        cached = self._version_apps.get(entry.key)
        if cached is None or cached[0] != entry.sha256:
            cached = (entry.sha256, build_definition(application, entry.definition))
            self._version_apps[entry.key] = cached
        return cached[1]

    def _plan(self, spec: JobSpec, dry_run: bool) -> list[Any]:
        app = self.app_for(spec.application, spec.app_version)
        if app is None:
            raise UsageError(f"unknown application {spec.application!r}; this master has: "
                             + ", ".join(sorted(self.apps)))
        for f in spec.files:
            if not dry_run and not self.files.has(f.sha256):
                raise UsageError(f"input {f.name!r} ({f.sha256[:12]}) was not uploaded;"
                                 " upload it first (afarmctl does this for you)")
        spec.params = app.validate(spec.params, spec.files)
        plan = app.plan(spec.name, spec.params, spec.files)
        for t in plan:
            if t.application not in self.apps and t.application != spec.application:
                raise UsageError(f"job needs application {t.application!r} for its"
                                 f" {t.kind} tasks, but this master does not define it")
        if not dry_run:
            try:
                app.check_inputs([self.files.path(f.sha256) for f in spec.files])
            except UsageError:
                # A refused input (a broken .blend sent without ?kind=blend) is not kept
                # for the next slave to trip over, unless another job uses it.
                sha = spec.files[0].sha256 if spec.files else ""
                if sha and sha in self.store.unreferenced_files(1e300):  # any age
                    self.files.path(sha).unlink(missing_ok=True)
                    self.store.forget_file(sha)
                raise
        return plan

    def choose_version(self, application: str, constraint: str) -> str:
        """The pool version a job of `application` runs: the newest that satisfies the
        constraint ('' = any). No version in the pool: '' (the slaves' own program), and a
        constraint with versions in it is refused, since nothing can honour it."""
        c = parse_constraint(constraint or application)
        if c.package != application:
            raise UsageError(f"--app names {c.package!r} but the job is for"
                             f" {application!r}; give --app '{application} (>= VERSION)'")
        versions = [e.version for e in self.pool.versions(application)]
        if not versions and not c.clauses:
            return ""
        return choose(c, versions)

    def _version_arches(self, application: str, version: str) -> frozenset[str] | None:
        """The architectures the pool has a version for; None when it is not in the pool
        (the scheduler does not hold back what it cannot judge: the install says why)."""
        try:
            found = frozenset(e.arch for e in self.pool.versions(application)
                              if e.version == version)
        except PoolError:
            return None
        return found or None

    def _version_of(self, job_id: int) -> str:
        job = self.store.job(job_id)
        return job.app_version if job is not None else ""

    # -- the pool -------------------------------------------------------------------------
    def add_version(self, package: str, version: str, source: Path, arch: str = "amd64",
                    executable: str | None = None,
                    definition_text: str | None = None) -> PoolEntry:
        """Put an archive or directory into the pool; the definition it carries is its own
        (definition_text, checked here) or else this master's definition of that
        application, the program inside the archive."""
        if definition_text is not None:
            definition = parse_definition(package, definition_text)
        else:
            app = self.apps.get(package)
            if app is None:
                raise UsageError(f"this master defines no application {package!r} (it has:"
                                 f" {', '.join(sorted(self.apps))}); give the version its"
                                 " own definition with --definition FILE, or add one to the"
                                 " applications directory")
            definition = dict(getattr(app, "conf", {}) or {"kind": app.kind})
            definition.setdefault("kind", app.kind)
        entry = self.pool.add(package, version, source, definition, arch, executable)
        self._version_changed(package, version)
        return entry

    def remove_version(self, package: str, version: str) -> list[PoolEntry]:
        waiting = self.store.jobs_needing_version(package, version)
        if waiting:
            raise UsageError(f"{package} {version} is needed by unfinished job"
                             f"{'s' if len(waiting) > 1 else ''} "
                             + ", ".join(map(str, waiting[:20]))
                             + "; cancel them or wait until they finish")
        gone = self.pool.remove(package, version)
        self._version_changed(package, version)
        return gone

    def _version_changed(self, package: str, version: str) -> None:
        """A version removed or added again: what slaves knew of the old one (its
        quarantine, its install) no longer holds."""
        key = f"{package}/{version}"
        self._version_apps.pop(key, None)
        self.scheduler.versions_changed()
        with self.store.transaction() as db:
            slave_versions.forget_version(db, package, version)
        for link in self.scheduler.places.values():
            if isinstance(link, SlaveLink):
                link.forget_version(key)

    def list_versions(self) -> list[dict[str, Any]]:
        """Every pool version, with the slaves that hold it (as stored from their hellos
        and installs, connected now or not) and those quarantined for it, with why."""
        known = slave_versions.holders(self.store.db)
        out = []
        for e in self.pool.entries():
            slaves = known.get(e.key, {})
            out.append({**e.to_json(),
                        "definition": e.definition,
                        "slaves": sorted(n for n, why in slaves.items() if not why),
                        "quarantined": {n: why for n, why in sorted(slaves.items()) if why}})
        return out

    def submit(self, spec: JobSpec, dry_run: bool = False) -> int:
        """Validate, plan and store a job; with dry_run only validate (returns 0)."""
        plan = self._plan(spec, dry_run)
        if dry_run:
            return 0
        job_id = self.store.add_job(spec, plan)
        return self._accepted(job_id)

    async def submit_job(self, spec: JobSpec) -> int:
        """Like submit, but a large plan is written in chunks between which the event loop
        runs, so a 100,000-task job does not stall the farm; it stays invisible until the
        last chunk is written, and a master that dies midway drops it at start."""
        plan = self._plan(spec, False)
        if len(plan) <= PLAN_CHUNK:
            return self._accepted(self.store.add_job(spec, plan))
        job_id = self.store.begin_job(spec)
        ids: list[int] = []
        for start in range(0, len(plan), PLAN_CHUNK):
            self.store.add_tasks(job_id, plan[:start + PLAN_CHUNK], start, ids)
            await asyncio.sleep(0)
        self.store.finish_job(job_id, len(plan))
        return self._accepted(job_id)

    def _accepted(self, job_id: int) -> int:
        JobDir(self.jobs_root, job_id).create()
        self.scheduler.job_added(job_id)
        return job_id

    def input_files(self, raw: Any) -> list[InputFile]:
        if not isinstance(raw, list):
            raise UsageError("files must be a list of {name, sha256}")
        out = []
        for f in raw:
            if not isinstance(f, dict):
                raise UsageError("files must be a list of {name, sha256}")
            sha = check_sha(str(f.get("sha256", "")))
            name = relative_name(str(f.get("name", "")), "input file name")
            path = self.files.path(sha)
            out.append(InputFile(name, sha, path.stat().st_size if path.is_file() else 0))
        if len({f.name for f in out}) != len(out):
            raise UsageError("two input files have the same name; rename one")
        return out

    def cancel_job(self, job_id: int) -> None:
        self.scheduler.drop_job(job_id)
        self.scheduler.cancel_running(self.store.cancel_job(job_id))
        self.wake()

    def pause_job(self, job_id: int) -> None:
        self.scheduler.drop_job(job_id)
        self.store.pause_job(job_id)

    def resume_job(self, job_id: int) -> None:
        self.store.resume_job(job_id)
        self.scheduler.reload_job(job_id)

    def requeue_job(self, job_id: int) -> int:
        n = self.store.requeue_job(job_id)
        self.scheduler.reload_job(job_id)
        return n

    def set_priority(self, job_id: int, priority: int) -> None:
        self.store.set_priority(job_id, priority)
        self.scheduler.reload_job(job_id)  # the index orders jobs by priority

    def _timeout_of(self, task: Task, job: Job) -> int:
        if job.timeout:
            return job.timeout
        app = self.app_for(task.application,
                           job.app_version if task.application == job.application else "")
        return app.timeout if app else self.task_timeout

    def warnings(self, job: Job) -> list[str]:
        """What the user must know about a job that its status alone does not say."""
        out = []
        if job.app_version and job.status.value in ("queued", "active"):
            out += self._version_warnings(job)
        if job.tags and job.status.value in ("queued", "active"):
            able = [n for n, p in self.scheduler.places.items() if set(job.tags) <= set(p.tags)]
            if not able:
                out.append("no slave has the tags " + ", ".join(job.tags)
                           + "; add them to a slave definition (tags = ...) or resubmit"
                           " without --require-tag")
        return out

    def _version_warnings(self, job: Job) -> list[str]:
        """A job whose version exists for no connected slave's architecture, or that every
        connected slave is quarantined for, would wait silently: say so."""
        arches = self._version_arches(job.application, job.app_version)
        links = [p for p in self.scheduler.places.values() if isinstance(p, SlaveLink)
                 and p.own_applications is not None and p.state not in (
                     "offline", "connecting", "unreachable", "refused")]
        if arches is None or not links:
            return []
        shown = f"{job.application} {job.app_version}"
        if "all" not in arches and not any(p.arch in arches for p in links):
            return [f"{shown} exists for {', '.join(sorted(arches))} only, and no connected"
                    " slave is: add it for "
                    + ", ".join(sorted({p.arch for p in links}))
                    + f" (afarmctl app add {job.application} {job.app_version} ARCHIVE"
                    " --arch ARCH) or connect such a slave"]
        key = f"{job.application}/{job.app_version}"
        if all(key in p.quarantined for p in links):
            return [f"every connected slave is quarantined for {shown} (it failed its"
                    " acceptance test; afarmctl app list says why); fix the version and"
                    " add it again, or run afarmctl slave test NAME"]
        return []

    # -- garbage --------------------------------------------------------------------------
    def job_finished(self) -> None:
        """Schedule a garbage collection on the slaves (debounced)."""
        if not self._started or self._gc_due is not None:
            return
        loop = asyncio.get_running_loop()
        self._gc_due = loop.call_later(GC_DEBOUNCE, self._spawn_gc)

    def _spawn_gc(self) -> None:
        self._gc_due = None
        self._tasks.append(asyncio.create_task(self._gc_quietly()))

    async def _gc_quietly(self) -> None:
        await self.collect_slave_garbage()

    async def collect_slave_garbage(self) -> dict[str, int]:
        """Tell every online slave which jobs still need their task dirs; it removes the
        rest and evicts its input cache down to its size limit."""
        keep = self.store.open_job_ids()
        removed: dict[str, int] = {}
        for name, link in list(self.scheduler.places.items()):
            if link.state not in ("online", "busy") or not isinstance(link, SlaveLink):
                continue
            try:
                reply = await link.collect_garbage(keep, self.app_keep_days)
                removed[name] = int(reply.get("removed", 0))
            except Exception as exc:  # a slave that cannot collect now will next time
                log.info("%s: garbage collection failed: %s", name, exc)
        return removed

    def collect_file_garbage(self, retention: float | None = None) -> dict[str, int]:
        """Delete uploads no job references that are older than the retention."""
        keep_for = self.file_retention if retention is None else retention
        removed = freed = 0
        for sha in self.store.unreferenced_files(self.clock() - keep_for):
            path = self.files.path(sha)
            size = path.stat().st_size if path.exists() else 0
            path.unlink(missing_ok=True)
            self.store.forget_file(sha)
            removed += 1
            freed += size
        return {"files_removed": removed, "bytes_freed": freed}

    # -- events ---------------------------------------------------------------------------
    def _broadcast(self, event: dict[str, Any]) -> None:
        bench = event.get("benchmark") if event.get("kind") == "slave-benchmarked" else None
        if isinstance(bench, dict) and isinstance(bench.get("seconds_per_frame"), int | float):
            self.scheduler.properties.benchmarked(str(event.get("slave")),
                                                  bench["seconds_per_frame"])
        if event.get("kind") in ("job-completed", "job-failed", "job-canceled"):
            try:
                self.job_finished()
            except RuntimeError:  # no running loop (a test driving the store alone)
                pass
        for listener in list(self.listeners):
            try:
                listener(event)
            except Exception:
                log.exception("event listener failed")
