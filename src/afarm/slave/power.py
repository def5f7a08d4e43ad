# SPDX-License-Identifier: MIT
"""The slave's side of power saving: suspend through logind, and never while a task runs.

While a task runs the agent holds a logind sleep inhibitor (`Inhibit("sleep", "afarm",
"rendering", "block")`), so neither afarm nor a desktop user's idle timer suspends the
machine mid-frame; and a lock file per running task under `WORK/active/`, held with
flock, which the `suspend` verb of afarm-slave-shell (another process) checks before it
asks logind to `Suspend(false)`. A lock dies with its process, so a crashed agent never
keeps the machine awake for good.

logind is reached over the system D-Bus with dbus-python (DBUS_SYSTEM_BUS_ADDRESS points
tests at a private bus). polkit decides whether the slave user may suspend and inhibit;
the afarm-slave package ships a rule that allows both to the afarm user only.
"""

import fcntl
import logging
import os
import threading
from pathlib import Path
from typing import Any

log = logging.getLogger("afarm.slave.power")
LOGIND = "org.freedesktop.login1"
LOGIND_PATH = "/org/freedesktop/login1"
MANAGER = "org.freedesktop.login1.Manager"
SYSTEM_BUS = "unix:path=/run/dbus/system_bus_socket"
ACTIVE = "active"  # WORK/active/TASK-ATTEMPT while that attempt runs


class PowerError(Exception):
    """logind could not be asked, or refused (polkit); the message says which."""


def _call(method: str, *args: Any) -> Any:
    """One call to logind's Manager on a private connection to the system bus (the shared
    one outlives a bus that restarted; the inhibitor's fd does not need the connection)."""
    try:
        import dbus
        import dbus.bus
    except ImportError as exc:
        raise PowerError("python3-dbus is not installed") from exc
    try:
        # Read the address each time: libdbus caches the system bus's for the process.
        bus = dbus.bus.BusConnection(os.environ.get("DBUS_SYSTEM_BUS_ADDRESS", SYSTEM_BUS))
    except dbus.exceptions.DBusException as exc:
        raise PowerError(f"cannot reach logind on the system bus: "
                         f"{exc.get_dbus_message() or exc}") from None
    try:
        manager = dbus.Interface(bus.get_object(LOGIND, LOGIND_PATH), MANAGER)
        return getattr(manager, method)(*args)
    except dbus.exceptions.DBusException as exc:
        raise PowerError(f"logind refused {method}: {exc.get_dbus_message() or exc}"
                         f" (does polkit allow it for this user? {POLKIT_HINT})") from None
    finally:
        bus.close()


POLKIT_HINT = "the afarm-slave package ships /usr/share/polkit-1/rules.d/afarm-slave.rules"


def suspend_now() -> None:
    """Ask logind to suspend this machine (not interactive: polkit must allow it)."""
    _call("Suspend", False)


def inhibit_sleep(why: str = "rendering") -> int:
    """A logind sleep inhibitor; it holds until the returned file descriptor is closed."""
    return int(_call("Inhibit", "sleep", "afarm", why, "block").take())


class TaskGuard:
    """Marks the tasks an agent runs: a flock'd file each, and one inhibitor for all."""

    def __init__(self, work_dir: Path, *, use_logind: bool = True) -> None:
        self.dir = work_dir / ACTIVE
        self.use_logind = use_logind
        self._lock = threading.Lock()
        self._count = 0
        self._inhibitor: int | None = None
        self._warned = False

    def begin(self, task: int, attempt: int) -> int | None:
        """Call as a task starts; returns the lock's fd for end()."""
        fd: int | None = None
        try:
            self.dir.mkdir(mode=0o700, exist_ok=True)
            fd = os.open(self.dir / f"{task}-{attempt}", os.O_RDWR | os.O_CREAT, 0o600)
            fcntl.flock(fd, fcntl.LOCK_EX)
        except OSError as exc:
            log.warning("cannot mark task %s as running: %s", task, exc)
        with self._lock:
            self._count += 1
            if self._count == 1 and self.use_logind:
                try:
                    self._inhibitor = inhibit_sleep()
                except PowerError as exc:
                    if not self._warned:  # a farm without logind says so once
                        log.info("no sleep inhibitor while tasks run: %s", exc)
                        self._warned = True
        return fd

    def end(self, task: int, attempt: int, fd: int | None) -> None:
        with self._lock:
            self._count -= 1
            if self._count == 0 and self._inhibitor is not None:
                os.close(self._inhibitor)
                self._inhibitor = None
        if fd is not None:
            (self.dir / f"{task}-{attempt}").unlink(missing_ok=True)
            os.close(fd)


def tasks_running(work_dir: Path) -> list[str]:
    """The attempts some live process holds a lock for (stale files are removed)."""
    held = []
    directory = work_dir / ACTIVE
    try:
        names = sorted(os.listdir(directory))
    except FileNotFoundError:
        return []
    for name in names:
        path = directory / name
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            held.append(name)
            continue
        finally:
            os.close(fd)
        path.unlink(missing_ok=True)  # its process died without cleaning up
    return held


def suspend(work_dir: Path) -> str:
    """Suspend unless a task runs; returns why not, or "" once logind was asked."""
    running = tasks_running(work_dir)
    if running:
        return ("a task is running (" + ", ".join(running[:5]) + "); not suspending")
    suspend_now()
    return ""
