# SPDX-License-Identifier: MIT
"""afarm-slave-shell as the forced command of the master's key on real sshd hosts: someone
holding that key gets the verbs serve, version and afarm's own rsync, and nothing else."""

from __future__ import annotations

import json
import os
import shlex
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from afarm import __version__
from afarm.transport.rsync import SSHTarget, rsync_argv
from afarm.transport.ssh import SSHTransport
from tests.readable_src import readable_src
from tests.system.testnet import Host, TestNet

pytestmark = pytest.mark.system

REPO = Path(__file__).resolve().parents[2]


def shell_wrapper(h: Host, conf: Path) -> Path:
    """Test scaffolding standing in for the installed /usr/bin/afarm-slave-shell: the slave
    user imports afarm from this checkout. Root-owned in a root-owned dir, so the slave
    user cannot change its own forced command. Like the installed entry point (python3 -I)
    it reads nothing from the environment or the user's home: the checkout is put on
    sys.path by the code itself, not by PYTHONPATH."""
    wrapper = h.dir / "afarm-slave-shell"
    code = (f"import sys; sys.path.insert(0, {str(readable_src())!r}); "
            "from afarm.slave.shell import main; sys.exit(main())")
    wrapper.write_text(
        "#!/bin/sh\n"
        f'exec /usr/bin/python3 -I -B -c {shlex.quote(code)} --config {shlex.quote(str(conf))}'
        ' "$@"\n')
    wrapper.chmod(0o755)
    return wrapper


def install_shell(net: TestNet, h: Host, *, door: bool = True) -> Path:
    """Make afarm-slave-shell (from this checkout) the forced command of the master's key
    on ``h``, with a slave.conf of the host's own dirs; returns the wrapper. ``door``: also
    the afarm-slave package's sshd drop-in (ForceCommand, no forwarding, no subsystems)."""
    apps = h.dir / "applications.d"
    apps.mkdir(exist_ok=True)
    conf = h.dir / "slave.conf"
    conf.write_text(f"[slave]\nname = {h.name}\nwork_dir = {h.workdir}\n"
                    f"applications_dir = {apps}\n")
    conf.chmod(0o644)
    wrapper = shell_wrapper(h, conf)
    net.authorize(h, f'restrict,command="{wrapper}"')
    if door:
        net.slave_door(h, wrapper)
    return wrapper


def transport_for(net: TestNet, h: Host, **kwargs: float) -> SSHTransport:
    """The transport exactly as master/slaves.py builds it, for host ``h``."""
    return SSHTransport(name=h.name, host=h.addr, port=h.port, user=h.user,
                        key=net.client_key, known_hosts=net.known_hosts,
                        work_dir=str(h.workdir), control_dir=net.base_dir / "ctl",
                        **kwargs)  # type: ignore[arg-type]


def target_for(net: TestNet, h: Host) -> SSHTarget:
    return SSHTarget(user=h.user, host=h.addr, port=h.port, key=net.client_key,
                     known_hosts=net.known_hosts, control_dir=net.base_dir / "ctl",
                     connect_timeout=5)


@pytest.fixture(scope="module")
def shells(testnet: TestNet) -> Iterator[TestNet]:
    for h in testnet:
        install_shell(testnet, h)
    yield testnet
    for h in testnet:
        testnet.slave_door(h, None)
        testnet.authorize(h)


def _ssh(argv: list[str], input: str | None = None, timeout: float = 30
         ) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, input=input, capture_output=True, text=True,  # noqa: S603
                          timeout=timeout, check=False,
                          stdin=None if input is not None else subprocess.DEVNULL)


def _assert_refused(cp: subprocess.CompletedProcess[str], why: str = "") -> None:
    assert cp.returncode == 1, (cp.returncode, cp.stdout, cp.stderr)
    assert "refused" in cp.stderr and why in cp.stderr, cp.stderr
    assert cp.stdout == ""


def test_version_and_serve_work(shells: TestNet) -> None:
    h = shells[0]
    cp = shells.ssh(h, "version")
    assert (cp.returncode, cp.stdout) == (0, f"{__version__}\n"), cp.stderr
    cp = shells.ssh(h, "serve", input='{"op":"ping","id":7}\n{"op":"hello","id":8,"protocol":2}\n')
    assert cp.returncode == 0, cp.stderr
    replies = [json.loads(line) for line in cp.stdout.splitlines()]
    assert [r["op"] for r in replies] == ["pong", "hello"]
    assert replies[1]["name"] == h.name and replies[1]["version"] == __version__


