# SPDX-License-Identifier: MIT
"""``afarm-slave``: the slave's small daemon (``run``) and its enrolment (``enroll``).

The work itself arrives over SSH (afarm-slave-shell); this daemon only keeps the machine
tidy and tells systemd how it is: READY=1 once the configuration is read, WATCHDOG=1 at
half the unit's WatchdogSec, and it removes task scratch dirs nobody touched for
``--max-age`` hours (left behind when a master vanished mid-task). It logs to stderr,
which systemd sends to the journal. A bad configuration exits 78 (EX_CONFIG), so the
unit's RestartPreventExitStatus=78 stops a restart loop.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import signal
import sys
import threading
import time
from pathlib import Path
from types import FrameType
from typing import Any

from afarm import __version__
from afarm.errors import AfarmError, ConfigError, UsageError
from afarm.notify import notify
from afarm.slave.config import DEFAULT_CONFIG, load_slave_config

log = logging.getLogger("afarm.slave")
DEFAULT_HOST_KEY = Path("/etc/ssh/ssh_host_ed25519_key.pub")
EX_OK, EX_FAILED, EX_USAGE, EX_CONFIG = 0, 1, 2, 78
ANNOUNCE_CHECK = 60.0  # seconds between checks that Avahi still has the announcement


def watchdog_interval(environ: dict[str, str] | None = None) -> float | None:
    """Seconds between WATCHDOG=1 pings (half the timeout), or None when not watched."""
    env = os.environ if environ is None else environ
    usec = env.get("WATCHDOG_USEC", "")
    pid = env.get("WATCHDOG_PID", "")
    if not usec.isdigit() or int(usec) == 0 or (pid and pid != str(os.getpid())):
        return None
    return int(usec) / 2e6


def _newest_mtime(path: Path) -> float:
    """The latest change anywhere in a tree (a running render keeps writing into it)."""
    newest = path.lstat().st_mtime
    for root, dirs, files in os.walk(path, onerror=lambda e: None):
        for name in dirs + files:
            try:
                newest = max(newest, os.lstat(os.path.join(root, name)).st_mtime)
            except OSError:
                pass
    return newest


def clean_stale(work_dir: Path, max_age: float, now: float | None = None) -> list[Path]:
    """Remove ``jobs/JOB/TASK-ATTEMPT`` scratch dirs unchanged for ``max_age`` seconds, and
    job dirs left empty; returns what was removed."""
    now = time.time() if now is None else now
    jobs = work_dir / "jobs"
    removed: list[Path] = []
    if not jobs.is_dir() or jobs.is_symlink():
        return removed
    for job in sorted(jobs.iterdir()):
        if not job.is_dir() or job.is_symlink():
            continue
        emptied = False
        for task in sorted(job.iterdir()):
            try:
                stale = now - _newest_mtime(task) > max_age
            except OSError:
                continue
            if stale:
                if task.is_dir() and not task.is_symlink():
                    shutil.rmtree(task, ignore_errors=True)
                else:
                    task.unlink(missing_ok=True)
                removed.append(task)
                emptied = True
        try:
            # Removing a task dir just touched the job dir, so its own age says nothing then.
            if not any(job.iterdir()) and (emptied or now - job.lstat().st_mtime > max_age):
                job.rmdir()
                removed.append(job)
        except OSError:
            pass
    return removed


def run(conf: dict[str, Any], *, max_age_hours: float, interval: float,
        stop: threading.Event | None = None, announce: Any = None) -> int:
    """The daemon's loop until SIGTERM/SIGINT (or ``stop``, for tests). ``announce``: an
    afarm.slave.announce.Options to announce the slave over Avahi (None: do not)."""
    stopped = stop or threading.Event()
    if threading.current_thread() is threading.main_thread():
        def on_signal(signum: int, frame: FrameType | None) -> None:
            stopped.set()

        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)
    work_dir = Path(conf["work_dir"])
    if not work_dir.is_dir():
        log.warning("the work dir %s does not exist yet; the master's first task creates"
                    " it", work_dir)
    ping = watchdog_interval()
    notify(f"READY=1\nSTATUS=slave {conf['name']}, work dir {work_dir}")
    log.info("afarm-slave %s ready: slave %s, work dir %s, scratch kept %g h", __version__,
             conf["name"], work_dir, max_age_hours)
    next_clean = time.monotonic()
    announcer = None
    if announce is not None:
        from afarm.slave.announce import Announcer

        announcer = Announcer(conf, announce)
        announcer.start()
    next_announce = time.monotonic() + ANNOUNCE_CHECK
    while not stopped.is_set():
        if announcer is not None and time.monotonic() >= next_announce:
            announcer.tick()
            next_announce = time.monotonic() + ANNOUNCE_CHECK
        if time.monotonic() >= next_clean:
            try:
                for path in clean_stale(work_dir, max_age_hours * 3600):
                    log.info("removed stale scratch dir %s", path)
            except OSError as exc:
                log.warning("cleaning %s failed: %s", work_dir, exc)
            next_clean = time.monotonic() + interval
        if ping is not None:
            notify("WATCHDOG=1")
        wait = min(next_clean, next_announce) - time.monotonic()
        stopped.wait(max(0.0, min(wait, ping) if ping is not None else wait))
    if announcer is not None:
        announcer.stop()
    notify("STOPPING=1")
    log.info("stopping")
    return EX_OK


def _enroll(a: argparse.Namespace, conf: dict[str, Any]) -> int:
    from afarm.slave import enroll

    if os.geteuid() != 0 and a.authorized_keys is None:
        raise UsageError("enroll writes the afarm user's authorized_keys: run it as root")
    done = enroll.enroll(
        a.master, a.token, name=a.name or conf["name"], address=a.address,
        ssh_port=a.ssh_port, host_key=a.host_key, work_dir=str(conf["work_dir"]),
        user=a.user, authorized_keys=a.authorized_keys, timeout=a.timeout)
    print(f"enrolled as slave {done.name!r} with the master at {a.master}")
    print(f"  host key the master now trusts: {done.host_key_fingerprint}")
    print(f"  master's key installed in {done.authorized_keys} (forced command"
          f" {enroll.SHELL_COMMAND})")
    if done.definition:
        print(f"  the master wrote {done.definition}")
    else:
        print("  the master could not save the definition; it knows the slave until it"
              " restarts (see the master's log)")
    return EX_OK


def _announce(a: argparse.Namespace) -> Any:
    """The announce options of ``run`` (None with --no-announce)."""
    if a.command not in (None, "run", "claim") or getattr(a, "no_announce", False):
        return None
    from afarm.slave.announce import Options

    port = getattr(a, "ssh_port", 22)
    if not 0 < port < 65536:
        raise UsageError("--ssh-port takes a TCP port (1 to 65535)")
    return Options(host_key=getattr(a, "host_key", DEFAULT_HOST_KEY), ssh_port=port,
                   user=getattr(a, "user", "afarm"),
                   authorized_keys=getattr(a, "authorized_keys", None),
                   shell_command=getattr(a, "shell_command", "/usr/bin/afarm-slave-shell"))


def _claim(a: argparse.Namespace, conf: dict[str, Any]) -> int:
    from afarm.slave.announce import serve_claims

    if os.geteuid() != 0 and a.authorized_keys is None:
        raise UsageError("claim writes the afarm user's authorized_keys: run it as root")
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    return serve_claims(conf, _announce(a), stop)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="afarm-slave",
                                description="The afarm slave daemon and its enrolment"
                                            " (see afarm-slave(8)).")
    p.add_argument("--config", type=Path, default=None,
                   help=f"slave configuration (default: {DEFAULT_CONFIG})")
    p.add_argument("--version", action="version", version=__version__)
    sub = p.add_subparsers(dest="command")
    r = sub.add_parser("run", help="run the daemon (the default)")
    r.add_argument("--max-age", type=float, default=24.0, metavar="HOURS",
                   help="remove task scratch dirs unchanged this long (default 24)")
    r.add_argument("--clean-interval", type=float, default=3600.0, metavar="SECONDS",
                   help="how often to look for stale scratch dirs (default 3600)")
    r.add_argument("--no-announce", action="store_true",
                   help="do not announce this slave over Avahi (_afarm._tcp)")
    c = sub.add_parser("claim", help="take the claim of the first master that accepts this"
                                     " slave, on [slave] claim_port, and enrol (as root)")
    for q in (r, c):
        q.add_argument("--host-key", type=Path, default=DEFAULT_HOST_KEY,
                       help="public SSH host key whose fingerprint is announced and"
                            " registered (default: %(default)s)")
        q.add_argument("--ssh-port", type=int, default=22, help="this slave's sshd port")
        q.add_argument("--user", default="afarm", help="the slave user (default: afarm)")
        q.add_argument("--authorized-keys", type=Path, default=None,
                       help="where the master's key goes (default: the slave user's"
                            " ~/.ssh/authorized_keys); a slave with a master's key there"
                            " takes no claims")
        q.add_argument("--shell-command", default="/usr/bin/afarm-slave-shell",
                       help="the forced command of the master's key (default: %(default)s)")
    e = sub.add_parser("enroll", help="introduce this slave to a master (as root)")
    e.add_argument("--master", required=True, metavar="HOST[:PORT]",
                   help="the master's job port (default port 7731)")
    e.add_argument("--token", required=True,
                   help="one-time token from 'afarmctl slave token' on the master")
    e.add_argument("--name", help="slave name (default: [slave] name, else the host name)")
    e.add_argument("--address", metavar="ADDR",
                   help="address the master reaches this slave at (default: the one this"
                        " machine uses to reach the master)")
    e.add_argument("--ssh-port", type=int, default=22, help="this slave's sshd port")
    e.add_argument("--host-key", type=Path, default=Path("/etc/ssh/ssh_host_ed25519_key.pub"),
                   help="public SSH host key to register (default: %(default)s)")
    e.add_argument("--user", default="afarm", help="the slave user (default: afarm)")
    e.add_argument("--authorized-keys", type=Path, default=None,
                   help="file to install the master's key in (default: the slave user's"
                        " ~/.ssh/authorized_keys)")
    e.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for the"
                   " master")
    return p


def main(argv: list[str] | None = None) -> int:
    a = build_parser().parse_args(argv)
    interactive = a.command == "enroll"
    fmt = "%(message)s" if interactive or os.environ.get("JOURNAL_STREAM") \
        else "%(asctime)s %(name)s %(levelname)s %(message)s"
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format=fmt)
    try:
        conf = load_slave_config(a.config)
        logging.getLogger().setLevel(str(conf["log_level"]).upper())
        if interactive:
            return _enroll(a, conf)
        if a.command == "claim":
            return _claim(a, conf)
        max_age = getattr(a, "max_age", 24.0)
        interval = getattr(a, "clean_interval", 3600.0)
        if max_age <= 0 or interval <= 0:
            raise UsageError("--max-age and --clean-interval must be positive")
        return run(conf, max_age_hours=max_age, interval=interval, announce=_announce(a))
    except ConfigError as exc:
        log.error("%s", exc)
        return EX_CONFIG
    except UsageError as exc:
        log.error("afarm-slave: error: %s", exc)
        return EX_USAGE
    except AfarmError as exc:
        log.error("afarm-slave: %s", exc)
        return EX_FAILED
    except KeyboardInterrupt:
        return EX_OK


if __name__ == "__main__":
    sys.exit(main())
