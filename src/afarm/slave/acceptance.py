# SPDX-License-Identifier: MIT
"""The slave's side of acceptance: the checks behind the agent's `test` op, and `bench`.

Every application the slave defines proves it works the way tasks use it, inside the task
sandbox: Blender builds afarm's tiny scene (demo_scene.py) and renders a frame of it through
the same argv a job's render gets, ffmpeg encodes a few generated frames, a `command`
application runs the `test` argv of its definition. Besides: scratch is writable, the
sandbox starts, free disk and memory are above the master's thresholds, and the GPUs are
listed (nvidia-smi -L, /dev/dri render nodes, Cycles' own device list).
"""

import hashlib
import json
import os
import re
import shutil
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from afarm import __version__
from afarm.applications.base import Application, resolve_executable, script_path
from afarm.errors import AfarmError
from afarm.protocol.messages import BenchReport, BenchResult, Check, TestReport
from afarm.runner.process import Process
from afarm.runner.sandbox import Sandbox
from afarm.runner.task import TaskResult, TaskRun
from afarm.runner.verify import image_size, verify_output
from afarm.runner.workspace import Input, Workspace, sequence_name

MIB = 1 << 20
APP_TIMEOUT = 300.0  # seconds one application's test may take
CYCLES_PREFIX = "afarm-cycles-devices: "
# The acceptance scene: one tiny frame (~1 s with Blender's start). The benchmark scene: a
# fixed size and sample count, so seconds per frame compare across slaves and over time.
TEST_SCENE = (1, 32, 18, 1)  # frames, width, height, samples
BENCH_SCENE = (128, 72, 16)  # width, height, samples
_FRAME_TIME = re.compile(r"^\s*Time: (?:(\d+):)?(\d+):(\d+(?:\.\d+)?) \(Saving")
_NVIDIA = re.compile(r"^GPU (\d+): (.+?)(?: \(UUID: ([^)]+)\))?\s*$")


@dataclass
class SceneInfo:
    """What the Blender that built a scene said about itself."""

    version: str = ""
    devices: list[str] = field(default_factory=list)


# -- small checks ------------------------------------------------------------------------
def _timed(name: str, fn: Callable[[], tuple[bool, str]]) -> Check:
    started = time.monotonic()
    try:
        ok, detail = fn()
    except (OSError, AfarmError) as exc:
        ok, detail = False, str(exc)
    return Check(name, ok, detail, round(time.monotonic() - started, 3))


def check_scratch(work: Path) -> tuple[bool, str]:
    probe = work / "accept" / "scratch-probe"
    probe.parent.mkdir(parents=True, exist_ok=True)
    data = os.urandom(1 << 16)
    with open(probe, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    back = probe.read_bytes()
    probe.unlink()
    if back != data:
        return False, f"{work}: what was written read back differently"
    return True, str(work)


def check_disk(work: Path, min_mib: int) -> tuple[bool, str]:
    free = shutil.disk_usage(work).free // MIB
    if free < min_mib:
        return False, (f"{free} MiB free in {work}, below the master's [acceptance]"
                       f" min_disk_mib = {min_mib}; free space or lower the threshold")
    return True, f"{free} MiB free"


def available_memory(meminfo: Path = Path("/proc/meminfo")) -> int:
    """MemAvailable in MiB (what a new process can get without swapping)."""
    for line in meminfo.read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) // 1024
    raise OSError(f"{meminfo} has no MemAvailable line")


def check_memory(min_mib: int, meminfo: Path = Path("/proc/meminfo")) -> tuple[bool, str]:
    free = available_memory(meminfo)
    if free < min_mib:
        return False, (f"{free} MiB of memory available, below the master's [acceptance]"
                       f" min_memory_mib = {min_mib}")
    return True, f"{free} MiB available"


def parse_nvidia_smi(text: str) -> list[str]:
    """GPUs from `nvidia-smi -L` ("GPU 0: NVIDIA GeForce RTX 3080 (UUID: GPU-...)")."""
    out = []
    for line in text.splitlines():
        m = _NVIDIA.match(line.strip())
        if m:
            out.append(f"nvidia {m.group(1)}: {m.group(2)}"
                       + (f" ({m.group(3)})" if m.group(3) else ""))
    return out


