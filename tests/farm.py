# SPDX-License-Identifier: MIT
"""A real afarm-master with local slaves in a temporary directory, for integration tests."""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from afarm.cli.client import Client

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": f"{ROOT / 'src'}:{ROOT}"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class MasterProcess:
    """`afarm-master --config FILE` run the way its unit runs it, plus helpers to drive it."""

    def __init__(self, base: Path, slaves: int = 2, apps: dict[str, str] | None = None,
                 extra_conf: str = "", slots: int = 1,
                 acceptance: str = "benchmark_frames = 0\n") -> None:
        self.base = base
        self.apps_dir = base / "applications.d"
        self.apps_dir.mkdir(parents=True, exist_ok=True)
        defaults = {
            "blender": f"kind = blender\nexecutable = {shutil.which('blender')}\n",
            "ffmpeg": f"kind = ffmpeg\nexecutable = {shutil.which('ffmpeg')}\n"
                      "runs_on = master\n",
        }
        for name, text in {**defaults, **(apps or {})}.items():
            (self.apps_dir / f"{name}.conf").write_text(text)
        self.job_port, self.results_port = free_port(), free_port()
        self.state = base / "state"
        self.conf = base / "master.conf"
        self.conf.write_text(
            f"[master]\nstate_dir = {self.state}\napplications_dir = {self.apps_dir}\n"
            f"slaves_dir = {base / 'slaves.d'}\nallow_root = yes\n"
            f"[job_port]\nlisten = 127.0.0.1:{self.job_port}\ntoken_file = {base / 'tokens'}\n"
            f"[results_port]\nlisten = 127.0.0.1:{self.results_port}\n"
            # Every slave is tested when it connects (~1 s with Blender); the benchmark
            # only where a test asks for it, to keep the suite short.
            f"[acceptance]\n{acceptance}"
            # Last: extra_conf may continue it with [[NAME]] sub-sections.
            f"[local_slaves]\ncount = {slaves}\nslots = {slots}\n"
            f"work_dir = {base / 'slaves'}\n" + extra_conf)
        self.log = base / "master.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.client = Client(f"127.0.0.1:{self.job_port}", f"127.0.0.1:{self.results_port}")

    @property
    def master_arg(self) -> list[str]:
        return ["--master", f"127.0.0.1:{self.job_port}",
                "--results", f"127.0.0.1:{self.results_port}"]

    def start(self, wait_slaves: bool = True) -> "MasterProcess":
        with open(self.log, "ab") as f:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "afarm.master.daemon", "--config", str(self.conf)],
                stdout=f, stderr=subprocess.STDOUT, env=ENV, start_new_session=True)
        deadline = time.monotonic() + 90  # the slaves' acceptance tests run first
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"master exited {self.proc.returncode}:\n{self.logtext()}")
            try:
                slaves = self.client.get("/api/v1/slaves")
                # Settled: tested and online, or quarantined by its test.
                if not wait_slaves or all(s["state"] in ("online", "busy", "quarantined")
                                          for s in slaves):
                    # The token the master keeps for local clients (afarm.master.auth).
                    self.client.token = self.client.token or self.local_token()
                    return self
            except Exception:
                pass
            time.sleep(0.05)
        self.stop()  # the caller never gets a fixture to tear down: stop it here
        raise RuntimeError(f"master did not come up:\n{self.logtext()}")

    def local_token(self) -> str | None:
        return self.client.local_token(self.state)

    def logtext(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def kill9(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def ctl(self, *args: str, timeout: float = 600,
            token: bool = True) -> subprocess.CompletedProcess[str]:
        """Run the real afarmctl against this master (with its client token in
        AFARM_TOKEN, as an admin on its machine has it, unless ``token`` is False)."""
        env = dict(ENV)
        own = self.local_token() if token else None
        if own:
            env["AFARM_TOKEN"] = own
        return subprocess.run([sys.executable, "-m", "afarm.cli.main", *self.master_arg,
                               *args], capture_output=True, text=True, env=env,
                              timeout=timeout, check=False)

    def submit(self, *args: str) -> int:
        cp = self.ctl("--json", "submit", *args)
        assert cp.returncode == 0, cp.stderr
        return int(json.loads(cp.stdout)["id"])

    def wait(self, job_id: int, timeout: float = 600) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            job: dict[str, Any] = self.client.get(f"/api/v1/jobs/{job_id}")
            if job["status"] in ("completed", "failed", "canceled", "completed-with-warnings"):
                return job
            time.sleep(0.1)
        raise TimeoutError(f"job {job_id} did not finish:\n{self.logtext()[-3000:]}")

    def job_dir(self, job_id: int) -> Path:
        return self.state / "jobs" / str(job_id)
