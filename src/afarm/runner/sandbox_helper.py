# SPDX-License-Identifier: MIT
"""afarm-sandbox.service: starts the tasks of an unprivileged master as the task user.

Why a helper: the master's unit keeps its hardening (no namespaces, no mounts, no
capabilities, its own user namespace), under which bubblewrap cannot start; and a task must
never run as the master's user, which a user namespace of the master's would do. So the
master asks this small root service, over a Unix socket only its group may open
(/run/afarm-sandbox/socket, root:afarm-master 0660), to run a task: it passes the task's
argv, its [sandbox] limits, and open descriptors of the task's in/, out/ and scratch and
of its stdin, stdout and stderr (sandbox_client.py). The helper
runs the task the way a root agent does (sandbox.build_argv: a privileged bubblewrap that
switches to the task user, then an unprivileged one that forbids user namespaces), with
the directories bound through the descriptors, and answers with the exit code.

What a caller cannot make it do:
- run as any user but its own task user (the caller's [sandbox] user is ignored), or
  serve any caller but --allow-user (SO_PEERCRED);
- touch a directory the caller does not own: each one must be a directory owned by the
  caller, and the helper's own open of the path the caller names must be that same
  directory (device and inode), so no symlink or rename swaps it in between;
- leave files of the task user behind: out/ and scratch are the task user's while it runs
  and the caller's again (every entry, symlinks not followed) before the answer goes out.
A closed connection (the master cancelled, timed out or died) kills the task.
"""

from __future__ import annotations

import argparse
import array
import dataclasses
import json
import logging
import os
import pwd
import signal
import socket
import stat
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from afarm.notify import notify
from afarm.runner.sandbox import (
    DEFAULT_USER,
    Sandbox,
    SandboxError,
    SandboxSettings,
    TaskUser,
    build_argv,
    rewrite,
    task_user,
)

log = logging.getLogger("afarm.sandbox-helper")
SOCKET = "/run/afarm-sandbox/socket"
MAX_MESSAGE = 1 << 20
MAX_CLIENTS = 256
N_FDS = 6  # stdin, stdout, stderr, in/, out/, scratch
INSIDE = ("/job/in", "/job/out", "/job/scratch")


class Refused(Exception):
    """A request the helper will not serve; the message goes back to the caller."""


class Helper:
    def __init__(self, allow_uid: int, user: TaskUser) -> None:
        self.allow_uid = allow_uid
        self.user = user
        self.slots = threading.BoundedSemaphore(MAX_CLIENTS)
        self.sandbox = Sandbox(SandboxSettings(user=user.name))

    def serve(self, listener: socket.socket) -> None:
        while True:
            conn, _ = listener.accept()
            if not self.slots.acquire(blocking=False):
                conn.close()
                continue
            threading.Thread(target=self._serve_one, args=(conn,), daemon=True).start()

    def _serve_one(self, conn: socket.socket) -> None:
        fds: list[int] = []
        try:
            with conn:
                creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12)
                _pid, uid, gid = array.array("i", creds)
                data, fds = _receive(conn)
                try:
                    if uid != self.allow_uid:
                        raise Refused(f"uid {uid} may not start tasks here")
                    reply = self._handle(conn, json.loads(data), fds, uid, gid)
                except (Refused, SandboxError, ValueError, TypeError, KeyError) as exc:
                    log.warning("refused a request of uid %d: %s", uid, exc)
                    reply = {"error": str(exc)}
                conn.sendall(json.dumps(reply).encode())
        except OSError as exc:
            log.warning("connection: %s", exc)
        finally:
            for fd in fds:
                os.close(fd)
            self.slots.release()

    def _handle(self, conn: socket.socket, req: Any, fds: list[int], uid: int,
                gid: int) -> dict[str, Any]:
        if not isinstance(req, dict):
            raise Refused("a request is a JSON object")
        if req.get("op") == "check":
            return {"problem": self.sandbox.check()}
        if req.get("op") != "run" or len(fds) != N_FDS:
            raise Refused(f"expected op run with {N_FDS} descriptors")
        argv, dirs = req["argv"], req["dirs"]
        if (not isinstance(argv, list) or not argv or not all(isinstance(a, str) for a in argv)
                or not isinstance(dirs, list) or len(dirs) != 3
                or not all(isinstance(d, str) for d in dirs)):
            raise Refused("argv must be a non-empty list of strings and dirs three paths")
        settings = dict(req.get("settings") or {})
        settings["user"] = self.user.name  # never the caller's choice
        sandbox = Sandbox(SandboxSettings.from_config(settings))
        problem = self.sandbox.check()
        if problem:
            raise Refused(problem)
        own: list[int] = []
        try:
            for path, fd in zip(dirs, fds[3:], strict=True):
                own.append(_same_dir(str(path), fd, uid))
            paths = [Path(f"/proc/self/fd/{fd}") for fd in own]
            _hand_over(own, self.user, uid)
            inner = rewrite(argv, dict(zip(dirs, INSIDE, strict=True)))
            plan = dataclasses.replace(sandbox.plan(inner), user=self.user)
            full = build_argv(inner, paths[0], paths[1], paths[2], plan)
            return {"exit": _run(conn, full, fds[:3], own)}
        finally:
            try:
                if len(own) == len(dirs):
                    _give_back(own[1:], self.user, uid, gid)
            finally:
                for fd in own:
                    os.close(fd)


