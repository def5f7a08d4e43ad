# SPDX-License-Identifier: MIT
"""The power policy as one pure function: which slaves to wake, suspend or mark down now.

It learns from Slurm's power saving: a slave idle for `idle_suspend` minutes is suspended
(SuspendTime), one woken must answer within `resume_timeout` seconds or is marked down
(ResumeTimeout) and woken again later, at most `wake_rate` slaves are woken a minute
(ResumeRate), `keep_awake` keeps a floor of slaves per tag up (SuspendExcNodes nid[..]:N),
and a slave sleeps at least `min_sleep` minutes unless queued work needs it. Which slaves
may sleep at all, and when, is the exclusion list and the weekly windows.

Nothing here reads a clock, the store or the network: `decide()` takes a snapshot and
returns actions; master/slaves/waker.py carries them out, benchmarks/power.py simulates a
week with it.
"""

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, tzinfo
from typing import Literal

from afarm.model.slave import SlaveState, shown

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_WINDOW = re.compile(r"^\s*([a-z*,-]+)\s+(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})\s*$")
ANY_TAG = "*"  # keep_awake = *:2 counts every slave
WAKE_WINDOW = 60.0  # wake_rate counts wakes in this many seconds


@dataclass(frozen=True)
class Window:
    """Days of the week (0 = Monday) and [start, end) minutes after midnight; a window that
    ends before it starts runs past midnight into the next day."""

    days: frozenset[int]
    start: int
    end: int

    def covers(self, weekday: int, minute: int) -> bool:
        if self.start < self.end:
            return weekday in self.days and self.start <= minute < self.end
        if weekday in self.days and minute >= self.start:
            return True
        return (weekday - 1) % 7 in self.days and minute < self.end


def parse_window(text: str) -> Window:
    """``mon-fri 20:00-07:00``, ``sat,sun 00:00-24:00``, ``* 01:00-05:00``."""
    m = _WINDOW.match(text.lower())
    if not m:
        raise ValueError(f"sleep window {text!r} is not DAYS HH:MM-HH:MM, e.g."
                         " mon-fri 20:00-07:00 or sat,sun 00:00-24:00")
    days: set[int] = set()
    for part in m[1].split(","):
        if part in ("*", "daily"):
            days |= set(range(7))
            continue
        first, _, last = part.partition("-")
        if first not in DAYS or (last and last not in DAYS):
            raise ValueError(f"sleep window {text!r}: {part!r} is not a day or a range of"
                             " days (mon, tue, wed, thu, fri, sat, sun; mon-fri)")
        a, b = DAYS.index(first), DAYS.index(last or first)
        days |= {(a + i) % 7 for i in range((b - a) % 7 + 1)}
    minutes = []
    for h, mi in ((m[2], m[3]), (m[4], m[5])):
        hour, minute = int(h), int(mi)
        if minute > 59 or hour > 24 or (hour == 24 and minute):
            raise ValueError(f"sleep window {text!r}: {h}:{mi} is not a time of day")
        minutes.append(hour * 60 + minute)
    if minutes[0] == minutes[1] % 1440 and minutes[1] != 1440:
        raise ValueError(f"sleep window {text!r} is empty; for the whole day write"
                         " 00:00-24:00")
    return Window(frozenset(days), minutes[0], minutes[1])


def parse_keep_awake(entries: Iterable[str]) -> tuple[tuple[str, int], ...]:
    """``["render:2", "*:1"]`` -> ((tag, n), ...): at least n slaves with the tag stay up."""
    out = []
    for text in entries:
        tag, sep, n = text.strip().rpartition(":")
        if not sep or not tag or not n.isdigit():
            raise ValueError(f"keep_awake {text!r} is not TAG:N, e.g. render:2 or *:1")
        out.append((tag, int(n)))
    return tuple(out)


