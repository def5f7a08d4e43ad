# SPDX-License-Identifier: MIT
"""afarm-slave-shell: the only program the master's key may run on a slave.

sshd runs it as the forced command of the master's key::

    restrict,command="/usr/bin/afarm-slave-shell [--config FILE]" ssh-ed25519 AAAA... master

and puts what the master asked for in SSH_ORIGINAL_COMMAND. That text is split with shlex
(never given to a shell) and must be one of these verbs:

``serve``      the JSON-lines agent on this connection's stdin/stdout (afarm.slave.agent)
``version``    print the afarm version
``suspend``    suspend the machine through logind, unless a task runs (afarm.slave.power)
``rsync --server ...``  exactly the server side of the master's put and get (see
               afarm.transport.rsync), run by Debian's rrsync, which checks the paths once
               more and pins them against races. A put (the master sends) may only write
               into the cache dir: rrsync is rooted there, so even a file list the client
               built by hand (nested names, ``.local/...``) lands nowhere else. A get (the
               slave sends) may only read one file below the work dir.

The slave user's home is root-owned and is not the work dir (see debian/afarm-slave.postinst),
so nothing written through this shell can reach ``.ssh``, ``.local`` or any other file that
sshd or Python reads on the next login. Everything this shell and the agent create is
private to the slave user (umask 077).

Anything else (an interactive login, another program, another rsync option or a path
outside the work dir) is refused: exit 1, one line on stderr, and a log record.
"""

from __future__ import annotations

import argparse
import logging
import logging.handlers
import os
import posixpath
import pwd
import re
import shlex
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from afarm import __version__
from afarm.errors import ConfigError
from afarm.slave.config import DEFAULT_CONFIG, load_slave_config

log = logging.getLogger("afarm.slave.shell")

RRSYNC = "/usr/bin/rrsync"
PARTIAL_DIR = ".rsync-partial"  # afarm.transport.rsync.PARTIAL_DIR
# The only directory a put may write to (afarm.transport.rsync.INCOMING): the agent takes
# files from it by the sha256 the master names and checks.
INCOMING = "cache"
# Job files, cached inputs and outputs are the slave user's alone.
UMASK = 0o077
EX_CONFIG = 78

# No verb needs any of these; rejecting them up front means no later step can be fooled
# into passing one on (rrsync splits the command again with its own rules).
_METACHARS = re.compile(r"[;|&$`()<>\x00-\x1f\x7f]")
# Every word of an accepted rsync command: plain option and path characters. This also
# keeps out globs and braces, which rrsync would expand.
_RSYNC_WORD = re.compile(r"^[A-Za-z0-9._=/+,-]+$")
# The option cluster the master's `rsync --times` sends: "t", then "e" and the protocol
# capability letters (e.g. -te.LsfxCIvu), which differ between rsync versions.
_CLUSTER = re.compile(r"^-t(?:e\d*\.[A-Za-z]*)?$")
_TIMEOUT = re.compile(r"^--timeout=\d{1,5}$")
_PATH = re.compile(r"^[A-Za-z0-9._/][A-Za-z0-9._+/-]*$")


class Refused(Exception):
    """The command is not one this shell runs; the message says why."""


@dataclass(frozen=True)
class Settings:
    name: str
    work_dir: Path
    applications_dir: Path
    sandbox: dict[str, Any] = field(default_factory=dict)
    cache_max_mib: int = 0
    max_unpacked_mib: int = 16384


@dataclass(frozen=True)
class RsyncRequest:
    """A validated server side of the master's rsync: where it writes or reads."""

    sender: bool  # True: this slave sends (the master's get)
    words: list[str]  # the command as rrsync will see it, path made relative

    @property
    def path(self) -> str:
        return self.words[-1]


# ------------------------------------------------------------------------------ verbs