def test_interactive_login_is_refused(shells: TestNet) -> None:
    h = shells[0]
    cp = _ssh(shells.ssh_argv(h))
    _assert_refused(cp, "interactive logins are not allowed")
    # Insisting on a terminal: restrict refuses the pty and ssh -tt gives up (255).
    cp = _ssh(shells.ssh_argv(h, options=["-tt"]), input="id\nexit\n")
    assert cp.returncode in (1, 255)
    assert "PTY allocation request failed" in cp.stderr
    assert "uid=" not in cp.stdout


@pytest.mark.parametrize("command", [
    "ls /",
    "cat /etc/shadow",
    "id",
    "sh -c id",
    "/bin/sh -i",
    "python3 -c 'import os; os.system(\"id\")'",
    "version; id",
    "version && cat /etc/shadow",
    "version | id",
    "serve $(id)",
    "serve `id`",
    "version > /tmp/afarm-shell-test-planted",
    "scp -t /tmp",
    "rsync --server -te.LsfxCIvu --delete . ./",
    "rsync --server --sender -vlogDtpre.iLsfxC . /etc/shadow",
])
def test_other_commands_are_refused(shells: TestNet, command: str) -> None:
    h = shells[1]
    cp = shells.ssh(h, command)
    _assert_refused(cp)
    assert repr(command) in cp.stderr
    assert "uid=" not in cp.stderr and "root:" not in cp.stderr
    assert not Path("/tmp/afarm-shell-test-planted").exists()


def test_sftp_and_scp_are_refused(shells: TestNet, tmp_path: Path) -> None:
    h = shells[1]
    (tmp_path / "f").write_text("x")
    opts = shells.ssh_options()
    cp = _ssh(["sftp", *opts, "-P", str(h.port), "-b", "-", h.target], input="ls /\n")
    assert cp.returncode != 0 and "bin" not in cp.stdout
    modes: list[list[str]] = [[], ["-O"]]  # SFTP-based scp (default) and the legacy one
    for legacy in modes:
        cp = _ssh(["scp", *legacy, *opts, "-P", str(h.port), str(tmp_path / "f"),
                   f"{h.target}:{h.workdir}/scp-planted"])
        assert cp.returncode != 0, cp.stderr
    cp = _ssh(["scp", "-O", *opts, "-P", str(h.port), f"{h.target}:/etc/passwd",
               str(tmp_path / "passwd")])
    assert cp.returncode != 0
    assert not (h.workdir / "scp-planted").exists() and not (tmp_path / "passwd").exists()


class _Listener:
    """A TCP server in the master's namespace that the slave could reach: if forwarding
    worked, a connection through the forward would arrive here and read HELLO."""

    def __init__(self, addr: str) -> None:
        self.sock = socket.create_server((addr, 0))
        self.port = self.sock.getsockname()[1]
        self.accepted = 0
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.accepted += 1
            conn.sendall(b"HELLO\n")
            conn.close()

    def close(self) -> None:
        self.sock.close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_port_forwarding_does_not_forward(shells: TestNet) -> None:
    _assert_no_forwarding(shells, shells[2])


def test_a_key_added_without_restrict_gets_no_forwarding_no_sftp_and_no_command(
        shells: TestNet, tmp_path: Path) -> None:
    """Issue 9, hole 5: a key for the slave user without `restrict` or `command=` (an admin
    pasting the master's key by hand) reached port forwarding and internal-sftp, both of
    which bypass the login shell. afarm-slave's sshd drop-in closes both for any key."""
    h = shells[2]
    shells.authorize(h)  # a plain key line: no options at all
    try:
        _assert_no_forwarding(shells, h)
        opts = shells.ssh_options()
        for batch in ["ls /\n", f"ls {h.home}\n", f"get /etc/passwd {tmp_path}/p\n"]:
            cp = _ssh(["sftp", *opts, "-P", str(h.port), "-b", "-", h.target], input=batch)
            assert cp.returncode != 0, cp.stdout
            assert "bin" not in cp.stdout and "work" not in cp.stdout, cp.stdout
        assert not (tmp_path / "p").exists()
        # The subsystem request reaches the forced command, which refuses it (sshd drops a
        # subsystem's stderr, so only the exit status tells).
        cp = _ssh(shells.ssh_argv(h, "sftp", options=["-s"]), input="")
        assert (cp.returncode, cp.stdout) == (1, ""), cp.stderr
        cp = shells.ssh(h, "id")
        _assert_refused(cp, "'id' is not a verb")
        assert shells.ssh(h, "version").stdout == f"{__version__}\n"
    finally:
        install_shell(shells, h, door=False)


