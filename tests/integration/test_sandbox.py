# SPDX-License-Identifier: MIT
"""The task sandbox with the real bubblewrap: attacks from inside a task that must fail.

Two ways a task is sandboxed, both tested where this machine allows:
- ``agent``: as this process's agent would (root here: bwrap privileged, setpriv to the
  afarm-task user; as an ordinary user: a user namespace);
- ``user``: as the unprivileged ``afarm`` user of an SSH slave would, played by nobody
  (needs root to become nobody).
Hole 1 of issue 9 (a .blend whose movie path is ``concat:SECRET|...``) runs with real
Blender through the real agent.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import os
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from afarm.applications.base import script_path
from afarm.applications.blender import BlenderApp
from afarm.applications.registry import load_applications
from afarm.runner import sandbox as sandbox_module
from afarm.runner.sandbox import (
    SETPRIV,
    Sandbox,
    SandboxSettings,
    build_argv,
    task_user,
)
from afarm.runner.workspace import Input, Workspace
from afarm.slave.agent import Agent
from tests.farm import ENV
from tests.fixtures.blends import make_scene, run_blender
from tests.platform import need_root

NOBODY = 65534
PY = "/usr/bin/python3"
FFMPEG = shutil.which("ffmpeg") or "ffmpeg"
MODES = ["agent", "user"]


@dataclasses.dataclass
class Job:
    base: Path
    in_dir: Path
    out_dir: Path
    scratch: Path

    @property
    def dirs(self) -> tuple[Path, Path, Path]:
        return self.in_dir, self.out_dir, self.scratch


@pytest.fixture
def public_tmp() -> Iterator[Path]:
    # nobody must walk to the job dirs itself (an unprivileged bwrap binds by path);
    # pytest's tmp_path is 0700 root's.
    d = Path(tempfile.mkdtemp(prefix="afarm-sandbox-test-", dir="/tmp"))
    d.chmod(0o711)
    yield d
    shutil.rmtree(d, ignore_errors=True)


def _job(root: Path, mode: str) -> Job:
    base = root / "work" / "jobs" / "1" / "0-1"
    job = Job(base, base / "in", base / "out", base / "scratch")
    for d in job.dirs:
        d.mkdir(parents=True)
    (job.in_dir / "a.txt").write_text("input text\n")
    if mode == "user":
        for p in (root / "work", root / "work" / "jobs", root / "work" / "jobs" / "1", base,
                  *job.dirs, job.in_dir / "a.txt"):
            os.chown(p, NOBODY, NOBODY)
    return job


def _need(mode: str) -> None:
    if mode == "user":
        need_root("only root can become nobody")


def sandboxed(mode: str, argv: list[str], job: Job,
              settings: SandboxSettings | None = None) -> list[str]:
    """argv as an agent would run it: this process's own mode, or as nobody."""
    sandbox = Sandbox(settings)
    if mode == "agent":
        return sandbox.wrap(argv, *job.dirs)
    plan = dataclasses.replace(sandbox.plan(argv), user=None, read_only=())
    return [SETPRIV, f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", "--",
            *build_argv(argv, *job.dirs, plan)]


def probe(mode: str, job: Job, code: str,
          settings: SandboxSettings | None = None) -> dict[str, Any]:
    """Run Python code in the sandbox; it prints one JSON object as its last line."""
    argv = sandboxed(mode, [PY, "-I", "-c", code], job, settings)
    cp = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False,  # noqa: S603
                        cwd=job.scratch)
    assert cp.returncode == 0, f"probe failed ({cp.returncode}): {cp.stdout}{cp.stderr}"
    result: dict[str, Any] = json.loads(cp.stdout.strip().splitlines()[-1])
    return result


_TRY = """
import json, os
def attempt(f):
    try:
        return f()
    except Exception as exc:
        return "refused: " + type(exc).__name__
"""


def test_the_sandbox_can_run_here() -> None:
    assert Sandbox().check() is None


