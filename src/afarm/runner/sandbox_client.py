# SPDX-License-Identifier: MIT
"""Runs one sandboxed task through afarm-sandbox.service: the wrapper a non-root master puts
in front of a task's argv when [sandbox] helper names the helper's socket.

Standard library only, and run as a file (``python3 -I -S sandbox_client.py``), so it starts
fast and never imports anything from the master's environment (``-I -S``). It opens the task's in/,
out/ and scratch directories (it can; the task user cannot reach them), hands them and its
stdin, stdout and stderr to the helper over the socket (SCM_RIGHTS), and exits with the
task's exit code. Killing it (a cancel, a timeout) closes the connection, and the helper
kills the task.

Usage: sandbox_client.py SOCKET SETTINGS_JSON IN OUT SCRATCH -- ARGV...
       sandbox_client.py SOCKET check
"""

from __future__ import annotations

import array
import json
import os
import socket
import sys

# Exit codes of the client itself (a task's own code passes through).
EX_HELPER = 125  # the helper refused or is unreachable; the message is on stderr
MAX_MESSAGE = 1 << 20


def _connect(path: str) -> socket.socket:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET | socket.SOCK_CLOEXEC)
    s.connect(path)
    return s


def _reply(s: socket.socket) -> dict[str, object]:
    data = s.recv(MAX_MESSAGE)
    if not data:
        raise OSError("the sandbox helper closed the connection without a reply")
    reply = json.loads(data)
    if not isinstance(reply, dict):
        raise OSError("the sandbox helper sent a malformed reply")
    return reply


def check(path: str) -> str | None:
    """None when the helper can start a sandbox, else why not (for Sandbox.check)."""
    try:
        with _connect(path) as s:
            s.sendall(json.dumps({"op": "check"}).encode())
            reply = _reply(s)
    except (OSError, ValueError) as exc:
        return (f"the sandbox helper at {path} is not reachable ({exc}); start it: "
                "systemctl enable --now afarm-sandbox")
    problem = reply.get("problem")
    return str(problem) if problem else None


def run(path: str, settings: str, dirs: list[str], argv: list[str]) -> int:
    fds = [os.open(d, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC) for d in dirs]
    message = json.dumps({"op": "run", "settings": json.loads(settings), "dirs": dirs,
                          "argv": argv}).encode()
    with _connect(path) as s:
        s.sendmsg([message], [(socket.SOL_SOCKET, socket.SCM_RIGHTS,
                               array.array("i", [0, 1, 2, *fds]))])
        for fd in fds:
            os.close(fd)
        reply = _reply(s)
    if "error" in reply:
        print(f"afarm sandbox helper: {reply['error']}", file=sys.stderr)
        return EX_HELPER
    code = int(str(reply.get("exit", EX_HELPER)))
    return 128 - code if code < 0 else code


def main(args: list[str]) -> int:
    if len(args) == 2 and args[1] == "check":
        problem = check(args[0])
        if problem:
            print(problem, file=sys.stderr)
        return EX_HELPER if problem else 0
    if len(args) < 7 or args[5] != "--":
        print(__doc__, file=sys.stderr)
        return 2
    try:
        return run(args[0], args[1], args[2:5], args[6:])
    except (OSError, ValueError) as exc:
        print(f"afarm sandbox helper at {args[0]}: {exc}", file=sys.stderr)
        return EX_HELPER


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
