# SPDX-License-Identifier: MIT
"""The argv of every rsync (and of the OpenSSH it runs) the master starts, and what its
exit status means.

Bulk files go over rsync on OpenSSH, with the same key and known_hosts as the paramiko
connection, through a ControlMaster socket so repeated transfers skip the handshake. On the
slave the forced command (`afarm-slave-shell`) accepts only the server-side shapes these
argvs produce; change both together (see `afarm.slave.shell`).
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from afarm.transport.base import AuthFailure, HostUnreachable, TransportError

log = logging.getLogger(__name__)

Direction = Literal["put", "get"]

# Partial uploads wait here (a 0700 dir rsync creates) instead of at the final path, and a
# retried transfer resumes from them. The slave's shell accepts exactly this value.
PARTIAL_DIR = ".rsync-partial"
# The one slave dir a put may write to (relative to its work dir): the slave's shell roots
# rrsync there, so no file list reaches anything else (afarm.slave.shell.INCOMING).
INCOMING = "cache"
# rsync splits its -e value itself (no shell) on white space and also treats quotes and
# backslashes specially, so none of these may appear in any word of the ssh command.
_RSH_UNSAFE = re.compile(r"""[\s'"\\]""")
_HOST = re.compile(r"^(?:[A-Za-z0-9][A-Za-z0-9.-]*|[0-9A-Fa-f:.]*:[0-9A-Fa-f:.]*)$")
_USER = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")
# sun_path holds 107 bytes and a NUL; ssh creates the socket as NAME.<16 random chars>
# and renames it, so the dir gets what a 16-digit NAME and that suffix leave.
_MAX_CONTROL_DIR = 107 - 1 - 16 - 17


@dataclass(frozen=True)
class SSHTarget:
    """One slave as OpenSSH reaches it: the same identity the paramiko connection uses."""

    user: str
    host: str
    port: int
    key: Path
    known_hosts: Path
    control_dir: Path
    connect_timeout: int = 10


def host_key_help(host: str, port: int, known_hosts: Path) -> str:
    """How an admin accepts a slave's new or first host key, as commands to paste."""
    name = host if port == 22 else f"[{host}]:{port}"
    return (f"If the slave was (re)installed or its key changed on purpose, compare the key "
            f"with the one on the slave (run there: ssh-keygen -lf "
            f"/etc/ssh/ssh_host_ed25519_key.pub), then replace the entry: "
            f"ssh-keygen -R '{name}' -f {known_hosts}; "
            f"ssh-keyscan -p {port} -t ed25519 {host} >> {known_hosts} "
            f"(as the user afarm-master runs as); the master retries on its own. "
            f"If nothing changed on the slave, someone may be impersonating it: do not "
            f"accept the key.")


def _control_dir(path: Path) -> Path:
    """The ControlMaster socket dir: ours alone, 0700, so no other user can ride our
    authenticated connection to the slave."""
    path = path.absolute()
    if len(str(path)) > _MAX_CONTROL_DIR:
        raise TransportError(f"ssh control dir {path} is too long for a unix socket path "
                             f"(at most {_MAX_CONTROL_DIR} characters); choose a shorter "
                             "state dir")
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    st = path.lstat()
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.geteuid():
        raise TransportError(f"ssh control dir {path} must be a directory owned by uid "
                             f"{os.geteuid()}; remove it and the master recreates it")
    if stat.S_IMODE(st.st_mode) != 0o700:
        path.chmod(0o700)
    return path


def control_path(target: SSHTarget) -> Path:
    """The ControlMaster socket of ``target``: like ssh's %C a hash of user, host and port,
    but 16 digits instead of 40, which leaves the state dir room under sun_path's limit."""
    name = hashlib.sha256(f"{target.user}@{target.host}:{target.port}".encode()).hexdigest()
    return _control_dir(target.control_dir) / name[:16]


def ssh_command(target: SSHTarget) -> list[str]:
    """The `ssh` argv (without destination) rsync runs and close() reuses with -O exit."""
    # ssh would read a host or user starting with "-" as an option (-oProxyCommand=...).
    if not _HOST.match(target.host) or not _USER.match(target.user):
        raise TransportError(f"{target.user!r}@{target.host!r} is not a plain user and host "
                             "name or address; fix the slave's definition")
    options: list[tuple[list[str], str]] = [
        (["-F", "/dev/null"], "ignore ~/.ssh/config and /etc/ssh/ssh_config: only the "
                              "options below apply, as with paramiko, which reads neither"),
        (["-i", str(target.key)], "the master's key, the one in the slave's authorized_keys"),
        (["-p", str(target.port)], "the slave's SSH port"),
        (["-o", "IdentitiesOnly=yes"], "offer only that key, never an agent's"),
        (["-o", "BatchMode=yes"], "never prompt (a passphrase, a password, a new host key)"),
        (["-o", "PreferredAuthentications=publickey"], "the key is the only way in; skip "
                                                       "GSSAPI and keyboard round trips"),
        (["-o", "StrictHostKeyChecking=yes"], "reject unknown and changed host keys"),
        (["-o", f"UserKnownHostsFile={target.known_hosts}"], "the master's known_hosts, "
                                                             "the same file paramiko loads"),
        (["-o", "GlobalKnownHostsFile=/dev/null"], "only the master's file decides, as with "
                                                   "paramiko"),
        (["-o", "UpdateHostKeys=no"], "host keys change only when the admin edits the file"),
        (["-o", f"ConnectTimeout={target.connect_timeout}"], "a powered-off slave fails in "
                                                             "seconds, not after TCP's ~2 min"),
        (["-o", "ServerAliveInterval=1"], "notice a dead link mid-transfer ..."),
        (["-o", "ServerAliveCountMax=3"], "... after about 3-4 s, not after TCP's minutes"),
        (["-o", "ControlMaster=auto"], "share one authenticated connection between transfers"
                                       ": 5 ms instead of a 200 ms handshake"),
        (["-o", "ControlPersist=60"], "keep it a minute after the last transfer"),
        (["-o", f"ControlPath={control_path(target)}"], "its socket, in our 0700 dir"),
    ]
    argv = ["ssh"]
    for args, why in options:
        log.debug("ssh option %s: %s", " ".join(args), why)
        argv += args
    for word in argv:
        if _RSH_UNSAFE.search(word):
            raise TransportError(
                f"{word!r} contains white space, a quote or a backslash; rsync splits its "
                "ssh command on white space, so the key, known_hosts and control paths of "
                "an SSH slave must not contain any: move or rename them")
    return argv


def _remote(target: SSHTarget, path: str) -> str:
    host = f"[{target.host}]" if ":" in target.host else target.host
    return f"{target.user}@{host}:{path}"


def rsync_argv(target: SSHTarget, direction: Direction, local: Path, remote: str, *,
               io_timeout: int = 60, max_size: int | None = None) -> list[str]:
    """The rsync argv of one put (``local`` -> slave dir ``remote``, which is "cache/")
    or get (slave file ``remote`` -> ``local``).

    ``remote`` is relative to the slave's work dir. The slave's shell lets a put write only
    into the cache dir and a get read only below the work dir.
    A put names the destination *directory* and the file keeps its local name: Debian's
    rrsync 3.5 pins an existing destination file as /proc/self/fd/N, which rsync then
    cannot replace, so a put onto an existing file name fails (code 23).
    """
    if direction == "put" and remote != f"{INCOMING}/":
        raise ValueError(f"a put names the slave's cache dir, {INCOMING}/, as destination")
    options: list[tuple[list[str], str]] = [
        (["-e", " ".join(ssh_command(target))], "OpenSSH with the master's identity (above)"),
        (["--times"], "keep mtimes, so sending an unchanged file again is a size+mtime quick "
                      "check: ~60 bytes, neither end reads the file"),
        ([f"--partial-dir={PARTIAL_DIR}"], "an interrupted file waits there and the next try "
                                           "resumes it; the final path only ever gets a "
                                           "complete file (rsync renames it into place)"),
        ([f"--timeout={io_timeout}"], "give up when no data moves for this long (a stuck "
                                      "peer, not a slow one)"),
        (["--stats"], "print 'Total bytes sent/received', what put/get return"),
    ]
    if max_size is not None:
        options.append(([f"--max-size={max_size}"], "the receiver skips a larger file: a"
                                                    " slave cannot fill the master's disk"))
    argv = ["rsync"]
    for args, why in options:
        if args[0] != "-e":
            log.debug("rsync option %s: %s", " ".join(args), why)
        argv += args
    # "--" so a local path can never be read as an option.
    if direction == "put":
        return [*argv, "--", str(local), _remote(target, remote)]
    return [*argv, "--", _remote(target, remote), str(local)]


def control_exit_argv(target: SSHTarget) -> list[str]:
    """Stop the ControlMaster of ``target`` (ssh -O exit), e.g. when the transport closes."""
    return [*ssh_command(target), "-O", "exit", f"{target.user}@{target.host}"]


_STAT = {"put": re.compile(r"^Total bytes sent:\s*([\d,.]+)", re.M),
         "get": re.compile(r"^Total bytes received:\s*([\d,.]+)", re.M)}


def transferred_bytes(stdout: str, direction: Direction) -> int:
    """Bytes that crossed the wire, from rsync's --stats (sent for a put, received for a
    get), whatever digit grouping rsync used."""
    m = _STAT[direction].search(stdout)
    if m is None:
        raise TransportError("rsync finished but printed no --stats; is it rsync >= 3.1?")
    return int(re.sub(r"\D", "", m.group(1)))


# rsync's own exit codes (rsync(1), EXIT VALUES) that mean the link or the peer went away
# while we talked: retrying later may work. 255 is ssh's own failure (no route, refused,
# timed out, connection dropped): the remote side never ran or died with the link.
_UNREACHABLE = {10: "socket I/O error", 12: "the connection closed mid-transfer",
                30: "no data moved within the I/O timeout",
                35: "timed out waiting for the connection", 255: "ssh could not reach it"}
_FAILED = {1: "rsync usage error (a bug in afarm)", 2: "rsync protocol incompatibility",
           3: "cannot select the input or output files", 4: "action not supported",
           5: "cannot start the rsync protocol", 11: "file I/O error",
           13: "program diagnostics error", 14: "IPC error", 20: "interrupted",
           21: "waitpid error", 22: "out of memory", 23: "some files were not transferred",
           24: "the source file vanished", 127: "rsync is not installed on the slave"}


def raise_for_exit(code: int, stderr: str, *, direction: Direction, slave: str,
                   target: SSHTarget, remote: str, local: Path) -> None:
    """Turn a failed rsync into the transport exception its cause calls for."""
    if code == 0:
        return
    lines = [ln.strip() for ln in stderr.splitlines() if ln.strip()]
    detail = "; ".join(lines[-3:]) or "no message"
    where = f"slave {slave} ({target.user}@{target.host} port {target.port})"
    text = stderr.lower()
    if "host key verification failed" in text or "host identification has changed" in text:
        raise AuthFailure(f"{where}: its host key is not the one in {target.known_hosts} "
                          f"({detail}). " + host_key_help(target.host, target.port,
                                                          target.known_hosts))
    if "permission denied (publickey" in text or "too many authentication failures" in text:
        raise AuthFailure(f"{where} refused the key {target.key}: put its public key in "
                          f"{target.user}'s authorized_keys there with the forced command "
                          f"afarm-slave-shell ({detail})")
    if "no space left on device" in text or "disk quota exceeded" in text:
        if direction == "put":
            raise TransportError(f"{where}: the slave's disk is full (its work dir could not "
                                 f"take {remote}); free space there or run gc ({detail})")
        raise TransportError(f"the master's disk is full: cannot write {local} from "
                             f"{where} ({detail})")
    if direction == "get" and "no such file or directory" in text and code in (12, 23):
        raise TransportError(f"{where}: {remote} does not exist in the slave's work dir "
                             f"({detail})")
    if ("afarm-slave-shell" in text and "refused" in text) or "rrsync error" in text:
        raise TransportError(f"{where}: the slave's shell refused the transfer of {remote!r}"
                             f" ({detail}); are master and slave the same afarm version?")
    if code in _UNREACHABLE:
        raise HostUnreachable(f"{where}: rsync {direction} of {remote} failed: "
                              f"{_UNREACHABLE[code]} (exit {code}; {detail})")
    if code < 0:
        raise TransportError(f"rsync {direction} of {remote} to {where} was killed by signal "
                             f"{-code}")
    why = _FAILED.get(code, "unknown rsync exit status")
    raise TransportError(f"{where}: rsync {direction} of {remote} failed: {why} "
                         f"(exit {code}; {detail})")
