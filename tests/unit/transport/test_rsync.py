# SPDX-License-Identifier: MIT
"""The rsync/ssh argv the master runs, and what each way rsync can fail becomes."""

import os
import shutil
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from afarm.transport.base import AuthFailure, HostUnreachable, TransportError
from afarm.transport.rsync import (
    PARTIAL_DIR,
    SSHTarget,
    control_exit_argv,
    control_path,
    raise_for_exit,
    rsync_argv,
    ssh_command,
    transferred_bytes,
)
from tests.platform import need_root


@pytest.fixture
def ctl() -> Iterator[Path]:
    # pytest's tmp_path is too long for a unix socket path below it.
    base = Path(tempfile.mkdtemp(prefix="afc-"))
    yield base / "ctl"
    shutil.rmtree(base)


def _target(tmp_path: Path, **kw: object) -> SSHTarget:
    args: dict[str, object] = dict(user="afarm", host="10.0.0.5", port=2222,
                                   key=tmp_path / "id_ed25519",
                                   known_hosts=tmp_path / "known_hosts",
                                   control_dir=tmp_path / "ctl", connect_timeout=7)
    args.update(kw)
    return SSHTarget(**args)  # type: ignore[arg-type]


def _ssh_options(argv: list[str]) -> list[str]:
    return [argv[i + 1] for i, a in enumerate(argv) if a == "-o"]


def test_put_argv_is_a_list_ending_in_the_local_file_and_the_slave_dir(tmp_path: Path,
                                                                        ctl: Path) -> None:
    argv = rsync_argv(_target(tmp_path, control_dir=ctl), "put", tmp_path / "in.blend",
                      "cache/")
    assert isinstance(argv, list) and all(isinstance(a, str) for a in argv)
    assert argv[0] == "rsync"
    assert argv[-3:] == ["--", str(tmp_path / "in.blend"), "afarm@10.0.0.5:cache/"]
    assert "--times" in argv and "--stats" in argv
    assert "--mkpath" not in argv  # the slave's cache dir always exists
    assert f"--partial-dir={PARTIAL_DIR}" in argv
    assert "--checksum" not in argv


def test_get_argv_reads_the_slave_file_into_the_local_path(tmp_path: Path, ctl: Path) -> None:
    argv = rsync_argv(_target(tmp_path, control_dir=ctl), "get", tmp_path / "f.png",
                      "jobs/3/17-1/out/f.png")
    assert argv[-3:] == ["--", "afarm@10.0.0.5:jobs/3/17-1/out/f.png", str(tmp_path / "f.png")]
    assert "--mkpath" not in argv


def test_a_get_with_a_limit_makes_the_receiver_skip_larger_files(tmp_path: Path,
                                                                ctl: Path) -> None:
    argv = rsync_argv(_target(tmp_path, control_dir=ctl), "get", tmp_path / "f.png",
                      "jobs/3/17-1/out/f.png", max_size=4096)
    assert "--max-size=4096" in argv and argv.index("--max-size=4096") < argv.index("--")


def test_a_put_must_name_the_cache_dir(tmp_path: Path, ctl: Path) -> None:
    for remote in ["cache/x", "./", "apps/blender/", "jobs/"]:
        with pytest.raises(ValueError):
            rsync_argv(_target(tmp_path, control_dir=ctl), "put", tmp_path / "x", remote)


def test_ssh_never_prompts_and_trusts_only_the_masters_known_hosts(tmp_path: Path,
                                                                   ctl: Path) -> None:
    argv = rsync_argv(_target(tmp_path, control_dir=ctl), "get", tmp_path / "f", "f")
    rsh = argv[argv.index("-e") + 1].split(" ")
    assert rsh[:3] == ["ssh", "-F", "/dev/null"]
    opts = _ssh_options(rsh)
    for want in ("BatchMode=yes", "StrictHostKeyChecking=yes", "IdentitiesOnly=yes",
                 f"UserKnownHostsFile={tmp_path / 'known_hosts'}",
                 "GlobalKnownHostsFile=/dev/null", "ConnectTimeout=7",
                 "ServerAliveInterval=1", "ServerAliveCountMax=3", "ControlMaster=auto",
                 "ControlPersist=60"):
        assert want in opts, want
    path = control_path(_target(tmp_path, control_dir=ctl))
    assert f"ControlPath={path}" in opts
    assert path.parent == ctl and len(path.name) == 16
    assert rsh[rsh.index("-i") + 1] == str(tmp_path / "id_ed25519")
    assert rsh[rsh.index("-p") + 1] == "2222"
    assert not any(o.startswith("StrictHostKeyChecking=no") or "accept-new" in o for o in opts)


