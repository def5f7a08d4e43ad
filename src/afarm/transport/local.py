# SPDX-License-Identifier: MIT
"""LocalTransport: a slave that is a process on the master's machine, with its own work dir."""

import json
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path
from typing import IO, Any

from afarm.transport.base import (
    CommandTimedOut,
    HostUnreachable,
    Result,
    TooLarge,
    TransportError,
)


class PipeChannel:
    """JSON lines over a child's stdin/stdout."""

    def __init__(self, proc: subprocess.Popen[bytes]) -> None:
        self.proc = proc
        assert proc.stdin is not None and proc.stdout is not None
        self._in: IO[bytes] = proc.stdin
        self._out: IO[bytes] = proc.stdout
        self._lock = threading.Lock()

    def send(self, message: dict[str, Any]) -> None:
        data = json.dumps(message, separators=(",", ":")).encode() + b"\n"
        with self._lock:
            try:
                self._in.write(data)
                self._in.flush()
            except (BrokenPipeError, ValueError, OSError) as exc:
                raise HostUnreachable(f"local slave channel closed: {exc}") from exc

    def recv(self) -> dict[str, Any] | None:
        line = self._out.readline()
        if not line:
            return None
        try:
            msg = json.loads(line)
        except ValueError as exc:
            raise TransportError(f"slave sent a line that is not JSON: {line[:200]!r}") from exc
        return msg if isinstance(msg, dict) else None

    def close(self) -> None:
        try:
            self._in.close()
        except OSError:
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


class LocalTransport:
    """Runs the slave agent as a child process; files move by copy within one machine."""

    def __init__(self, name: str, work_dir: Path, applications_dir: Path,
                 agent_args: list[str] | None = None) -> None:
        self.name = name
        self.agent_args = agent_args or []
        self.work_dir = work_dir.resolve()
        self.applications_dir = applications_dir.resolve()
        self.work_dir.mkdir(parents=True, exist_ok=True)
        self._channels: list[PipeChannel] = []

    def _path(self, rel: str) -> Path:
        p = (self.work_dir / rel).resolve()
        if not p.is_relative_to(self.work_dir):
            raise TransportError(f"{rel!r} leaves the slave's work dir")
        return p

    def run(self, argv: list[str], stdin: bytes | None = None,
            timeout: float | None = None) -> Result:
        try:
            cp = subprocess.run(argv, input=stdin, capture_output=True, timeout=timeout,
                                cwd=self.work_dir, check=False)
        except subprocess.TimeoutExpired as exc:
            raise CommandTimedOut(f"{argv[0]} ran longer than {timeout} s") from exc
        except OSError as exc:
            raise TransportError(f"cannot run {argv[0]}: {exc.strerror}") from exc
        return Result(argv, cp.returncode, cp.stdout.decode(errors="replace"),
                      cp.stderr.decode(errors="replace"))

    def put(self, src: Path, dst: str) -> int:
        target = self._path(dst)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.tmp")
        shutil.copyfile(src, tmp)
        os.replace(tmp, target)
        return target.stat().st_size

    def get(self, src: str, dst: Path, max_bytes: int | None = None) -> int:
        source = self._path(src)
        if max_bytes is not None and source.stat().st_size > max_bytes:
            raise TooLarge(f"{src} on {self.name} is larger than {max_bytes} bytes; refused")
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, dst)
        return dst.stat().st_size

    def open_channel(self) -> PipeChannel:
        argv = [sys.executable, "-m", "afarm.slave.agent", "--name", self.name,
                "--work-dir", str(self.work_dir), "--applications-dir",
                str(self.applications_dir), *self.agent_args]
        env = dict(os.environ)
        # The agent must import the same afarm as the master, installed or from a checkout.
        pkg_root = str(Path(__file__).resolve().parents[2])
        env["PYTHONPATH"] = os.pathsep.join(p for p in (pkg_root, env.get("PYTHONPATH")) if p)
        proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                env=env, start_new_session=True)
        ch = PipeChannel(proc)
        self._channels.append(ch)
        return ch

    def close(self) -> None:
        for ch in self._channels:
            ch.close()
        self._channels.clear()