def _assert_no_forwarding(shells: TestNet, h: Host) -> None:
    server = _Listener(shells.bridge_addr)
    # Sanity: the slave itself can reach the server, so a working forward would too.
    probe = shells.exec(h, ["/usr/bin/python3", "-c",
                            "import socket,sys; s=socket.create_connection((sys.argv[1], "
                            "int(sys.argv[2])), 3); print(s.recv(10).decode().strip())",
                            shells.bridge_addr, str(server.port)])
    assert probe.stdout.strip() == "HELLO", probe.stderr
    seen = server.accepted
    lport = _free_port()
    fwd = subprocess.Popen(  # noqa: S603 - argv list
        shells.ssh_argv(h, options=["-N", "-o", "LogLevel=INFO", "-L",
                                    f"127.0.0.1:{lport}:{shells.bridge_addr}:{server.port}"]),
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                conn = socket.create_connection(("127.0.0.1", lport), timeout=1)
                break
            except OSError:
                assert fwd.poll() is None, fwd.communicate()
                assert time.monotonic() < deadline, "ssh -L never listened"
                time.sleep(0.05)
        with conn:
            conn.settimeout(5)
            try:
                data = conn.recv(100)
            except ConnectionResetError:
                data = b""
        assert data == b""  # closed at once: sshd refused the forward
    finally:
        fwd.kill()
        _, err = fwd.communicate()
        server.close()
    assert server.accepted == seen
    assert "prohibited" in err or "open failed" in err, err

    # A remote forward and stdio forwarding (-W, as ProxyJump uses) fail the same way.
    cp = _ssh(shells.ssh_argv(h, options=["-N", "-o", "ExitOnForwardFailure=yes",
                                          "-R", f"0:127.0.0.1:{h.port}"]), timeout=15)
    assert cp.returncode == 255 and "forwarding failed" in cp.stderr, cp.stderr
    cp = _ssh(shells.ssh_argv(h, options=["-W", f"{shells.bridge_addr}:{server.port}"]),
              timeout=15)
    assert cp.returncode != 0 and "HELLO" not in cp.stdout, cp.stderr
    assert server.accepted == seen


def _rsync(net: TestNet, h: Host, direction: str, local: Path, remote: str
           ) -> subprocess.CompletedProcess[str]:
    # Built for the cache dir, then pointed at ``remote``: the master's own checks would
    # refuse other puts before the slave's shell ever saw them.
    argv = rsync_argv(target_for(net, h), direction, local,  # type: ignore[arg-type]
                      "cache/" if direction == "put" else remote)
    argv[-1 if direction == "put" else -2] = f"{h.target}:{remote}"
    return subprocess.run(argv, capture_output=True, text=True, check=False,  # noqa: S603
                          timeout=60, env={**os.environ, "LC_ALL": "C"})


def test_rsync_is_confined_to_the_work_dir(shells: TestNet, tmp_path: Path) -> None:
    h = shells[3]
    src = tmp_path / "planted"
    src.write_text("x")
    outside = Path(f"/tmp/afarm-shell-test-outside-{os.getpid()}")
    # Writable by the slave user: only the shell stands between it and the file.
    outside.mkdir(mode=0o777, exist_ok=True)
    outside.chmod(0o777)
    try:
        for remote, why in [(f"{outside}/", "outside the work dir"),
                            ("../", "'..'"), ("cache/../../", "'..'"),
                            (f"{h.workdir}/../", "'..'")]:
            cp = _rsync(shells, h, "put", src, remote)
            assert cp.returncode != 0, remote
            assert why in cp.stderr, (remote, cp.stderr)
        assert list(outside.iterdir()) == []
        assert not (h.workdir.parent / "planted").exists()
        for remote in ["/etc/shadow", "../sshd_config", f"{h.dir}/ssh_host_ed25519_key"]:
            cp = _rsync(shells, h, "get", tmp_path / "got", remote)
            assert cp.returncode != 0 and "refused" in cp.stderr, (remote, cp.stderr)
            assert not (tmp_path / "got").exists()
        # rsync backslash-escapes these for a remote shell; the shell sees them and refuses.
        for remote in ["cache/x;id", "cache/$(id)", "cache/`id`", "cache/x|id", "cache/a b"]:
            cp = _rsync(shells, h, "get", tmp_path / "got", remote)
            assert cp.returncode != 0 and "refused" in cp.stderr, (remote, cp.stderr)
    finally:
        for p in outside.iterdir():
            p.unlink()
        outside.rmdir()
    # The allowed verbs still work after all that.
    t = transport_for(shells, h)
    try:
        assert t.put(src, "cache/planted") > 0
        assert (h.workdir / "cache" / "planted").read_text() == "x"
        assert t.run(["version"]).stdout == f"{__version__}\n"
    finally:
        t.close()


def _hand_made_put(net: TestNet, h: Host, tree: Path, command: str
                   ) -> subprocess.CompletedProcess[str]:
    """Issue 9, hole 4: ask the forced command for an accepted put, but send a recursive
    file list built on the client (real rsync -r does that when the ssh it runs swaps the
    command for one the shell accepts)."""
    swap = tree.parent / "swap-ssh"
    swap.write_text("#!/bin/sh\n" + shlex.join(
        ["exec", *net.ssh_argv(h, command)]) + "\n")
    swap.chmod(0o755)
    return subprocess.run(["rsync", "-rt", "--no-inc-recursive", "-e", str(swap),  # noqa: S607
                           f"{tree}/", f"{h.target}:./"], capture_output=True, text=True,
                          check=False, timeout=60, env={**os.environ, "LC_ALL": "C"})


def _tree_of(path: Path) -> dict[str, tuple[int, int, bytes]]:
    """Every name below ``path`` with owner, mode and (for files) contents."""
    out = {}
    for p in sorted(path.rglob("*")):
        st = p.lstat()
        out[str(p.relative_to(path))] = (st.st_uid, st.st_mode,
                                         p.read_bytes() if p.is_file() else b"")
    return out


def test_a_hand_made_file_list_writes_nothing_outside_the_cache_dir(
        shells: TestNet, tmp_path: Path) -> None:
    h = shells[3]
    marker = Path(f"/tmp/afarm-pwned-{os.getpid()}")
    tree = tmp_path / "tree"
    site = tree / ".local/lib/python3.11/site-packages"
    site.mkdir(parents=True)
    (site / "x.pth").write_text(f"import os; open({str(marker)!r}, 'w').close()\n")
    (tree / ".ssh").mkdir()
    (tree / ".ssh/authorized_keys").write_text(f"{shells.client_pubkey}\n")
    (tree / "work/jobs").mkdir(parents=True)
    (tree / "work/jobs/planted").write_text("x")
    home_before = {k: v for k, v in _tree_of(h.home).items() if not k.startswith("work")}
    try:
        cp = _hand_made_put(shells, h, tree, "rsync --server -te.LsfxCIvu . ./")
        assert cp.returncode != 0 and "cache dir" in cp.stderr, cp.stderr
        cp = _hand_made_put(shells, h, tree, f"rsync --server -te.LsfxCIvu . {h.home}/")
        assert cp.returncode != 0 and "refused" in cp.stderr, cp.stderr
        # The one put the shell takes: whatever the list names stays inside cache/.
        _hand_made_put(shells, h, tree, "rsync --server -te.LsfxCIvu . cache/")
        assert {k: v for k, v in _tree_of(h.home).items()
                if not k.startswith("work")} == home_before
        assert sorted(p.name for p in h.workdir.iterdir()) in ([], ["cache"])
        # Nothing the client sent is readable by other users on the slave.
        for p in (h.workdir / "cache").rglob("*"):
            assert p.lstat().st_mode & 0o077 == 0, p
        # The next login runs the shell, not what was sent.
        assert shells.ssh(h, "version").stdout == f"{__version__}\n"
        assert not marker.exists()
    finally:
        marker.unlink(missing_ok=True)


@pytest.mark.parametrize("attempt", [
    "mv ~/.ssh ~/.ssh-old",
    "mkdir ~/.ssh-new",
    "mkdir -p ~/.local/lib/python3.11/site-packages",
    "echo x >> ~/.ssh/authorized_keys",
    "mv ~/.ssh/authorized_keys ~/.ssh/authorized_keys.old",
    "ln -s /tmp ~/.cache",
    "chmod 777 ~",
])
def test_the_slave_user_cannot_change_its_own_door(shells: TestNet, attempt: str) -> None:
    """Even code running as the slave user (a task that broke out of everything else)
    cannot rename .ssh, rewrite authorized_keys or plant files sshd or Python read on the
    next login: the home and .ssh are root's."""
    h = shells[0]
    before = _tree_of(h.home / ".ssh"), h.home.stat().st_mode
    cp = shells.exec(h, ["/bin/sh", "-c", attempt], as_user=True,
                     env={"HOME": str(h.home), "PATH": "/usr/bin:/bin"})
    assert cp.returncode != 0, (attempt, cp.stdout, cp.stderr)
    assert (_tree_of(h.home / ".ssh"), h.home.stat().st_mode) == before
    assert sorted(p.name for p in h.home.iterdir()) == [".ssh", "work"]
    assert shells.ssh(h, "version").stdout == f"{__version__}\n"
