# SPDX-License-Identifier: MIT
"""`afarmctl demo`: a real render on an embedded farm (a master and local slaves on loopback)."""

import argparse
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType

from afarm.applications.base import script_path
from afarm.cli import ops
from afarm.cli.client import Client
from afarm.cli.progress import ProgressBar
from afarm.errors import OperationFailed, UsageError


def say(text: str) -> None:
    # Flushed: through a pipe (`afarmctl demo | tee`, a test) stdout is block-buffered, and a
    # line held back until exit would tell the reader the render started after it ended.
    print(text, flush=True)


@contextmanager
def interrupt_deferred() -> Iterator[None]:
    """Ctrl-C inside the block takes effect at its end: starting the master and its pid
    being remembered, or stopping it, must not be cut in half, or it outlives the demo."""
    if threading.current_thread() is not threading.main_thread():
        yield  # only the main thread may set handlers; it is also the only one SIGINT hits
        return
    pressed: list[int] = []

    def remember(signum: int, frame: FrameType | None) -> None:
        pressed.append(signum)

    previous = signal.signal(signal.SIGINT, remember) or signal.SIG_DFL
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if pressed:
        if callable(previous):
            previous(signal.SIGINT, None)
        elif previous != signal.SIG_IGN:
            raise KeyboardInterrupt


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def write_config(farm_dir: Path, slaves: int) -> tuple[Path, int]:
    apps = farm_dir / "applications.d"
    apps.mkdir(parents=True)
    (apps / "blender.conf").write_text(
        f"kind = blender\nexecutable = {shutil.which('blender')}\n")
    (apps / "ffmpeg.conf").write_text(
        f"kind = ffmpeg\nexecutable = {shutil.which('ffmpeg')}\nruns_on = master\n")
    # Two free ports in a row are not guaranteed, so both are named explicitly.
    job_port, results_port = free_port(), free_port()
    conf = farm_dir / "master.conf"
    conf.write_text(
        f"[master]\nstate_dir = {farm_dir / 'state'}\napplications_dir = {apps}\n"
        f"slaves_dir = {farm_dir / 'slaves.d'}\nallow_root = yes\n"
        f"[job_port]\nlisten = 127.0.0.1:{job_port}\ntoken_file = {farm_dir / 'tokens'}\n"
        f"[results_port]\nlisten = 127.0.0.1:{results_port}\n"
        f"[local_slaves]\ncount = {slaves}\nwork_dir = {farm_dir / 'slaves'}\n")
    return conf, results_port


def start_master(conf: Path, log: Path) -> subprocess.Popen[bytes]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(Path(__file__).resolve().parents[2]), env.get("PYTHONPATH")) if p)
    with open(log, "wb") as f:
        # A session of its own: Ctrl-C reaches afarmctl, which stops the master in order.
        return subprocess.Popen([sys.executable, "-m", "afarm.master.daemon", "--config",
                                 str(conf)], stdout=f, stderr=subprocess.STDOUT, env=env,
                                start_new_session=True)


def wait_ready(client: Client, proc: subprocess.Popen[bytes], log: Path) -> None:
    # The slaves are tested and benchmarked before they take work (a few seconds each).
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise OperationFailed("the demo master exited:\n" + log.read_text()[-2000:])
        try:
            slaves = client.get("/api/v1/slaves")
            bad = [s for s in slaves if s["state"] == "quarantined"]
            if bad:
                raise OperationFailed(f"slave {bad[0]['name']} failed its acceptance test: "
                                      f"{bad[0].get('last_error')}")
            if slaves and all(s["state"] in ("online", "busy") for s in slaves):
                return
        except OperationFailed:
            pass
        time.sleep(0.1)
    raise OperationFailed("the demo master did not come up in 120 s:\n"
                          + log.read_text()[-2000:])