@pytest.mark.parametrize("mode", MODES)
def test_a_task_can_use_the_usual_device_nodes(mode: str, public_tmp: Path) -> None:
    _need(mode)
    got = probe(mode, _job(public_tmp, mode), """
import json
with open("/dev/zero", "rb") as z, open("/dev/null", "wb") as n, open("/dev/urandom", "rb") as r:
    n.write(z.read(4))
    print(json.dumps({"zero": z.read(4).hex(), "random": len(r.read(8))}))
""")
    assert got == {"zero": "00000000", "random": 8}


@pytest.mark.parametrize("mode", MODES)
def test_a_task_cannot_read_the_agents_files_or_anything_outside_its_mounts(
        mode: str, public_tmp: Path) -> None:
    _need(mode)
    job = _job(public_tmp, mode)
    state = public_tmp / "state"
    state.mkdir()
    secret = state / "id_ed25519"
    secret.write_text("-----BEGIN OPENSSH PRIVATE KEY----- hunter2\n")
    secret.chmod(0o600)
    (state / "afarm.db").write_text("the master's database\n")
    if mode == "user":
        for p in (state, secret, state / "afarm.db"):
            os.chown(p, NOBODY, NOBODY)
    targets = [str(secret), str(state / "afarm.db"), "/etc/shadow", "/etc/passwd",
               "/etc/ssh/sshd_config", "/root/.ssh/authorized_keys", "/root/.bashrc",
               "/var/lib/dpkg/status", "/proc/1/root/etc/shadow"]
    code = _TRY + f"""
targets = {targets!r}
read = {{t: attempt(lambda t=t: open(t).read()) for t in targets}}
print(json.dumps({{"read": read, "root": sorted(os.listdir("/")),
                   "job": sorted(os.listdir("/job")), "input": open("/job/in/a.txt").read(),
                   "home": os.environ.get("HOME"), "env": sorted(os.environ)}}))
"""
    got = probe(mode, job, code)
    assert got["input"] == "input text\n"
    for target, result in got["read"].items():
        assert str(result).startswith("refused"), f"{target} was readable in the sandbox"
    assert "hunter2" not in json.dumps(got)
    assert got["job"] == ["in", "out", "scratch"]
    # The afarm scripts are bound read-only where afarm lives: /usr when installed, the
    # checkout's top directory (/work, /tmp, /root, ...) when tests run from a clone.
    checkout_top = Path(script_path("render_prep.py")).resolve().parts[1]
    assert set(got["root"]) - {checkout_top, "tmp"} <= {"bin", "dev", "etc", "job", "lib", "lib32",
                                                   "lib64", "libx32", "proc", "sbin", "usr"}
    assert not ({"root", "home", "var"} - {checkout_top}) & set(got["root"])
    assert got["home"] == "/job/scratch"
    assert got["env"] == ["HOME", "LANG", "PATH", "PWD", "TMPDIR"]  # PWD: bwrap --chdir


@pytest.mark.parametrize("mode", MODES)
def test_a_task_writes_only_its_out_and_scratch(mode: str, public_tmp: Path) -> None:
    _need(mode)
    job = _job(public_tmp, mode)
    marker = f"afarm-sandbox-{os.getpid()}-{mode}"
    targets = ["/job/in/x", "/job/in/a.txt", "/job/x", "/x", "/usr/x", "/etc/x",
               "/etc/alternatives/x", "/dev/x", "/proc/x", f"{job.base}/x",
               str(script_path("x.py"))]
    code = _TRY + f"""
def write(p):
    with open(p, "a") as f:
        f.write("x")
    return "written"
wrote = {{t: attempt(lambda t=t: write(t)) for t in {targets!r}}}
out = write("/job/out/result.txt")
scratch = write("/job/scratch/work.tmp")
tmp = write("/tmp/{marker}")
print(json.dumps({{"wrote": wrote, "out": out, "scratch": scratch, "tmp": tmp}}))
"""
    got = probe(mode, job, code)
    for target, result in got["wrote"].items():
        assert str(result).startswith("refused"), f"the sandbox could write {target}"
    assert got["out"] == got["scratch"] == got["tmp"] == "written"
    assert (job.out_dir / "result.txt").read_text() == "x"
    assert (job.scratch / "work.tmp").read_text() == "x"
    assert (job.in_dir / "a.txt").read_text() == "input text\n"
    assert sorted(p.name for p in job.base.iterdir()) == ["in", "out", "scratch"]
    assert not Path(f"/tmp/{marker}").exists(), "the task's /tmp is the host's"