def parse_rsync(words: list[str], work_dir: Path) -> RsyncRequest:
    """Accept only the server side of afarm's own put and get; refuse anything else."""
    for w in words:
        if not _RSYNC_WORD.match(w):
            raise Refused(f"rsync: {w!r} has characters afarm's transfers never send")
    if words[1:2] != ["--server"]:
        raise Refused("rsync: only the server side of a transfer ('rsync --server ...') "
                      "is accepted")
    i = 2
    sender = words[i:i + 1] == ["--sender"]
    if sender:
        i += 1
    allowed = {"cluster", "timeout", "stats"} | (set() if sender else {"partial", "mkpath"})
    seen: set[str] = set()
    while i < len(words) and words[i] != ".":
        w = words[i]
        if _CLUSTER.match(w):
            kind = "cluster"
        elif _TIMEOUT.match(w):
            kind = "timeout"
        elif w == "--stats":
            kind = "stats"
        elif w == "--mkpath":
            kind = "mkpath"
        elif w == f"--partial-dir={PARTIAL_DIR}":
            kind = "partial"
        elif w == "--partial-dir" and words[i + 1:i + 2] == [PARTIAL_DIR]:
            kind = "partial"
            i += 1
        else:
            raise Refused(f"rsync: option {w!r} is not one afarm's "
                          f"{'get' if sender else 'put'} sends")
        if kind not in allowed or kind in seen:
            raise Refused(f"rsync: option {w!r} is not one afarm's "
                          f"{'get' if sender else 'put'} sends (or it came twice)")
        seen.add(kind)
        i += 1
    if "cluster" not in seen:
        raise Refused("rsync: the option cluster (-t...) is missing")
    paths = words[i + 1:]
    if i >= len(words) or len(paths) != 1:
        raise Refused("rsync: expected '.' and exactly one path after the options")
    path = _confine(paths[0], work_dir)
    if not sender and not path.endswith("/"):
        raise Refused("rsync: a put names its destination directory, ending in '/'")
    if not sender and path.rstrip("/") != INCOMING:
        raise Refused(f"rsync: a put may only write to the cache dir ({INCOMING}/), "
                      f"not {paths[0]!r}")
    if sender and path.endswith("/"):
        raise Refused("rsync: a get names one file, not a directory")
    # A put runs with rrsync rooted at the cache dir itself: its destination is "./".
    return RsyncRequest(sender, [*words[:i + 1], path if sender else "./"])


def _confine(path: str, work_dir: Path) -> str:
    """``path`` relative to the work dir, or Refused: no '..', nothing outside, no hidden
    names."""
    if not _PATH.match(path):
        raise Refused(f"rsync: path {path!r} is not a plain path")
    if ".." in path.split("/"):
        raise Refused(f"rsync: path {path!r} contains '..'")
    rel = path
    if path.startswith("/"):
        root = str(work_dir)
        norm = posixpath.normpath(path)
        if norm != root and not norm.startswith(root.rstrip("/") + "/"):
            raise Refused(f"rsync: path {path!r} is outside the work dir {root}")
        rel = posixpath.relpath(norm, root)
        rel = "./" if rel == "." else rel + "/" if path.endswith("/") else rel
    # If the work dir is also the user's home, .ssh/authorized_keys (and with it this very
    # forced command) would be in reach; afarm never transfers hidden names.
    if any(p.startswith(".") and p != "." for p in rel.split("/")):
        raise Refused(f"rsync: path {path!r} names a hidden file or dir")
    return rel


def check_work_dir(work_dir: Path) -> None:
    """Refused if the work dir is the slave user's home or holds it: then a file written
    there (.ssh/..., .local/lib/python3.X/site-packages/x.pth) could change the next
    login. The package keeps the home root-owned and works in a subdirectory."""
    try:
        home = Path(pwd.getpwuid(os.getuid()).pw_dir).resolve()
    except KeyError:
        return
    if home == work_dir or work_dir in home.parents:
        raise Refused(f"the work dir {work_dir} is or contains this user's home {home}, so "
                      "a transfer could rewrite the login; set [slave] work_dir to a "
                      f"subdirectory the user owns, e.g. {home}/work (the package default)")