@dataclass(frozen=True)
class PowerSettings:
    """[power] of master.conf. Times in the units their names say."""

    enabled: bool = False
    idle_suspend: float = 30.0  # minutes idle before a slave is suspended
    resume_timeout: float = 60.0  # seconds a woken slave has to answer SSH
    wake_rate: int = 10  # slaves woken per minute at most
    keep_awake: tuple[tuple[str, int], ...] = ()  # (tag or *, n)
    min_sleep: float = 10.0  # minutes asleep before a wake that the queue does not need
    exclude: frozenset[str] = frozenset()  # slave names or tags never suspended
    windows: tuple[Window, ...] = ()  # when slaves may be suspended; () any time
    retry_down: float = 10.0  # minutes before a slave marked down is woken again
    resend: float = 15.0  # seconds between magic packets to a slave still waking


@dataclass(frozen=True)
class PowerSlave:
    """One slave as the policy sees it."""

    name: str
    state: str  # a SlaveState value (or the link's online)
    since: float  # when it entered that state (epoch seconds)
    tags: frozenset[str] = frozenset()
    slots: int = 1
    running: int = 0  # tasks it runs now
    wakeable: bool = False  # it has a MAC address
    rank: int = 0  # its place in the ranking, 0 the best
    woken_at: float | None = None  # the last magic packet sent to it
    windows: tuple[Window, ...] | None = None  # its own sleep windows; None: the site's
    # What it can run, as the scheduler judges it (placement.py, ranking.admitted):
    applications: frozenset[str] | None = None  # None: not known yet (no hello), any
    memory: float | None = None  # bytes; None: not known, which no minimum admits
    gpus: int = 0
    quarantined: frozenset[str] = frozenset()  # "APP/VERSION" that failed its test there
    drained: bool = False  # afarmctl slave drain: takes no work, is never woken for it
    arch: str | None = None  # its Debian architecture (amd64); None: not known


@dataclass(frozen=True)
class Demand:
    """Queued tasks that need slaves with all these tags, and (when set) this application,
    pool version, memory and GPUs: a slave woken for them must be able to take them."""

    tags: frozenset[str]
    tasks: int
    application: str = ""  # "": any
    version: str = ""  # the pool version the job runs; "": the slaves' own program
    min_memory: float = 0.0  # bytes
    gpus: int = 0
    arches: frozenset[str] | None = None  # the pool version exists for these; None: any

    def fits(self, s: "PowerSlave") -> bool:
        """Whether `s` could take these tasks once awake (the scheduler's own tests)."""
        if not self.tags <= s.tags:
            return False
        app = self.application
        if app and s.applications is not None and app not in s.applications:
            return False
        if app and self.version and f"{app}/{self.version}" in s.quarantined:
            return False
        if self.arches is not None and s.arch is not None \
                and s.arch not in self.arches and "all" not in self.arches:
            return False
        if self.min_memory and not (s.memory is not None and s.memory >= self.min_memory):
            return False
        return s.gpus >= self.gpus


ActionKind = Literal["wake", "resend", "suspend", "down"]


@dataclass(frozen=True)
class Action:
    kind: ActionKind
    slave: str
    reason: str


@dataclass
class _Snapshot:
    by_name: dict[str, PowerSlave]
    awake: set[str] = field(default_factory=set)  # counted towards floors and capacity
    actions: list[Action] = field(default_factory=list)


# Awake and able to take work now or soon.
_UP = frozenset({SlaveState.TESTING, SlaveState.IDLE, SlaveState.BUSY, SlaveState.WAKING})
_SLEEPING = frozenset({SlaveState.ASLEEP, SlaveState.DOWN})


def _state(s: PowerSlave) -> str:
    return shown(s.state)


def may_sleep_now(s: PowerSlave, settings: PowerSettings, now: float,
                  tz: tzinfo | None = None) -> bool:
    """Whether the exclusion list and the windows let this slave be suspended now."""
    if s.name in settings.exclude or s.tags & settings.exclude:
        return False
    windows = settings.windows if s.windows is None else s.windows
    if not windows:
        return True
    local = datetime.fromtimestamp(now, tz) if tz else datetime.fromtimestamp(now).astimezone()
    minute = local.hour * 60 + local.minute
    return any(w.covers(local.weekday(), minute) for w in windows)