def test_control_dir_is_created_0700(tmp_path: Path, ctl: Path) -> None:
    ssh_command(_target(tmp_path, control_dir=ctl))
    st = ctl.stat()
    assert stat.S_IMODE(st.st_mode) == 0o700
    assert st.st_uid == os.geteuid()


def test_control_dir_with_loose_permissions_is_tightened(tmp_path: Path, ctl: Path) -> None:
    ctl.mkdir(mode=0o755)
    ctl.chmod(0o755)
    ssh_command(_target(tmp_path, control_dir=ctl))
    assert stat.S_IMODE(ctl.stat().st_mode) == 0o700


def test_control_dir_of_another_user_is_refused(tmp_path: Path, ctl: Path) -> None:
    need_root("only root can give the dir to another user")
    ctl.mkdir(mode=0o700)
    os.chown(ctl, 65534, 65534)
    with pytest.raises(TransportError, match="owned by uid"):
        ssh_command(_target(tmp_path, control_dir=ctl))


def test_control_dir_too_long_for_a_socket_is_refused(tmp_path: Path) -> None:
    with pytest.raises(TransportError, match="too long"):
        ssh_command(_target(tmp_path, control_dir=Path("/var/lib/") / ("d" * 70)))


def test_each_slave_gets_its_own_control_socket(tmp_path: Path, ctl: Path) -> None:
    paths = {control_path(_target(tmp_path, control_dir=ctl, **kw))  # type: ignore[arg-type]
             for kw in ({}, {"port": 22}, {"user": "other"}, {"host": "10.0.0.6"})}
    assert len(paths) == 4


@pytest.mark.parametrize("field,value", [
    ("key", "/var/lib/afarm master/id_ed25519"),
    ("known_hosts", "/var/lib/afarm/known\thosts"),
    ("key", "/var/lib/it's/key"),
    ("key", '/var/lib/"q"/key'),
    ("key", "/var/lib/back\\slash/key"),
])
def test_paths_rsync_would_split_are_refused(tmp_path: Path, ctl: Path, field: str,
                                            value: str) -> None:
    with pytest.raises(TransportError, match="white space"):
        rsync_argv(_target(tmp_path, control_dir=ctl, **{field: Path(value)}), "get",
                   tmp_path / "f", "f")


@pytest.mark.parametrize("field,value", [("host", "-oProxyCommand=touch /tmp/x"),
                                         ("host", "a b"), ("user", "-lroot"), ("user", "")])
def test_user_and_host_cannot_become_ssh_options(tmp_path: Path, ctl: Path, field: str,
                                                 value: str) -> None:
    with pytest.raises(TransportError, match="not a plain user and host"):
        rsync_argv(_target(tmp_path, control_dir=ctl, **{field: value}), "get",
                   tmp_path / "f", "f")


def test_ipv6_hosts_are_bracketed_for_rsync(tmp_path: Path, ctl: Path) -> None:
    argv = rsync_argv(_target(tmp_path, control_dir=ctl, host="fd00::5"), "get",
                      tmp_path / "f", "a/f")
    assert argv[-2] == "afarm@[fd00::5]:a/f"


def test_control_exit_stops_the_same_socket(tmp_path: Path, ctl: Path) -> None:
    argv = control_exit_argv(_target(tmp_path, control_dir=ctl))
    assert argv[-3:] == ["-O", "exit", "afarm@10.0.0.5"]
    assert f"ControlPath={control_path(_target(tmp_path, control_dir=ctl))}" in \
        _ssh_options(argv)


STATS = """
Number of files: 1 (reg: 1)
Total file size: 52,428,800 bytes
Total bytes sent: 52,441,690
Total bytes received: 35

sent 52,441,690 bytes  received 35 bytes  104,883,450.00 bytes/sec
"""


def test_bytes_come_from_stats_in_either_direction() -> None:
    assert transferred_bytes(STATS, "put") == 52_441_690
    assert transferred_bytes(STATS, "get") == 35
    plain = "Total bytes sent: 42\nTotal bytes received: 16\n"
    assert transferred_bytes(plain, "put") == 42


def test_missing_stats_is_an_error() -> None:
    with pytest.raises(TransportError, match="--stats"):
        transferred_bytes("sent 1 bytes", "put")


def _raise(tmp_path: Path, code: int, stderr: str, direction: str = "put") -> None:
    raise_for_exit(code, stderr, direction=direction,  # type: ignore[arg-type]
                   slave="s1", target=_target(tmp_path, control_dir=ctl), remote="cache/",
                   local=tmp_path / "f")