def _receive(conn: socket.socket) -> tuple[bytes, list[int]]:
    fds = array.array("i")
    data, anc, flags, _ = conn.recvmsg(MAX_MESSAGE, socket.CMSG_SPACE(N_FDS * fds.itemsize))
    for level, kind, payload in anc:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds.frombytes(payload[:len(payload) - len(payload) % fds.itemsize])
    for fd in fds:
        os.set_inheritable(fd, False)
    if flags & (socket.MSG_TRUNC | socket.MSG_CTRUNC):
        for fd in fds:
            os.close(fd)
        raise OSError("request too large")
    return data, list(fds)


def _same_dir(path: str, fd: int, uid: int) -> int:
    """Our own descriptor of ``path`` after checking that it is the caller's directory
    ``fd`` (the caller's may live in another mount namespace, where bind mounts cannot
    reach it)."""
    theirs = os.fstat(fd)
    if not stat.S_ISDIR(theirs.st_mode) or theirs.st_uid != uid:
        raise Refused(f"{path} is not a directory of the caller")
    try:
        mine = os.open(path, os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as exc:
        raise Refused(f"{path}: {exc.strerror}") from None
    st = os.fstat(mine)
    if (st.st_dev, st.st_ino) != (theirs.st_dev, theirs.st_ino):
        os.close(mine)
        raise Refused(f"{path} is not the directory the caller opened")
    return mine


def _entries(top: int) -> Iterator[tuple[int, str, os.stat_result]]:
    """(dir fd, name, lstat) of every entry below the directory ``top`` (a descriptor),
    deepest first. Walked by descriptors (os.fwalk), never through a path that a
    symlink swapped in by the caller could redirect; symlinks are listed, not followed."""
    for _root, dirs, files, root_fd in os.fwalk(".", topdown=False, follow_symlinks=False,
                                                 dir_fd=top):
        for name in (*dirs, *files):
            try:
                yield root_fd, name, os.stat(name, dir_fd=root_fd, follow_symlinks=False)
            except FileNotFoundError:
                continue


def _hand_over(fds: list[int], user: TaskUser, uid: int) -> None:
    """The task user may read in/ (its group) and owns out/ and scratch, with what is in
    them, while it runs. Only what the caller owns changes (in/ holds hard links into the
    caller's cache)."""
    in_fd, out_fd, scratch_fd = fds
    for dir_fd, name, st in _entries(in_fd):
        if st.st_uid != uid or not (stat.S_ISREG(st.st_mode) or stat.S_ISDIR(st.st_mode)):
            continue
        fd = os.open(name, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)
        try:
            now = os.fstat(fd)  # the inode itself: a swap since the walk changes nothing
            if now.st_uid == uid and (now.st_dev, now.st_ino) == (st.st_dev, st.st_ino):
                os.chown(f"/proc/self/fd/{fd}", -1, user.gid)
                os.chmod(f"/proc/self/fd/{fd}", (now.st_mode & 0o7777)
                         | (0o050 if stat.S_ISDIR(now.st_mode) else 0o040))
        finally:
            os.close(fd)
    os.chown(f"/proc/self/fd/{in_fd}", -1, user.gid)
    os.chmod(f"/proc/self/fd/{in_fd}", 0o750)
    for top in (out_fd, scratch_fd):
        # What an earlier command of the task left (given back to the caller then) is the
        # task's again, so a task of several commands can go on with its own files.
        for dir_fd, name, st in _entries(top):
            if st.st_uid == uid:
                os.chown(name, user.uid, user.gid, dir_fd=dir_fd, follow_symlinks=False)
        os.chown(f"/proc/self/fd/{top}", user.uid, user.gid)
        os.chmod(f"/proc/self/fd/{top}", 0o700)


def _give_back(fds: list[int], user: TaskUser, uid: int, gid: int) -> None:
    """out/ and scratch and what the task made in them are the caller's again; nothing
    else changes hands (symlinks themselves, never their targets). The top goes last:
    until then the caller cannot enter to swap anything."""
    for top in fds:
        for dir_fd, name, st in _entries(top):
            if st.st_uid == user.uid:
                os.chown(name, uid, gid, dir_fd=dir_fd, follow_symlinks=False)
        os.chown(f"/proc/self/fd/{top}", uid, gid)


def _run(conn: socket.socket, argv: list[str], stdio: list[int], dirs: list[int]) -> int:
    proc = subprocess.Popen(  # noqa: S603 - argv list, never a shell
        argv, stdin=stdio[0], stdout=stdio[1], stderr=stdio[2], pass_fds=dirs,
        start_new_session=True, cwd="/")

    def watch() -> None:
        # The caller sends nothing more: any readable event is its end.
        try:
            conn.recv(1)
        except OSError:
            pass
        if proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    threading.Thread(target=watch, daemon=True).start()
    return proc.wait()


def _listener(path: str, group_gid: int | None) -> socket.socket:
    """The socket, root's and the caller's group's only (0660)."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    old = os.umask(0o177)
    try:
        s.bind(path)
    finally:
        os.umask(old)
    if group_gid is not None:
        os.chown(path, 0, group_gid)
        os.chmod(path, 0o660)
    s.listen(64)
    return s


def main(args: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="afarm-sandbox", description=__doc__.split("\n")[0])
    p.add_argument("--allow-user", required=True, help="the one user that may start tasks")
    p.add_argument("--task-user", default=DEFAULT_USER, help="the user tasks run as")
    p.add_argument("--listen", default=SOCKET, help="socket path (default: %(default)s)")
    a = p.parse_args(args)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    if os.geteuid() != 0:
        print("afarm-sandbox: must run as root (it starts tasks as the task user)",
              file=sys.stderr)
        return 77
    try:
        caller = pwd.getpwnam(a.allow_user)
        user = task_user(a.task_user, create=False)
    except KeyError:
        print(f"afarm-sandbox: no user {a.allow_user!r}", file=sys.stderr)
        return 78
    except SandboxError as exc:
        print(f"afarm-sandbox: {exc}", file=sys.stderr)
        return 78
    if user.uid == caller.pw_uid:
        print("afarm-sandbox: the task user must not be the caller", file=sys.stderr)
        return 78
    listener = _listener(a.listen, caller.pw_gid)
    log.info("starting tasks of %s as %s", a.allow_user, user.name)
    notify("READY=1")
    os.environ.pop("NOTIFY_SOCKET", None)  # for systemd from this process only
    Helper(caller.pw_uid, user).serve(listener)
    return 0


if __name__ == "__main__":
    sys.exit(main())
