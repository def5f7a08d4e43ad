# SPDX-License-Identifier: MIT
"""The sandbox's argv builder and settings, without running bubblewrap."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from afarm.runner import sandbox as sb
from afarm.runner.sandbox import (
    BWRAP,
    PRLIMIT,
    SETPRIV,
    Plan,
    Sandbox,
    SandboxError,
    SandboxSettings,
    TaskUser,
    build_argv,
    rewrite,
    task_user,
)

TASK = Path("/w/jobs/1/0-1")
IN, OUT, SCRATCH = TASK / "in", TASK / "out", TASK / "scratch"
USER = TaskUser("afarm-task", 990, 991)


def plan(**kw: object) -> Plan:
    base: dict[str, object] = {"memory_bytes": 1 << 30, "processes": 100,
                               "file_size_bytes": 1 << 20, "tmp_bytes": 1 << 24, "user": None}
    return Plan(**{**base, **kw})  # type: ignore[arg-type]


def bwrap_part(argv: list[str]) -> list[str]:
    """The outer bwrap's options (a root agent's argv has a second bwrap after setpriv)."""
    end = argv.index(SETPRIV) if SETPRIV in argv else len(argv)
    return argv[argv.index(BWRAP):end]


def pairs(argv: list[str], flag: str) -> list[tuple[str, str]]:
    return [(argv[i + 1], argv[i + 2]) for i, a in enumerate(argv) if a == flag]


def program(argv: list[str]) -> list[str]:
    return argv[len(argv) - 1 - argv[::-1].index("--") + 1:]


def test_limits_come_first_from_prlimit_so_they_bind_bwrap_and_the_task() -> None:
    argv = build_argv(["/usr/bin/true"], IN, OUT, SCRATCH, plan())
    assert argv[:6] == [PRLIMIT, f"--as={1 << 30}", "--nproc=100", f"--fsize={1 << 20}",
                        "--core=0", "--"]
    assert argv[6] == BWRAP


def test_a_memory_limit_of_zero_sets_no_address_space_limit() -> None:
    argv = build_argv(["/usr/bin/true"], IN, OUT, SCRATCH, plan(memory_bytes=0))
    assert not any(a.startswith("--as=") for a in argv)


def test_an_unprivileged_agent_gets_every_namespace_and_no_nested_user_namespaces() -> None:
    argv = bwrap_part(build_argv(["/usr/bin/true"], IN, OUT, SCRATCH, plan()))
    for flag in ("--unshare-all", "--unshare-user", "--disable-userns", "--die-with-parent",
                 "--new-session", "--clearenv"):
        assert flag in argv
    assert SETPRIV not in argv and "--share-net" not in argv


def test_a_root_agent_drops_to_the_task_user_with_setpriv_and_keeps_no_network() -> None:
    full = build_argv(["/usr/bin/true"], IN, OUT, SCRATCH, plan(user=USER))
    argv = bwrap_part(full)
    assert "--unshare-net" in argv and "--unshare-pid" in argv and "--unshare-all" not in argv
    caps = [argv[i + 1] for i, a in enumerate(argv) if a in ("--cap-drop", "--cap-add")]
    assert caps[0] == "ALL" and set(caps[1:]) == {"CAP_SETUID", "CAP_SETGID",
                                                  "CAP_DAC_OVERRIDE"}
    tail = full[full.index(SETPRIV):]
    assert tail == [SETPRIV, "--reuid=990", "--regid=991", "--clear-groups", "--inh-caps=-all",
                    "--", BWRAP, "--unshare-user", "--disable-userns", "--die-with-parent",
                    "--bind", "/", "/", "--dev", "/dev", "--perms", "1777", "--size",
                    tail[tail.index("--size") + 1], "--tmpfs", "/dev/shm", "--remount-ro",
                    "/dev", "--chdir", "/job/scratch", "--", "/usr/bin/true"]


def test_the_job_dirs_are_mounted_at_fixed_paths_only_out_and_scratch_writable() -> None:
    argv = build_argv(["/usr/bin/true"], IN, OUT, SCRATCH, plan())
    assert pairs(argv, "--ro-bind")[:1] == [("/usr", "/usr")]
    assert (str(IN), "/job/in") in pairs(argv, "--ro-bind")
    assert pairs(argv, "--bind") == [(str(OUT), "/job/out"), (str(SCRATCH), "/job/scratch")]
    assert "/" in [argv[i + 1] for i, a in enumerate(argv) if a == "--remount-ro"]
    assert argv[argv.index("--chdir") + 1] == "/job/scratch"


def test_only_a_fixed_environment_reaches_the_task() -> None:
    argv = build_argv(["/usr/bin/true"], IN, OUT, SCRATCH, plan())
    env = dict(pairs(argv, "--setenv"))
    assert env == {"PATH": "/usr/bin:/bin", "HOME": "/job/scratch", "TMPDIR": "/job/scratch",
                   "LANG": "C.UTF-8"}
    assert argv.index("--clearenv") < argv.index("--setenv")


def test_of_etc_only_alternatives_the_loader_cache_and_localtime_are_visible() -> None:
    argv = build_argv(["/usr/bin/true"], IN, OUT, SCRATCH, plan())
    etc = [src for src, _ in pairs(argv, "--ro-bind-try") if src.startswith("/etc")]
    assert etc == ["/etc/alternatives", "/etc/ld.so.cache", "/etc/localtime"]
    assert not any(a in ("/home", "/root", "/var", "/etc") for a, _ in pairs(argv, "--ro-bind"))


def test_tmp_and_dev_shm_are_small_private_tmpfs_and_dev_is_read_only() -> None:
    argv = build_argv(["/usr/bin/true"], IN, OUT, SCRATCH, plan())
    tmpfs = [argv[i + 1] for i, a in enumerate(argv) if a == "--tmpfs"]
    assert tmpfs == ["/dev/shm", "/tmp"]
    assert [argv[i + 1] for i, a in enumerate(argv) if a == "--size"] == [str(1 << 24)] * 2
    assert "/dev" in [argv[i + 1] for i, a in enumerate(argv) if a == "--remount-ro"]


def test_paths_of_the_job_in_argv_are_rewritten_to_the_sandbox_paths() -> None:
    argv = build_argv(["/usr/bin/blender", "-b", str(IN / "scene.blend"), "-o",
                       str(OUT / "frame_####"), f"--out={OUT}", str(OUT) + "2/x", str(SCRATCH)],
                      IN, OUT, SCRATCH, plan())
    assert program(argv) == ["/usr/bin/blender", "-b", "/job/in/scene.blend", "-o",
                             "/job/out/frame_####", "--out=/job/out", str(OUT) + "2/x",
                             "/job/scratch"]


def test_rewrite_prefers_the_longest_host_path() -> None:
    assert rewrite(["/a/b/c/d"], {"/a/b": "/x", "/a/b/c": "/y"}) == ["/y/d"]
    assert rewrite(["/a/bc"], {"/a/b": "/x"}) == ["/a/bc"]


def test_read_only_dirs_keep_their_path_and_get_walkable_parents() -> None:
    argv = build_argv(["/opt/blender/blender"], IN, OUT, SCRATCH,
                      plan(read_only=("/opt/blender", "/srv/afarm/scripts")))
    assert ("/opt/blender", "/opt/blender") in pairs(argv, "--ro-bind")
    dirs = [argv[i + 1] for i, a in enumerate(argv) if a == "--dir"]
    assert dirs == ["/etc", "/job", "/opt", "/srv", "/srv/afarm"]
    assert all(argv[i - 1] == "0755" for i, a in enumerate(argv) if a == "--dir")


def test_gpu_nodes_are_passed_only_when_planned() -> None:
    without = build_argv(["/usr/bin/true"], IN, OUT, SCRATCH, plan())
    assert "--dev-bind" not in without
    argv = build_argv(["/usr/bin/true"], IN, OUT, SCRATCH,
                      plan(devices=("/dev/dri",), gpu_read=("/sys/dev/char",)))
    assert pairs(argv, "--dev-bind") == [("/dev/dri", "/dev/dri")]
    assert ("/sys/dev/char", "/sys/dev/char") in pairs(argv, "--ro-bind-try")


def test_the_plan_skips_gpu_nodes_unless_asked_for(monkeypatch: pytest.MonkeyPatch,
                                                   tmp_path: Path) -> None:
    node = tmp_path / "card0"
    node.touch()
    monkeypatch.setattr(sb, "_GPU_NODES", (str(node),))
    assert Sandbox(SandboxSettings()).plan(["/usr/bin/true"]).devices == ()
    assert Sandbox(SandboxSettings(gpu=True)).plan(["/usr/bin/true"]).devices == (str(node),)


def test_the_plan_binds_a_program_outside_usr_but_not_one_inside(tmp_path: Path) -> None:
    app = tmp_path / "blender-4.2" / "blender"
    app.parent.mkdir()
    app.touch()
    outside = Sandbox().plan([str(app)])
    assert str(app.parent.resolve()) in outside.read_only
    inside = Sandbox().plan(["/bin/sh"])  # /bin -> /usr/bin on a merged system
    assert not any(p.startswith("/usr") for p in inside.read_only)


def test_the_plan_refuses_to_show_the_whole_file_system() -> None:
    with pytest.raises(SandboxError, match="whole file system"):
        Sandbox(SandboxSettings(read_only_paths=("/",))).plan(["/usr/bin/true"])


def test_memory_zero_means_memory_and_swap_plus_room_for_reservations() -> None:
    mem = Sandbox().plan(["/usr/bin/true"]).memory_bytes
    ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    assert mem == sb.default_memory()
    assert ram + (1 << 30) < mem < ram * 4 + (64 << 30)
    assert Sandbox(SandboxSettings(memory_mib=512)).plan([]).memory_bytes == 512 << 20


def test_a_missing_bubblewrap_is_reported_with_the_fix_and_no_task_runs(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(sb, "BWRAP", str(tmp_path / "bwrap"))
    sandbox = Sandbox()
    reason = sandbox.check()
    assert reason is not None and "bwrap" in reason and "apt install bubblewrap" in reason
    with pytest.raises(SandboxError, match="apt install bubblewrap"):
        sandbox.wrap(["/usr/bin/true"], tmp_path, tmp_path, tmp_path)


def test_a_failed_check_is_tried_again_later_so_installing_bubblewrap_helps(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(sb, "BWRAP", str(tmp_path / "bwrap"))
    sandbox = Sandbox()
    assert sandbox.check() is not None
    monkeypatch.setattr(sb, "BWRAP", "/usr/bin/bwrap")
    assert sandbox.check() is not None  # remembered for a while: no probe per task
    monkeypatch.setattr(sb, "RECHECK", 0.0)
    assert sandbox.check() is None


def test_a_bubblewrap_that_cannot_start_is_reported(monkeypatch: pytest.MonkeyPatch,
                                                    tmp_path: Path) -> None:
    fake = tmp_path / "bwrap"
    fake.write_text("#!/bin/sh\necho 'bwrap: No permissions to create new namespace' >&2\n"
                    "exit 1\n")
    fake.chmod(0o755)
    monkeypatch.setattr(sb, "BWRAP", str(fake))
    reason = Sandbox().check()
    assert reason is not None and "No permissions to create new namespace" in reason
    assert "user.max_user_namespaces" in reason


def test_settings_come_from_a_config_section_and_survive_json() -> None:
    s = SandboxSettings.from_config({"user": "render", "memory_mib": 2048, "gpu": True,
                                     "read_only_paths": ["/opt/blender"]})
    assert s.user == "render" and s.memory_mib == 2048 and s.gpu
    assert s.read_only_paths == ("/opt/blender",) and s.processes == 4096
    assert SandboxSettings.from_json(s.to_json()) == s


@pytest.mark.parametrize(("section", "needle"), [
    ({"memroy_mib": 1}, "unknown sandbox setting 'memroy_mib'"),
    ({"memory_mib": -1}, "memory_mib must be a whole number"),
    ({"processes": True}, "processes must be a whole number"),
    ({"gpu": "yes"}, "gpu must be a bool"),
    ({"read_only_paths": ["relative/dir"]}, "absolute paths"),
    ({"helper": "run/sock"}, "helper must be auto, empty or the absolute path"),
])
def test_bad_settings_are_refused_naming_the_key(section: dict[str, object],
                                                 needle: str) -> None:
    with pytest.raises(ValueError, match=needle):
        SandboxSettings.from_config(section)


def test_the_task_user_is_never_root() -> None:
    with pytest.raises(SandboxError, match="not root"):
        task_user("root", create=False)


def test_a_missing_configured_task_user_names_the_command_that_makes_it() -> None:
    with pytest.raises(SandboxError, match="adduser --system --group"):
        task_user("afarm-no-such-user", create=True)


def test_an_output_file_replaces_what_the_task_left_under_its_name(tmp_path: Path) -> None:
    victim = tmp_path / "authorized_keys"
    victim.write_text("precious\n")
    out = tmp_path / "out"
    out.mkdir()
    (out / "item_000002.out").symlink_to(victim)
    os.mkfifo(out / "item_000003.out")
    for name in ("item_000002.out", "item_000003.out", "item_000004.out"):
        with sb.open_output(out / name) as f:
            f.write(b"stdout\n")
        assert (out / name).is_file() and not (out / name).is_symlink()
        assert (out / name).read_bytes() == b"stdout\n"
    assert victim.read_text() == "precious\n"


def _unprivileged(settings: SandboxSettings) -> Sandbox:
    sandbox = Sandbox(settings)
    sandbox.privileged = False  # the packaged master, whatever runs this test
    return sandbox


def test_auto_hands_tasks_to_the_helper_only_when_its_socket_may_be_opened(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    sock = tmp_path / "socket"
    monkeypatch.setattr(sb, "HELPER_SOCKET", str(sock))
    assert _unprivileged(SandboxSettings()).helper is None  # no socket: bubblewrap itself
    sock.write_text("")
    assert _unprivileged(SandboxSettings()).helper == str(sock)
    assert _unprivileged(SandboxSettings(helper="")).helper is None
    assert _unprivileged(SandboxSettings(helper="/run/x")).helper == "/run/x"
    root = Sandbox(SandboxSettings(helper="/run/x"))
    root.privileged = True
    assert root.helper is None  # root runs the sandbox itself


def test_with_a_helper_the_master_runs_only_the_small_client(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    sandbox = _unprivileged(SandboxSettings(helper=str(tmp_path / "socket"), tmp_mib=8))
    monkeypatch.setattr(sandbox, "check", lambda: None)
    argv = sandbox.wrap(["/usr/bin/ffmpeg", "-i", f"{IN}/x"], IN, OUT, SCRATCH)
    assert argv[1:4] == ["-I", "-S", sb.CLIENT]
    assert argv[4] == str(tmp_path / "socket")
    assert SandboxSettings.from_json(argv[5]).tmp_mib == 8
    assert argv[6:] == [str(IN), str(OUT), str(SCRATCH), "--", "/usr/bin/ffmpeg", "-i",
                        f"{IN}/x"]


def test_an_unreachable_helper_is_reported_with_the_fix(tmp_path: Path) -> None:
    reason = _unprivileged(SandboxSettings(helper=str(tmp_path / "socket"))).check()
    assert reason is not None and "systemctl enable --now afarm-sandbox" in reason


def test_a_task_pinned_to_a_gpu_gets_its_nodes_and_sees_only_that_device(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    node = tmp_path / "nvidia1"
    node.touch()
    monkeypatch.setattr(sb, "_GPU_NODES", (str(node),))
    box = Sandbox(SandboxSettings())  # [sandbox] gpu = no: a GPU task still gets its GPU
    assert box.pinned(None) is box
    p = box.pinned(1).plan(["/usr/bin/true"])
    assert p.devices == (str(node),)
    assert p.env == (("CUDA_VISIBLE_DEVICES", "1"), ("HIP_VISIBLE_DEVICES", "1"))
    assert box.plan(["/usr/bin/true"]).env == ()  # the agent's own sandbox is unchanged
    argv = bwrap_part(build_argv(["/usr/bin/true"], IN, OUT, SCRATCH, p))
    assert ("CUDA_VISIBLE_DEVICES", "1") in pairs(argv, "--setenv")
    assert ("HIP_VISIBLE_DEVICES", "1") in pairs(argv, "--setenv")
    assert argv.index("--clearenv") < argv.index("CUDA_VISIBLE_DEVICES")
    # The helper gets the pin with the settings it is sent.
    assert SandboxSettings.from_json(box.pinned(1).settings.to_json()).gpu_pin == "1"


@pytest.mark.parametrize("pin", ["-1", "64", "0 1", "x"])
def test_a_gpu_pin_that_is_not_a_device_number_is_refused(pin: str) -> None:
    with pytest.raises(ValueError, match="gpu_pin"):
        SandboxSettings.from_config({"gpu_pin": pin})