def test_success_raises_nothing(tmp_path: Path) -> None:
    _raise(tmp_path, 0, "")


@pytest.mark.parametrize("code,stderr", [
    (255, "ssh: connect to host 10.0.0.5 port 2222: Connection refused\r\n"
          "rsync: connection unexpectedly closed (0 bytes received so far) [sender]\n"),
    (255, "ssh: connect to host 10.0.0.5 port 2222: Connection timed out\r\n"),
    (12, "rsync: connection unexpectedly closed (3 bytes received so far) [sender]\n"),
    (10, "rsync: read error: Connection reset by peer (104)\n"),
    (30, "[sender] io timeout after 60 seconds -- exiting\n"),
    (35, "timeout waiting for daemon connection\n"),
])
def test_link_failures_are_host_unreachable(tmp_path: Path, code: int, stderr: str) -> None:
    with pytest.raises(HostUnreachable, match="s1"):
        _raise(tmp_path, code, stderr)


def test_changed_host_key_is_auth_failure_telling_how_to_accept_it(tmp_path: Path) -> None:
    stderr = ("@@@@@@@@@@@\n@    WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED!     @\n"
              "Host key verification failed.\r\n"
              "rsync: connection unexpectedly closed (0 bytes received so far) [sender]\n")
    with pytest.raises(AuthFailure) as exc:
        _raise(tmp_path, 255, stderr)
    msg = str(exc.value)
    assert "ssh-keyscan -p 2222 -t ed25519 10.0.0.5" in msg
    assert f"ssh-keygen -R '[10.0.0.5]:2222' -f {tmp_path / 'known_hosts'}" in msg
    assert str(tmp_path / "known_hosts") in msg


def test_unknown_host_key_is_auth_failure(tmp_path: Path) -> None:
    stderr = ("No ED25519 host key is known for [10.0.0.5]:2222 and you have requested "
              "strict checking.\r\nHost key verification failed.\r\n")
    with pytest.raises(AuthFailure, match="ssh-keyscan"):
        _raise(tmp_path, 255, stderr)


def test_refused_key_is_auth_failure(tmp_path: Path) -> None:
    with pytest.raises(AuthFailure, match="authorized_keys"):
        _raise(tmp_path, 255, "afarm@10.0.0.5: Permission denied (publickey).\r\n")


@pytest.mark.parametrize("code", [11, 12, 23])
def test_full_slave_disk_says_so_and_is_not_unreachable(tmp_path: Path, code: int) -> None:
    stderr = ("rsync: [receiver] write failed on \"/proc/self/fd/4/x\": No space left on "
              "device (28)\nrsync error: error in file IO (code 11) at receiver.c(381)\n")
    with pytest.raises(TransportError) as exc:
        _raise(tmp_path, code, stderr)
    assert not isinstance(exc.value, HostUnreachable)
    assert "slave's disk is full" in str(exc.value)


def test_full_master_disk_on_get_blames_the_master(tmp_path: Path) -> None:
    with pytest.raises(TransportError, match="master's disk is full"):
        _raise(tmp_path, 11, "rsync: write failed on f: No space left on device (28)\n",
               direction="get")


def test_refusal_by_the_slave_shell_is_not_retried_as_unreachable(tmp_path: Path) -> None:
    stderr = ("afarm-slave-shell[s1]: refused 'rsync --server ...' from 10.0.0.1: rsync: "
              "option '--delete' is not one afarm's put sends\n"
              "rsync: connection unexpectedly closed (0 bytes received so far) [sender]\n")
    with pytest.raises(TransportError) as exc:
        _raise(tmp_path, 12, stderr)
    assert not isinstance(exc.value, HostUnreachable)
    assert "refused" in str(exc.value)


def test_missing_file_on_get_is_a_plain_error(tmp_path: Path) -> None:
    stderr = ("/usr/bin/rrsync error: post-realpath open failed (race detected): "
              "jobs/1/x No such file or directory\n")
    with pytest.raises(TransportError, match="does not exist") as exc:
        _raise(tmp_path, 12, stderr, direction="get")
    assert not isinstance(exc.value, HostUnreachable)


@pytest.mark.parametrize("code,words", [(23, "not transferred"), (24, "vanished"),
                                        (127, "not installed"), (1, "usage"),
                                        (99, "unknown"), (-9, "signal 9")])
def test_other_codes_are_transport_errors(tmp_path: Path, code: int, words: str) -> None:
    with pytest.raises(TransportError, match=words) as exc:
        _raise(tmp_path, code, "rsync error: something\n")
    assert not isinstance(exc.value, HostUnreachable | AuthFailure)