def make_scene(dst: Path, frames: int, size: tuple[int, int], samples: int) -> None:
    argv = [shutil.which("blender") or "blender", "-b", "-Y", "--factory-startup",
            "--python-exit-code", "1", "--python", str(script_path("demo_scene.py")), "--",
            "--output", str(dst), "--frames", str(frames), "--width", str(size[0]),
            "--height", str(size[1]), "--samples", str(samples)]
    cp = subprocess.run(argv, capture_output=True, text=True, check=False)
    if cp.returncode != 0 or not dst.is_file():
        raise OperationFailed("Blender could not make the demo scene:\n" + cp.stdout[-1500:]
                              + cp.stderr[-1500:])


def parse_size(value: str) -> tuple[int, int]:
    w, sep, h = value.lower().partition("x")
    if not sep or not w.isdigit() or not h.isdigit() or not (16 <= int(w) <= 4096
                                                            and 16 <= int(h) <= 4096):
        raise UsageError(f"--size {value!r}: write WIDTHxHEIGHT, each 16 to 4096")
    return int(w), int(h)


def run_demo(args: argparse.Namespace) -> int:
    missing = [t for t in ("blender", "ffmpeg") if shutil.which(t) is None]
    if missing:
        raise OperationFailed(f"the demo needs {' and '.join(missing)}; install with:"
                              f" apt install {' '.join(missing)}")
    if not 1 <= args.slaves <= 64:
        raise UsageError("--slaves must be 1 to 64")
    if not 1 <= args.frames <= 1000:
        raise UsageError("--frames must be 1 to 1000")
    size = parse_size(args.size)
    out = Path(args.output).resolve()
    farm_dir = Path(tempfile.mkdtemp(prefix="afarm-demo-"))
    proc = None
    try:
        conf, results_port = write_config(farm_dir, args.slaves)
        master = conf.read_text().split("[job_port]\nlisten = ")[1].split("\n")[0]
        client = Client(master, f"127.0.0.1:{results_port}")
        log = farm_dir / "master.log"
        say(f"starting a master with {args.slaves} local slaves on {master}")
        with interrupt_deferred():
            proc = start_master(conf, log)
        scene = farm_dir / "afarm-demo.blend"
        say(f"making a {args.frames}-frame scene with Blender ({size[0]}x{size[1]})")
        make_scene(scene, args.frames, size, args.samples)
        wait_ready(client, proc, log)
        client.token = client.local_token(farm_dir / "state")  # the master made it
        chunk = max(1, args.frames // (args.slaves * 4))
        request = {"name": "afarm-demo", "application": "blender",
                   "params": {"frames": f"1-{args.frames}", "chunk": chunk, "encode": "mp4"}}
        job = ops.submit(client, request, [(scene.name, scene)])
        say(f"job {job['id']}: {args.frames} frames in {job['progress']['tasks'] - 1} tasks"
              " + an mp4 encode")
        started = time.monotonic()
        bar = ProgressBar(sys.stderr)
        job = ops.wait(client, job["id"], bar.update)
        bar.close(job)
        seconds = time.monotonic() - started
        if job["status"] != "completed":
            print(ops.logs(client, job["id"])[-3000:], file=sys.stderr)
            raise OperationFailed(f"the demo job ended {job['status']}; its log is above")
        if out.exists():
            shutil.rmtree(out / "out", ignore_errors=True)
        paths = ops.fetch(client, job["id"], out)
        frames = sorted(p for p in paths if p.suffix == ".png")
        videos = [p for p in paths if p.suffix == ".mp4"]
        say(f"rendered {len(frames)} frames on {args.slaves} slaves in {seconds:.1f} s")
        say(f"frames: {frames[0].parent}/ ({frames[0].name} .. {frames[-1].name})")
        for v in videos:
            say(f"video:  {v}")
        return 0
    finally:
        with interrupt_deferred():  # a second Ctrl-C must not leave the master running
            if proc is not None and proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
            shutil.rmtree(farm_dir, ignore_errors=True)