def decide(slaves: Sequence[PowerSlave], demand: Sequence[Demand], settings: PowerSettings,
           now: float, recent_wakes: Sequence[float] = (),
           tz: tzinfo | None = None) -> list[Action]:
    """What to do now. `recent_wakes` are the times of earlier wakes (wake_rate counts
    those of the last minute); `tz` is the zone the windows are in (default: local)."""
    if not settings.enabled:
        return []
    snap = _Snapshot({s.name: s for s in slaves})
    # A drained slave takes no work, so it neither counts as capacity nor holds a floor.
    snap.awake = {s.name for s in slaves if _state(s) in _UP and not s.drained}
    budget = settings.wake_rate - sum(1 for t in recent_wakes if now - t < WAKE_WINDOW)
    _timeouts(snap, settings, now)
    budget = _wake_for_queue(snap, demand, settings, now, budget)
    _wake_for_floor(snap, settings, now, budget)
    _suspend_idle(snap, demand, settings, now, tz)
    return snap.actions


def _timeouts(snap: _Snapshot, settings: PowerSettings, now: float) -> None:
    """A waking slave past resume_timeout is down (its capacity no longer counts, so the
    work it was woken for wakes another); before that its packet is sent again."""
    for s in snap.by_name.values():
        if _state(s) != SlaveState.WAKING:
            continue
        if now - s.since >= settings.resume_timeout:
            snap.actions.append(Action("down", s.name, f"no SSH within"
                                       f" {settings.resume_timeout:g} s of its wake"))
            snap.awake.discard(s.name)
        elif s.woken_at is None or now - s.woken_at >= settings.resend:
            snap.actions.append(Action("resend", s.name, "still waking"))


def _sleepers(snap: _Snapshot, settings: PowerSettings, now: float,
              fits: Callable[[PowerSlave], bool],
              unreachable: bool = False) -> list[PowerSlave]:
    """Slaves that can be woken for work they `fits`, best ranked first. A slave marked
    down, or (for queued work) one that went unreachable, perhaps switched off by a
    person, is tried again after retry_down minutes."""
    out = []
    backed_off = (SlaveState.DOWN, SlaveState.UNREACHABLE) if unreachable \
        else (SlaveState.DOWN,)
    for s in snap.by_name.values():
        if not s.wakeable or s.drained or s.name in snap.awake or not fits(s):
            continue
        st = _state(s)
        if st == SlaveState.ASLEEP or (st in backed_off
                                       and now - s.since >= settings.retry_down * 60):
            out.append(s)
    return sorted(out, key=lambda s: (s.rank, s.name))


def _wake(snap: _Snapshot, s: PowerSlave, reason: str) -> None:
    snap.actions.append(Action("wake", s.name, reason))
    snap.awake.add(s.name)


def _wake_for_queue(snap: _Snapshot, demand: Sequence[Demand], settings: PowerSettings,
                    now: float, budget: int) -> int:
    free = {}
    for name in snap.awake:
        s = snap.by_name[name]
        free[name] = s.slots if _state(s) == SlaveState.WAKING else max(s.slots - s.running, 0)
    for d in demand:
        need = d.tasks
        for name in sorted(free):  # capacity already up takes the work first
            if need <= 0:
                break
            if free[name] and d.fits(snap.by_name[name]):
                took = min(free[name], need)
                free[name] -= took
                need -= took
        for s in _sleepers(snap, settings, now, d.fits, unreachable=True):
            if need <= 0 or budget <= 0:
                break
            _wake(snap, s, f"{d.tasks} queued tasks exceed the awake slaves' free slots")
            budget -= 1
            need -= s.slots
            free[s.name] = max(-need, 0)  # slots left over for the next group
    return budget


def _floor_of(snap: _Snapshot, tag: str) -> list[str]:
    return [n for n in snap.awake if tag == ANY_TAG or tag in snap.by_name[n].tags]