@pytest.mark.parametrize("mode", MODES)
def test_a_task_has_no_network_not_even_the_hosts_loopback(mode: str,
                                                          public_tmp: Path) -> None:
    _need(mode)
    job = _job(public_tmp, mode)
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        listener.settimeout(0.5)
        port = listener.getsockname()[1]
        code = _TRY + f"""
import socket
def connect():
    with socket.create_connection(("127.0.0.1", {port}), timeout=3):
        return "connected"
print(json.dumps({{"connect": attempt(connect),
                   "interfaces": [n for _, n in socket.if_nameindex()],
                   "resolve": attempt(lambda: socket.getaddrinfo("debian.org", 80))}}))
"""
        got = probe(mode, job, code)
        with pytest.raises(TimeoutError):
            listener.accept()
    assert got["connect"].startswith("refused"), got
    assert got["resolve"].startswith("refused"), got
    assert got["interfaces"] == ["lo"]


@pytest.mark.parametrize("mode", MODES)
def test_a_task_cannot_make_user_namespaces(mode: str, public_tmp: Path) -> None:
    _need(mode)
    job = _job(public_tmp, mode)
    got = probe(mode, job, """
import ctypes, json
libc = ctypes.CDLL(None, use_errno=True)
results = {}
for name, flag in (("user", 0x10000000), ("net", 0x40000000), ("mount", 0x00020000)):
    rc = libc.unshare(flag)
    results[name] = "refused" if rc != 0 else "made"
print(json.dumps(results))
""")
    assert got == {"user": "refused", "net": "refused", "mount": "refused"}


@pytest.mark.system
def test_a_root_agents_task_runs_as_the_task_user_not_the_masters(tmp_path: Path) -> None:
    need_root("only a root agent switches users")
    job = _job(tmp_path, "agent")
    user = task_user("afarm-task", create=True)
    got = probe("agent", job, """
import json, os
open("/job/out/mine", "w").close()
print(json.dumps({"uid": os.getuid(), "euid": os.geteuid(), "gid": os.getgid(),
                  "groups": os.getgroups(), "status": [l for l in open("/proc/self/status")
                  if l.startswith(("Cap", "NoNewPrivs"))]}))
""")
    assert user.uid != os.getuid() and user.uid != 0
    assert got["uid"] == got["euid"] == user.uid and got["gid"] == user.gid
    assert got["groups"] in ([], [user.gid])
    assert (job.out_dir / "mine").stat().st_uid == user.uid
    caps = {line.split(":")[0]: line.split()[1] for line in got["status"]}
    assert caps["CapEff"] == caps["CapPrm"] == caps["CapAmb"] == "0000000000000000"
    assert caps["NoNewPrivs"] == "1"


@pytest.mark.system
def test_agents_starting_together_all_get_the_task_user_they_make() -> None:
    need_root("only a root agent makes the task user")
    name = f"afarm-t{os.getpid() % 100000}"
    try:
        with ThreadPoolExecutor(4) as pool:
            list(pool.map(lambda _: sandbox_module._add_user(name), range(4)))
        made = pwd.getpwnam(name)
        assert made.pw_uid != 0 and made.pw_shell == "/usr/sbin/nologin"
        assert made.pw_dir == "/nonexistent"
    finally:
        subprocess.run(["userdel", name], capture_output=True, check=False)