def discover_gpus(nvidia_smi: str | None, dri: Path = Path("/dev/dri")
                  ) -> tuple[list[str], str]:
    """The GPUs this machine shows, and a note on what could not be asked."""
    gpus: list[str] = []
    note = ""
    if nvidia_smi:
        try:
            cp = subprocess.run([nvidia_smi, "-L"], capture_output=True, text=True,  # noqa: S603
                                timeout=30, check=False)
            if cp.returncode == 0:
                gpus += parse_nvidia_smi(cp.stdout)
            else:
                note = f"nvidia-smi -L exited {cp.returncode}: " + \
                    (cp.stderr.strip().splitlines() or [""])[-1][:200]
        except (OSError, subprocess.SubprocessError) as exc:
            note = f"nvidia-smi -L failed: {exc}"
    try:
        gpus += [f"dri: {p.name}" for p in sorted(dri.glob("renderD*"))]
    except OSError:
        pass
    return gpus, note


# -- running inside the sandbox ----------------------------------------------------------
def _run(argv: list[str], ws: Workspace, sandbox: Sandbox,
         timeout: float) -> tuple[int | None, list[str]]:
    lines: list[str] = []
    proc = Process()
    code = proc.run(sandbox.wrap_workspace(argv, ws), cwd=ws.scratch, env=ws.env(),
                    stdout_path=None, deadline=time.monotonic() + timeout,
                    on_line=lambda ln: lines.append(ln[:1000]) if len(lines) < 2000 else None)
    return code, lines


def _tail(lines: list[str]) -> str:
    useful = [ln.strip() for ln in lines if ln.strip()]
    return useful[-1][:300] if useful else ""


def make_scene(app: Any, base: Path, sandbox: Sandbox, frames: int, width: int,
               height: int, samples: int, render_first: bool = False
               ) -> tuple[Path, SceneInfo]:
    """afarm's scene built by this slave's Blender, in the sandbox; with its device list.
    With ``render_first`` the same process renders frame 1 to out/frame_0001.png: one
    Blender start (~0.9 s) instead of two."""
    ws = Workspace(base)
    ws.create()
    scene = ws.out_dir / "scene.blend"
    render = ["-o", str(ws.out_dir / "frame_####"), "-F", "PNG", "-x", "1", "-f", "1"] \
        if render_first else []
    argv = [resolve_executable(app.executable), "-b", "-Y", "--factory-startup",
            "--python-exit-code", "1", "--python", str(script_path("cycles_devices.py")),
            "--python", str(script_path("demo_scene.py")), *render,
            "--", "--output", str(scene),
            "--frames", str(frames), "--width", str(width), "--height", str(height),
            "--samples", str(samples)]
    code, lines = _run(argv, ws, sandbox, APP_TIMEOUT)
    if code != 0 or not scene.is_file():
        why = "timed out" if code is None else f"exited {code}"
        raise AfarmError(f"{app.name} could not build afarm's test scene ({why}: "
                         f"{_tail(lines)})")
    info = SceneInfo()
    for ln in lines:
        if ln.startswith(CYCLES_PREFIX):
            try:
                data = json.loads(ln[len(CYCLES_PREFIX):])
                info.version = str(data.get("version", ""))[:64]
                info.devices = [f"{d['type']}: {d['name']}"[:200]
                                for d in data.get("devices", [])][:64]
            except (ValueError, TypeError, KeyError, AttributeError):
                pass
    return scene, info


class _TimedRun(TaskRun):
    """A TaskRun that also keeps Blender's time of each frame (the log keeps only a tail)."""

    def __init__(self) -> None:
        super().__init__()
        self.frame_times: list[float] = []

    def _line(self, line: str) -> None:
        self.frame_times += frame_seconds([line])
        super()._line(line)