def _run_rsync(words: list[str], settings: Settings, env: Mapping[str, str]) -> int:
    req = parse_rsync(words, settings.work_dir)
    check_work_dir(settings.work_dir)
    if not os.path.isfile(RRSYNC):
        raise Refused(f"{RRSYNC} is missing; install rsync >= 3.2.4 (it ships rrsync)")
    if not settings.work_dir.is_dir():
        raise Refused(f"the work dir {settings.work_dir} does not exist; create it for this "
                      "user or fix [slave] work_dir")
    # -ro/-wo: a get may only read, a put only write. -no-del: we never delete remotely.
    # -no-lock: rrsync's single-run lock would make parallel transfers of one master fail.
    # -munge: a symlink in a hand-made file list can never point anywhere.
    if req.sender:
        argv = ["rrsync", "-ro", "-no-del", str(settings.work_dir)]
    else:
        incoming = settings.work_dir / INCOMING
        try:
            incoming.mkdir(mode=0o700, exist_ok=True)
        except OSError as exc:
            raise Refused(f"cannot create the cache dir {incoming}: {exc.strerror}") from None
        if incoming.is_symlink() or not incoming.is_dir():
            raise Refused(f"the cache dir {incoming} is not a directory")
        argv = ["rrsync", "-wo", "-no-lock", "-no-del", "-munge", str(incoming)]
    # rrsync reads the command from the environment; give it the words we checked (with an
    # absolute path made relative), never the original text.
    child_env = {k: v for k, v in env.items() if k != "SSH_ORIGINAL_COMMAND"}
    child_env["SSH_ORIGINAL_COMMAND"] = " ".join(req.words)
    log.debug("rsync %s %s", "get" if req.sender else "put", req.path)
    _flush_logs()
    os.execve(RRSYNC, argv, child_env)
    return 1  # only reached when execve is replaced in tests


def _serve(words: list[str], settings: Settings, env: Mapping[str, str]) -> int:
    if len(words) != 1:
        raise Refused("serve takes no arguments")
    check_work_dir(settings.work_dir)
    from afarm.slave import agent  # the agent's imports cost ~0.1 s; only serve pays

    log.debug("serve as %s in %s", settings.name, settings.work_dir)
    try:
        from afarm.runner.sandbox import SandboxSettings

        return agent.serve(settings.name, settings.work_dir, settings.applications_dir,
                           settings.cache_max_mib << 20,
                           SandboxSettings.from_config(settings.sandbox)
                           if settings.sandbox else None,
                           max_unpacked_bytes=settings.max_unpacked_mib << 20)
    except ConfigError as exc:
        print(f"afarm-slave-shell: {exc}".replace("\n", " "), file=sys.stderr)
        return EX_CONFIG
    except OSError as exc:
        print(f"afarm-slave-shell: cannot serve in {settings.work_dir}: "
              f"{exc.strerror or exc} ({exc.filename or 'work dir'})", file=sys.stderr)
        return 1


def _version(words: list[str], settings: Settings, env: Mapping[str, str]) -> int:
    if len(words) != 1:
        raise Refused("version takes no arguments")
    print(__version__)
    return 0


def _suspend(words: list[str], settings: Settings, env: Mapping[str, str]) -> int:
    if len(words) != 1:
        raise Refused("suspend takes no arguments")
    from afarm.slave import power

    try:
        why_not = power.suspend(settings.work_dir)
    except power.PowerError as exc:
        print(f"afarm-slave-shell: {exc}", file=sys.stderr)
        return 1
    if why_not:
        print(f"afarm-slave-shell: {why_not}", file=sys.stderr)
        return 1
    log.info("suspending at the master's request")
    return 0


Verb = Callable[[list[str], Settings, Mapping[str, str]], int]
VERBS: dict[str, Verb] = {"serve": _serve, "version": _version, "rsync": _run_rsync,
                          # logind Suspend, refused while a task runs (slave/power.py)
                          "suspend": _suspend}
_ALLOWED = "serve, version, suspend, rsync --server (afarm's own transfers)"


def dispatch(command: str | None, settings: Settings, env: Mapping[str, str]) -> int:
    """Run one verb of SSH_ORIGINAL_COMMAND; a refusal is logged and exits 1."""
    try:
        if command is None or not command.strip():
            raise Refused(f"interactive logins are not allowed; this key runs only {_ALLOWED}")
        bad = _METACHARS.search(command)
        if bad:
            raise Refused(f"shell metacharacter {bad.group()!r} in the command")
        try:
            words = shlex.split(command)
        except ValueError as exc:
            raise Refused(f"cannot parse the command ({exc})") from exc
        verb = VERBS.get(words[0])
        if verb is None:
            raise Refused(f"{words[0]!r} is not a verb of afarm-slave-shell; it runs only "
                          f"{_ALLOWED}")
        return verb(words, settings, env)
    except Refused as exc:
        client = (env.get("SSH_CONNECTION") or "local").split(" ")[0]
        log.warning("refused %r from %s: %s", command, client, exc)
        return 1


# ------------------------------------------------------------------------------ main