@pytest.mark.parametrize("mode", MODES)
def test_limits_bound_memory_processes_and_file_size(mode: str, public_tmp: Path) -> None:
    _need(mode)
    job = _job(public_tmp, mode)
    settings = SandboxSettings(memory_mib=256, processes=64, file_size_mib=1)
    code = _TRY + """
import time
def allocate():
    b = bytearray(512 << 20)
    return "allocated %d" % len(b)
def big_file():
    with open("/job/scratch/big", "wb") as f:
        f.write(b"x" * (2 << 20))
    return "written"
def fork_many():
    pids = []
    try:
        for _ in range(200):
            pid = os.fork()
            if pid == 0:
                time.sleep(2)
                os._exit(0)
            pids.append(pid)
        return "forked %d" % len(pids)
    finally:
        for pid in pids:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
print(json.dumps({"memory": attempt(allocate), "file": attempt(big_file),
                  "fork": attempt(fork_many)}))
"""
    got = probe(mode, job, code, settings)
    assert got["memory"] == "refused: MemoryError"
    assert got["file"] == "refused: OSError"  # EFBIG
    assert got["fork"] == "refused: BlockingIOError"  # EAGAIN
    assert (job.scratch / "big").stat().st_size <= 1 << 20


def test_a_task_cannot_make_the_agent_write_through_a_link_it_left_in_out(
        tmp_path: Path) -> None:
    # Item 1 leaves out/item_000002.out as a link to a file of the agent's user; the agent
    # then opens that name for item 2's stdout. Followed, it would overwrite the file.
    victim = tmp_path / "authorized_keys"
    victim.write_text("restrict,command=... ssh-ed25519 AAAA master\n")
    apps = tmp_path / "apps"
    apps.mkdir()
    (apps / "ln.conf").write_text("kind = command\nexecutable = /bin/ln\n"
                                  "argv = -sf, {item}, {out}/item_000002.out\n")
    agent = AgentProcess(tmp_path / "work", apps)
    try:
        done = agent.request({"op": "run", "job": 1, "task": 1, "attempt": 1, "app": "ln",
                              "kind": "item", "params": {"items": [[1, str(victim)],
                                                                   [2, str(victim)]]},
                              "outputs": [], "timeout": 30})
    finally:
        agent.close()
    assert done["error"] is None, done
    assert victim.read_text() == "restrict,command=... ssh-ed25519 AAAA master\n"


def test_without_bubblewrap_the_agent_refuses_every_task_and_runs_nothing(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sandbox_module, "BWRAP", str(tmp_path / "no-bwrap"))
    marker = tmp_path / "ran"
    apps = tmp_path / "apps"
    apps.mkdir()
    (apps / "touch.conf").write_text("kind = command\nexecutable = /usr/bin/touch\n"
                                     "argv = {item},\ncapture_stdout = false\n")
    replies = io.BytesIO()
    agent = Agent("t", tmp_path / "work", load_applications(apps), replies)
    for task in (1, 2):
        agent.handle({"op": "run", "job": 1, "task": task, "attempt": 1, "app": "touch",
                      "kind": "item", "params": {"items": [[1, str(marker)]]},
                      "outputs": [], "timeout": 30})
    deadline = time.monotonic() + 30
    while replies.getvalue().count(b"\n") < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    done = [json.loads(line) for line in replies.getvalue().splitlines()]
    assert [d["op"] for d in done] == ["done", "done"]
    for d in done:
        assert "bwrap" in d["error"] and "apt install bubblewrap" in d["error"], d
        assert d["exit_code"] is None
    assert not marker.exists()


# -- hole 1 and the demo scene, with real Blender through the real agent -----------------