def render(app: Application, scene: Path, base: Path, sandbox: Sandbox,
           frames: list[int], times: list[float] | None = None) -> TaskResult:
    """Render frames of the scene exactly as a job's render task would (outputs verified);
    Blender's own seconds of each frame go to ``times``."""
    ws = Workspace(base)
    ws.create()
    inp = ws.link(Input("scene.blend", scene))
    expected = [f"frame_{f:04d}.png" for f in frames]
    run = _TimedRun()
    try:
        return run.execute(app, "render", {"frames": frames, "format": "PNG",
                                             "engine": "CYCLES"}, ws, [inp], expected,
                           APP_TIMEOUT, ws.env(), wrap=sandbox.wrap_workspace)
    finally:
        if times is not None:
            times += run.frame_times


def frame_seconds(lines: list[str]) -> list[float]:
    """Blender's own time of each rendered frame ("Time: 00:00.29 (Saving: ...)")."""
    out = []
    for ln in lines:
        m = _FRAME_TIME.match(ln)
        if m:
            out.append(int(m.group(1) or 0) * 3600 + int(m.group(2)) * 60 + float(m.group(3)))
    return out


# -- each kind of application ------------------------------------------------------------
def _test_blender(app: Any, base: Path, sandbox: Sandbox, info: SceneInfo) -> str:
    frames, width, height, samples = TEST_SCENE
    scene, made = make_scene(app, base / "scene", sandbox, frames, width, height, samples,
                             render_first=True)
    info.version, info.devices = made.version, made.devices
    frame = scene.parent / "frame_0001.png"
    if not frame.is_file():
        raise AfarmError("Blender built afarm's test scene but rendered no frame of it")
    verify_output(frame)
    if image_size(frame) != (width, height):
        raise AfarmError(f"the test frame is {image_size(frame)}, not {width}x{height}")
    return f"Blender {made.version} (Cycles) rendered and verified a {width}x{height} frame"


def _test_ffmpeg(app: Any, base: Path, sandbox: Sandbox) -> str:
    gen = Workspace(base / "frames")
    gen.create()
    exe = resolve_executable(app.executable)
    code, lines = _run([exe, "-nostdin", "-loglevel", "error", "-f", "lavfi", "-i",
                        "testsrc=size=64x36:rate=24", "-frames:v", "4",
                        str(gen.out_dir / "frame_%04d.png")], gen, sandbox, APP_TIMEOUT)
    made = sorted(gen.out_dir.glob("frame_*.png"))
    if code != 0 or len(made) != 4:
        raise AfarmError(f"{app.name} could not make test frames (exit {code}: {_tail(lines)})")
    ws = Workspace(base / "encode")
    ws.create()
    inputs = [ws.link(Input(sequence_name(i, p.name), p)) for i, p in enumerate(made, 1)]
    result = TaskRun().execute(app, "encode", {"fps": 24}, ws, inputs, ["test.mp4"],
                               APP_TIMEOUT, ws.env(), wrap=sandbox.wrap_workspace)
    if result.error:
        raise AfarmError(f"encoding 4 test frames failed: {result.error}")
    return f"encoded 4 frames to mp4 in {result.seconds:.2f} s"


def _test_command(app: Any, base: Path, sandbox: Sandbox) -> str:
    ws = Workspace(base)
    ws.create()
    argv = app.test_argv(str(ws.out_dir))
    if not argv:
        return _executable(app)
    code, lines = _run(argv, ws, sandbox, APP_TIMEOUT)
    if code != 0:
        why = "timed out" if code is None else f"exited {code}"
        tail = _tail(lines)
        raise AfarmError(f"its test ({' '.join(argv)[:200]}) {why}"
                         + (f": {tail}" if tail else ""))
    return "its test passed"


def _executable(app: Any) -> str:
    exe = resolve_executable(app.executable)
    if not os.access(exe, os.X_OK):
        raise AfarmError(f"{exe} is not an executable program; fix executable in its"
                         " definition or install it")
    return f"{exe} is there (no test defined)"