def _setup_logging(level: str, name: str) -> None:
    logger = logging.getLogger("afarm")
    # A second main() in one process (tests) replaces the handlers of the first.
    for h in [h for h in logger.handlers if getattr(h, "afarm_shell", False)]:
        logger.removeHandler(h)
        h.close()
    handlers: list[logging.Handler] = []
    # stderr reaches the master: it is the refusal's one line, and the agent's log.
    err = logging.StreamHandler(sys.stderr)
    err.setFormatter(logging.Formatter(f"afarm-slave-shell[{name}]: %(message)s"))
    handlers.append(err)
    # The slave's own record of who tried what (journald reads /dev/log too).
    if os.path.exists("/dev/log"):
        try:
            sl = logging.handlers.SysLogHandler(
                address="/dev/log", facility=logging.handlers.SysLogHandler.LOG_AUTH)
        except OSError:
            pass
        else:
            sl.setFormatter(logging.Formatter(
                "afarm-slave-shell[%(process)d]: %(levelname)s %(message)s"))
            handlers.append(sl)
    for h in handlers:
        h.afarm_shell = True  # type: ignore[attr-defined]
        logger.addHandler(h)
    logger.setLevel(getattr(logging, level.upper(), logging.INFO))


def _flush_logs() -> None:
    for h in logging.getLogger("afarm").handlers:
        h.flush()


def load_settings(path: Path | None) -> tuple[Settings, str]:
    """The [slave] section (defaults when the default file does not exist) and log level."""
    conf = load_slave_config(path)
    settings = Settings(name=conf["name"],
                        work_dir=Path(conf["work_dir"]).resolve(),
                        applications_dir=Path(conf["applications_dir"]),
                        sandbox=conf["sandbox"], cache_max_mib=int(conf["cache_max_mib"]),
                        max_unpacked_mib=int(conf["max_unpacked_mib"]))
    return settings, str(conf["log_level"])


def as_login_shell(argv: list[str], environ: Mapping[str, str]
                   ) -> tuple[list[str], Mapping[str, str]]:
    """Arguments and environment when sshd runs us as the slave user's login shell.

    sshd runs every command, the forced one included, as `SHELL -c COMMAND`. With this
    program as the slave user's shell, even a key without `command=` lands here. The -c
    text never chooses the configuration: a client could otherwise name its own.
    """
    command = argv[1] if len(argv) > 1 else ""
    try:
        first = shlex.split(command)[:1]
    except ValueError:
        first = []
    if first and posixpath.basename(first[0]) == "afarm-slave-shell":
        return [], environ  # our own forced command: the request is SSH_ORIGINAL_COMMAND
    return [], {**environ, "SSH_ORIGINAL_COMMAND": command}


def main(argv: list[str] | None = None, env: Mapping[str, str] | None = None) -> int:
    # Before anything is created: files of jobs are nobody else's business (rrsync and the
    # agent inherit it). Restored on return for callers in the same process (tests); a
    # real rsync never returns here (execve).
    old_umask = os.umask(UMASK)
    try:
        return _main(argv, env)
    finally:
        os.umask(old_umask)


def _main(argv: list[str] | None, env: Mapping[str, str] | None) -> int:
    environ: Mapping[str, str] = os.environ if env is None else env
    argv = sys.argv[1:] if argv is None else argv
    if "-c" in argv:
        # What precedes -c comes from the installed program (or a wrapper around it), what
        # follows from sshd: only the first may carry options.
        cut = argv.index("-c")
        rest, environ = as_login_shell(argv[cut:], environ)
        argv = argv[:cut] + rest
    p = argparse.ArgumentParser(
        prog="afarm-slave-shell",
        description="Forced command of the master's key on a slave: runs only the verbs "
                    "serve, version and rsync --server, read from SSH_ORIGINAL_COMMAND.")
    p.add_argument("--config", type=Path, default=None,
                   help=f"slave configuration (default: {DEFAULT_CONFIG})")
    try:
        args = p.parse_args(argv)
    except SystemExit as exc:
        return int(exc.code or 0)
    try:
        settings, level = load_settings(args.config)
    except ConfigError as exc:
        print(f"afarm-slave-shell: {exc}".replace("\n", " "), file=sys.stderr)
        return EX_CONFIG
    _setup_logging(level, settings.name)
    # Refusals are logged whatever the configured level.
    log.setLevel(min(logging.WARNING, getattr(logging, level.upper(), logging.INFO)))
    return dispatch(environ.get("SSH_ORIGINAL_COMMAND"), settings, environ)


if __name__ == "__main__":
    sys.exit(main())