class AgentProcess:
    def __init__(self, work: Path, apps: Path) -> None:
        self.work = work
        self.proc = subprocess.Popen(  # noqa: S603 - argv list
            [sys.executable, "-m", "afarm.slave.agent", "--name", "t", "--work-dir",
             str(work), "--applications-dir", str(apps)], stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, env=ENV)

    def render(self, task: int, blend: Path, frames: list[int]) -> dict[str, Any]:
        data = blend.read_bytes()
        sha = hashlib.sha256(data).hexdigest()
        (self.work / "cache").mkdir(parents=True, exist_ok=True)
        (self.work / "cache" / sha).write_bytes(data)
        return self.request({
            "op": "run", "job": 1, "task": task, "attempt": 1, "app": "blender",
            "kind": "render", "params": {"format": "PNG", "engine": "", "frames": frames},
            "inputs": [{"name": blend.name, "sha256": sha}],
            "outputs": [f"frame_{f:04d}.png" for f in frames], "timeout": 300})

    def request(self, msg: dict[str, Any]) -> dict[str, Any]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(json.dumps(msg).encode() + b"\n")
        self.proc.stdin.flush()
        while True:
            line = self.proc.stdout.readline()
            assert line, "the agent closed its stdout"
            reply: dict[str, Any] = json.loads(line)
            if reply["op"] == "done":
                return reply

    def close(self) -> None:
        if self.proc.stdin:
            self.proc.stdin.close()
        self.proc.wait(timeout=30)


@pytest.fixture
def agent(tmp_path: Path) -> Iterator[AgentProcess]:
    apps = tmp_path / "apps"
    apps.mkdir()
    blender = shutil.which("blender") or "blender"
    (apps / "blender.conf").write_text(f"kind = blender\nexecutable = {blender}\n")
    a = AgentProcess(tmp_path / "work", apps)
    yield a
    a.close()


def _decode_rgb(path: Path) -> bytes:
    cp = subprocess.run(  # noqa: S603 - argv list
        [FFMPEG, "-nostdin", "-loglevel", "error", "-i", str(path), "-f", "rawvideo",
         "-pix_fmt", "rgb24", "-"], capture_output=True, check=True)
    return cp.stdout


# A plane filling an orthographic camera, emitting an image whose source is a movie at
# `concat:SECRET|LICENSE.txt`: ffmpeg reads both files as one and (.txt) draws the text.
_LEAK_SCENE = """
import bpy, sys
secret, out = sys.argv[sys.argv.index("--") + 1:]
bpy.ops.wm.read_factory_settings(use_empty=True)
scene = bpy.context.scene
scene.render.engine = "CYCLES"
scene.cycles.samples = 1
scene.cycles.device = "CPU"
scene.cycles.use_denoising = False
scene.render.resolution_x = scene.render.resolution_y = 64
scene.render.resolution_percentage = 100
scene.view_settings.view_transform = "Standard"
scene.render.dither_intensity = 0
bpy.ops.mesh.primitive_plane_add(size=2)
plane = bpy.context.object
cam = bpy.data.objects.new("cam", bpy.data.cameras.new("cam"))
cam.data.type = "ORTHO"
cam.data.ortho_scale = 2
cam.location = (0, 0, 1)
scene.collection.objects.link(cam)
scene.camera = cam
mat = bpy.data.materials.new("leak")
mat.use_nodes = True
nodes = mat.node_tree.nodes
nodes.clear()
tex = nodes.new("ShaderNodeTexImage")
emit = nodes.new("ShaderNodeEmission")
output = nodes.new("ShaderNodeOutputMaterial")
image = bpy.data.images.new("leak", 8, 8)
image.source = "MOVIE"
image.filepath = "concat:" + secret + "|/usr/lib/python3.11/LICENSE.txt"
tex.image = image
mat.node_tree.links.new(tex.outputs["Color"], emit.inputs["Color"])
mat.node_tree.links.new(emit.outputs["Emission"], output.inputs["Surface"])
plane.data.materials.append(mat)
bpy.context.preferences.filepaths.save_version = 0
bpy.ops.wm.save_as_mainfile(filepath=out, relative_remap=False)
"""


def _leak_blend(dst: Path, secret: Path) -> Path:
    script = dst / "leak_scene.py"
    script.write_text(_LEAK_SCENE)
    out = dst / f"leak_{secret.name}.blend"
    cp = run_blender(["-b", "-Y", "--factory-startup", "--python-exit-code", "1",
                      "--python", str(script), "--", str(secret), str(out)])
    assert cp.returncode == 0 and out.is_file(), cp.stdout + cp.stderr
    return out