def _wake_for_floor(snap: _Snapshot, settings: PowerSettings, now: float,
                    budget: int) -> None:
    for tag, n in settings.keep_awake:
        short = n - len(_floor_of(snap, tag))
        tags = frozenset() if tag == ANY_TAG else frozenset({tag})
        for s in _sleepers(snap, settings, now, Demand(tags, 0).fits):
            if short <= 0 or budget <= 0:
                break
            if _state(s) == SlaveState.ASLEEP and now - s.since < settings.min_sleep * 60:
                continue  # it went to sleep recently; the floor is not worth a flap
            _wake(snap, s, f"keep_awake {tag}:{n}")
            budget -= 1
            short -= 1


def _suspend_idle(snap: _Snapshot, demand: Sequence[Demand], settings: PowerSettings,
                  now: float, tz: tzinfo | None) -> None:
    woken = {a.slave for a in snap.actions if a.kind == "wake"}
    candidates = []
    for s in snap.by_name.values():
        st = _state(s)
        if s.running or s.name in woken or not s.wakeable:
            continue  # never a slave with a task, nor one the master could not wake
        if st == SlaveState.IDLE:
            if now - s.since < settings.idle_suspend * 60:
                continue
        elif st != SlaveState.DRAINING:
            continue
        if not s.drained and any(d.tasks > 0 and d.fits(s) for d in demand):
            continue  # queued work it could take: the scheduler is about to
        if not may_sleep_now(s, settings, now, tz):
            continue
        candidates.append(s)
    # The worst ranked sleep first, so the floor keeps the best awake.
    for s in sorted(candidates, key=lambda s: (-s.rank, s.name)):
        held = [f"{tag}:{n}" for tag, n in settings.keep_awake
                if s.name in snap.awake and (tag == ANY_TAG or tag in s.tags)
                and len(_floor_of(snap, tag)) - 1 < n]
        if held:
            continue
        snap.awake.discard(s.name)
        idle_min = (now - s.since) / 60
        snap.actions.append(Action("suspend", s.name, "drained" if _state(s) ==
                                   SlaveState.DRAINING else f"idle {idle_min:.0f} min"))


def settings_of(section: dict[str, object]) -> PowerSettings:
    """[power] of master.conf as PowerSettings; ValueError names the bad key."""
    if not section:
        return PowerSettings()

    def num(key: str) -> float:
        return float(section[key])  # type: ignore[arg-type]

    def texts(key: str) -> list[str]:
        return [str(t) for t in section.get(key) or []]  # type: ignore[attr-defined]

    try:
        keep = parse_keep_awake(texts("keep_awake"))
    except ValueError as exc:
        raise ValueError(f"[power] {exc}") from None
    try:
        windows = tuple(parse_window(w) for w in texts("sleep_windows"))
    except ValueError as exc:
        raise ValueError(f"[power] sleep_windows: {exc}") from None
    return PowerSettings(enabled=bool(section["enabled"]), idle_suspend=num("idle_suspend"),
                         resume_timeout=num("resume_timeout"),
                         wake_rate=int(num("wake_rate")), keep_awake=keep,
                         min_sleep=num("min_sleep"), exclude=frozenset(texts("exclude")),
                         windows=windows, retry_down=num("retry_down"),
                         resend=max(5.0, num("resume_timeout") / 4))


def power_problems(name: str, conf: dict[str, object]) -> list[str]:
    """What is wrong with a slave definition's power keys (mac, sleep_windows)."""
    from afarm.master.slaves.wol import check_mac

    out = []
    mac = str(conf.get("mac") or "")
    if mac:
        try:
            check_mac(mac)
        except ValueError as exc:
            out.append(f"[slaves] [[{name}]] mac: {exc}")
    for w in conf.get("sleep_windows") or []:  # type: ignore[attr-defined]
        try:
            parse_window(str(w))
        except ValueError as exc:
            out.append(f"[slaves] [[{name}]] sleep_windows: {exc}")
    return out