def check_application(app: Any, base: Path, sandbox: Sandbox, info: SceneInfo) -> Check:
    def run() -> tuple[bool, str]:
        kind = getattr(app, "kind", "")
        if kind == "blender":
            return True, _test_blender(app, base, sandbox, info)
        if kind == "ffmpeg":
            return True, _test_ffmpeg(app, base, sandbox)
        if kind == "command":
            return True, _test_command(app, base, sandbox)
        return True, _executable(app)

    try:
        return _timed(f"application {app.name}", run)
    finally:
        Workspace(base).remove()


# -- the two ops -------------------------------------------------------------------------
def run_tests(apps: dict[str, Application], work: Path, sandbox: Sandbox, min_disk_mib: int,
              min_memory_mib: int, nvidia_smi: str | None = None,
              dri: Path = Path("/dev/dri")) -> TestReport:
    report = TestReport()
    report.checks.append(_timed("scratch", lambda: check_scratch(work)))

    def sandbox_ok() -> tuple[bool, str]:
        problem = sandbox.check()
        return (False, problem) if problem else (True, "tasks run in bubblewrap")

    report.checks.append(_timed("sandbox", sandbox_ok))
    report.checks.append(_timed("disk", lambda: check_disk(work, min_disk_mib)))
    report.checks.append(_timed("memory", lambda: check_memory(min_memory_mib)))
    gpus, note = discover_gpus(nvidia_smi or shutil.which("nvidia-smi"), dri)
    report.gpus = gpus
    report.checks.append(Check("gpus", True, (", ".join(gpus) or "none: CPU rendering")
                               + (f" ({note})" if note else "")))
    base = work / "accept"
    for name, app in sorted(apps.items()):
        info = SceneInfo()
        report.checks.append(check_application(app, base / name, sandbox, info))
        if getattr(app, "kind", "") == "blender" and not report.blender:
            report.blender = info.version
            report.cycles_devices = info.devices
    return report


def run_bench(apps: dict[str, Application], work: Path, sandbox: Sandbox,
              frames: int) -> BenchReport:
    """Seconds per frame of afarm's benchmark scene with each Blender application."""
    report = BenchReport()
    width, height, samples = BENCH_SCENE
    for name, app in sorted(apps.items()):
        if getattr(app, "kind", "") != "blender":
            continue
        base = work / "accept" / f"bench-{name}"
        try:
            scene, info = make_scene(app, base / "scene", sandbox, frames, width, height,
                                     samples)
            times: list[float] = []
            result = render(app, scene, base / "render", sandbox, list(range(1, frames + 1)),
                            times)
            if result.error:
                raise AfarmError(f"{name}: the benchmark render failed: {result.error}")
            spf = sum(times) / len(times) if len(times) == frames \
                else result.seconds / frames
            report.results.append(BenchResult(name, info.version, "CYCLES", "CPU",
                                              round(max(spf, 1e-4), 4), frames))
        except (OSError, AfarmError) as exc:
            report.error = str(exc)
        finally:
            Workspace(base).remove()
    if not report.results and not report.error:
        report.error = "this slave defines no Blender application to benchmark"
    return report


def software_digest(applications_dir: Path, apps: dict[str, Application]) -> str:
    """What the slave runs with, as one digest: afarm's version, the application definitions
    and the programs they name (path, size, time). A change means a new acceptance test."""
    h = hashlib.sha256(f"afarm {__version__}\n".encode())
    try:
        confs = sorted(applications_dir.glob("*.conf"))
    except OSError:
        confs = []
    for p in confs:
        try:
            h.update(p.name.encode() + b"\0" + p.read_bytes() + b"\0")
        except OSError:
            continue
    for name, app in sorted(apps.items()):
        exe = resolve_executable(str(getattr(app, "executable", "")))
        try:
            st = os.stat(exe)
            h.update(f"{name}\0{exe}\0{st.st_size}\0{st.st_mtime_ns}\0".encode())
        except OSError:
            h.update(f"{name}\0{exe}\0missing\0".encode())
    return h.hexdigest()[:32]