@pytest.fixture
def secrets(tmp_path: Path) -> list[Path]:
    # Two private keys of the master's user: a frame that differs between them leaks.
    made = []
    for name, line in (("key_a", "-----BEGIN OPENSSH PRIVATE KEY-----\n" + "#" * 70),
                       ("key_b", "x")):
        p = tmp_path / "master-home" / ".ssh" / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text((line + "\n") * 12)
        p.chmod(0o600)
        made.append(p)
    return made


@pytest.mark.slow
def test_hole1_a_concat_movie_path_leaks_the_secret_without_the_sandbox(
        tmp_path: Path, secrets: list[Path]) -> None:
    # The attack is real: rendered as the master's user, the frame shows the key.
    frames = []
    for secret in secrets:
        blend = _leak_blend(tmp_path, secret)
        out = tmp_path / f"plain_{secret.name}_####"
        cp = run_blender(["-b", "-Y", str(blend), "-o", str(out), "-F", "PNG", "-f", "1"])
        assert cp.returncode == 0, cp.stdout
        frames.append(_decode_rgb(tmp_path / f"plain_{secret.name}_0001.png"))
    assert frames[0] != frames[1]


@pytest.mark.slow
def test_hole1_a_concat_movie_path_cannot_reach_a_file_outside_the_job_in_the_sandbox(
        tmp_path: Path, secrets: list[Path]) -> None:
    # The sandbox alone, with Blender's own argv and no afarm script: the frame cannot
    # depend on the secret, because the secret is not there.
    frames = []
    for secret in secrets:
        blend = _leak_blend(tmp_path, secret)
        job = _job(tmp_path / secret.name, "agent")
        shutil.copy(blend, job.in_dir / "scene.blend")
        argv = [shutil.which("blender") or "blender", "-b", "-Y",
                str(job.in_dir / "scene.blend"), "-o", str(job.out_dir / "frame_####"), "-F",
                "PNG", "-f", "1"]
        cp = subprocess.run(Sandbox().wrap(argv, *job.dirs), capture_output=True,  # noqa: S603
                            text=True, timeout=300, check=False, cwd=job.scratch)
        assert cp.returncode == 0, cp.stdout + cp.stderr
        frames.append(_decode_rgb(job.out_dir / "frame_0001.png"))
    assert frames[0] == frames[1]


@pytest.mark.slow
def test_hole1_through_the_agent_the_secret_never_reaches_a_frame_or_the_log(
        tmp_path: Path, secrets: list[Path], agent: AgentProcess) -> None:
    frames = []
    for task, secret in enumerate(secrets):
        done = agent.render(task, _leak_blend(tmp_path, secret), [1])
        assert "OPENSSH" not in json.dumps(done)
        if done["error"] is None:
            frames.append(_decode_rgb(agent.work / done["out_dir"] / "frame_0001.png"))
        else:
            # afarm's own render_prep.py may refuse the path first (defence in depth).
            assert not done["outputs"], done
    assert len(frames) in (0, 2)
    assert len(set(frames)) <= 1


@pytest.mark.slow
def test_the_demo_scene_renders_bit_identical_in_the_sandbox(tmp_path: Path,
                                                             agent: AgentProcess) -> None:
    scene = make_scene(tmp_path)
    done = agent.render(1, scene, [1, 3])
    assert done["error"] is None, done
    # The same argv the agent built, run without the sandbox.
    ws = Workspace(tmp_path / "plain-task")
    ws.create()
    blend = ws.link(Input(scene.name, scene))
    app = BlenderApp("blender", {"executable": "/usr/bin/blender"})
    argv = app.argv("render", {"format": "PNG", "engine": "", "frames": [1, 3]},
                    ws.context([blend], []))
    cp = subprocess.run(argv, cwd=ws.scratch, capture_output=True, text=True, check=False)
    assert cp.returncode == 0, cp.stdout
    plain = ws.out_dir
    for frame in ("frame_0001.png", "frame_0003.png"):
        sandboxed_frame = agent.work / done["out_dir"] / frame
        assert _decode_rgb(sandboxed_frame) == _decode_rgb(plain / frame), frame
