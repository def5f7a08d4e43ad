# SPDX-License-Identifier: MIT
"""The Debian packages, end to end, on this machine: build, lintian, install, run the
master as its unit says, enrol a namespace host as a slave with the installed
``afarm-slave enroll``, render a real Blender scene with the installed ``afarmctl``, purge,
and check that nothing of afarm is left but the users (which the test then removes).

Needs root, dpkg-buildpackage, lintian, Blender and what tests/system needs (network
namespaces, sshd). It installs and purges the packages python3-afarm, afarm-master,
afarm-slave, afarmctl and python3-wakeonlan, and removes the users afarm and afarm-master:
leftovers of an earlier, killed run are removed first. python3-blender-asset-tracer (which
afarmctl depends on) is built and installed too, and purged again only when it was not
installed before (make deps-test installs it for the other tests). Runs of it on one machine take
turns (a lock file), since dpkg allows one at a time anyway.

The slave host: namespace hosts share the filesystem and users with this machine, so the
packages installed here are installed "there" too, user afarm included. The host's own
sshd (tests/system/testnet.py) is pointed at the afarm user: ``AllowUsers afarm`` and
``AuthorizedKeysFile`` = afarm's ~/.ssh/authorized_keys, which ``afarm-slave enroll`` then
fills like on a real slave. The host key enrolled is that host's own (--host-key), since
its sshd does not use /etc/ssh/ssh_host_ed25519_key.

AFARM_PACKAGING_TREE=DIR builds from DIR instead of this checkout (e.g. a tree with a
patch applied).
"""

from __future__ import annotations

import fcntl
import grp
import json
import os
import pwd
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.fixtures.blends import make_scene
from tests.platform import need_root
from tests.system.testnet import TestNet

pytestmark = [pytest.mark.system, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("python3-afarm", "afarm-master", "afarm-slave", "afarmctl")
WAKEONLAN = "python3-wakeonlan"
BAT = "python3-blender-asset-tracer"
USERS = ("afarm-master", "afarm")
# Made by afarm-master's postinst for afarm-sandbox.service; tests of root agents make it
# on demand too, so the test removes it only when nothing runs as it, and leaves it.
TASK_USER = "afarm-task"
LOCK = Path("/run/lock/afarm-packaging-test.lock")
# Debian's own programs only: the PATH a package build and a daemon see, without
# $HOME/.pyenv shims or a virtualenv in front of /usr/bin/python3.
SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
CLEAN_ENV = {"PATH": SYSTEM_PATH, "LANG": "C.UTF-8", "HOME": "/root",
             "DEBIAN_FRONTEND": "noninteractive"}
LEFTOVER_GLOBS = ("/etc/afarm", "/var/lib/afarm-master", "/var/lib/afarm-slave",
                  "/usr/bin/afarm*", "/usr/lib/python3/dist-packages/afarm*",
                  "/usr/lib/python3/dist-packages/wakeonlan*", "/lib/systemd/system/afarm*",
                  "/etc/systemd/system/*.wants/afarm*", "/usr/share/man/man*/afarm*",
                  "/usr/share/doc/afarm*", "/usr/share/doc/python3-afarm")


def _need(cond: bool, why: str) -> None:
    # Only the lack of root is a platform limit; as root (CI) a missing tool is a failure
    # of the set-up, never a reason to pass quietly.
    if not cond:
        need_root(f"{why} (installing it needs root)")
    assert cond, f"{why}: run make deps-test"


def run(argv: Sequence[str], *, check: bool = True, timeout: float = 600,
        env: dict[str, str] | None = None, cwd: Path | None = None,
        input: str | None = None) -> subprocess.CompletedProcess[str]:
    """Run a program (an argv list, never a shell) with Debian's PATH only."""
    cp = subprocess.run(  # noqa: S603 - argv list
        list(argv), capture_output=True, text=True, timeout=timeout, check=False,
        env=env or CLEAN_ENV, cwd=cwd, input=input)
    if check and cp.returncode != 0:
        raise AssertionError(f"{shlex.join(argv)} exited {cp.returncode}:\n"
                             f"{cp.stdout[-4000:]}\n{cp.stderr[-4000:]}")
    return cp


def _installed(pkg: str) -> bool:
    cp = run(["dpkg-query", "-W", "-f=${Status}", pkg], check=False)
    return cp.returncode == 0 and "installed" in cp.stdout and "not-installed" not in cp.stdout


def _leftovers() -> list[str]:
    import glob

    return sorted(p for g in LEFTOVER_GLOBS for p in glob.glob(g))


def _purge() -> None:
    present = [p for p in (*PACKAGES, WAKEONLAN) if _installed(p)]
    if present:
        run(["apt-get", "purge", "-y", *present])


def _user_exists(user: str) -> bool:
    return run(["getent", "passwd", user], check=False).returncode == 0


def _remove_users() -> None:
    for user in USERS:
        if _user_exists(user):
            # userdel also removes the user's own group; -f when a zombie of the user is
            # still counted as logged in (PID 1 here reaps orphans late).
            if run(["userdel", user], check=False).returncode != 0:
                run(["userdel", "-f", user])
        if run(["getent", "group", user], check=False).returncode == 0:
            run(["groupdel", user], check=False)


@dataclass
class Build:
    out: Path  # where the .debs are
    debs: list[Path]
    changes: Path
    seconds: float
    tree: Path
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)
    task_user_was_made: bool = False  # afarm-task was absent before the install
    bat_was_installed: bool = True  # python3-blender-asset-tracer was there before the test
    dirs: list[Path] = field(default_factory=list)  # made outside pytest's tmp dirs


# ------------------------------------------------------------------------------ fixtures


@pytest.fixture(scope="module")
def build(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Build]:
    _need(os.geteuid() == 0, "installs packages: needs root")
    for tool in ("dpkg-buildpackage", "lintian", "apt-get", "setpriv", "systemd-analyze"):
        _need(shutil.which(tool, path=SYSTEM_PATH) is not None, f"needs {tool}")
    _need(shutil.which("blender", path=SYSTEM_PATH) is not None, "needs blender")
    LOCK.parent.mkdir(parents=True, exist_ok=True)
    with open(LOCK, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        base = tmp_path_factory.mktemp("debs")
        tree = base / "afarm"
        source = Path(os.environ.get("AFARM_PACKAGING_TREE") or ROOT)
        _copy_tree(source, tree)
        t0 = time.monotonic()
        run(["dpkg-buildpackage", "-us", "-uc", "-b"], cwd=tree, timeout=1200)
        seconds = time.monotonic() - t0
        # Debian 12 lacks the wakeonlan module that python3-afarm recommends; build it as
        # debian/README.source says, and install it with the rest.
        run([sys.executable, str(tree / "debian" / "build-wakeonlan-deb"), str(base)],
            timeout=300, env={**CLEAN_ENV, "PIP_DISABLE_PIP_VERSION_CHECK": "1"})
        # Nor blender-asset-tracer, which afarmctl depends on (same README).
        run([sys.executable, str(tree / "debian" / "build-bat-deb"), str(base)],
            timeout=300, env={**CLEAN_ENV, "PIP_DISABLE_PIP_VERSION_CHECK": "1"})
        debs = sorted(base.glob("*.deb"))
        changes = next(base.glob("afarm_*.changes"))
        print(f"\n  measured: dpkg-buildpackage -us -uc -b took {seconds:.1f} s")
        yield Build(base, debs, changes, seconds, tree)


def _copy_tree(source: Path, dest: Path) -> None:
    """The sources only (tracked and new files, not ignored ones), so the build neither
    litters the checkout nor packs caches."""
    if (source / ".git").exists():
        cp = run(["git", "-C", str(source), "ls-files", "-z", "--cached", "--others",
                  "--exclude-standard"])
        for rel in filter(None, cp.stdout.split("\0")):
            src = source / rel
            if src.is_file():
                (dest / rel).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(src, dest / rel)
    else:
        shutil.copytree(source, dest, ignore=shutil.ignore_patterns(
            ".git", "__pycache__", ".mypy_cache", ".ruff_cache", ".tools", "build"))


@pytest.fixture(scope="module")
def installed(build: Build) -> Iterator[Build]:
    if any(_installed(p) for p in (*PACKAGES, WAKEONLAN)) or any(map(_user_exists, USERS)):
        print("\n  removing afarm packages and users left by an earlier run")
        _purge()
        _remove_users()
    if _user_exists(TASK_USER) and not _runs_as(TASK_USER):
        run(["userdel", TASK_USER], check=False)
    build.task_user_was_made = not _user_exists(TASK_USER)
    build.bat_was_installed = _installed(BAT)
    try:
        run(["apt-get", "install", "-y", *map(str, build.debs)], timeout=900)
        yield build
    finally:
        for p in build.processes:
            _stop(p)
        for d in build.dirs:
            shutil.rmtree(d, ignore_errors=True)
        _purge()
        _remove_users()
        if not build.bat_was_installed and _installed(BAT):
            run(["apt-get", "purge", "-y", BAT])
        assert not any(map(_user_exists, USERS)), "the users afarm and afarm-master stay"


def _runs_as(user: str) -> bool:
    uid = pwd.getpwnam(user).pw_uid
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if os.stat(f"/proc/{pid}").st_uid == uid:
                return True
        except OSError:
            pass
    return False


def _stop(p: subprocess.Popen[bytes]) -> None:
    if p.poll() is None:
        try:
            os.killpg(p.pid, signal.SIGTERM)
            p.wait(timeout=30)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            p.wait(timeout=30)


# -------------------------------------------------------------------------------- tests


def test_the_four_packages_and_python3_wakeonlan_are_built(build: Build) -> None:
    names = sorted(p.name.split("_")[0] for p in build.debs)
    assert names == sorted([*PACKAGES, WAKEONLAN, BAT])
    assert not (ROOT / "debian" / "tmp").exists(), "the build littered the checkout"


def test_lintian_pedantic_finds_nothing(build: Build) -> None:
    wol = next(p for p in build.debs if p.name.startswith(WAKEONLAN))
    bat = next(p for p in build.debs if p.name.startswith(BAT))
    cp = run(["lintian", "--pedantic", "--display-info", "--display-experimental",
              "--fail-on", "none", str(build.changes), str(wol), str(bat)], timeout=600)
    tags = [ln for ln in cp.stdout.splitlines() if re.match(r"^[EWIPX]: ", ln)]
    assert tags == [], "\n".join(tags)


def test_the_installed_units_verify_with_their_programs_and_man_pages(
        installed: Build) -> None:
    units = [f"/lib/systemd/system/{u}" for u in (
        "afarm-master.service", "afarm-slave.service", "afarm-sandbox.service",
        "afarm-slave-claim.service")]
    cp = run(["systemd-analyze", "verify", *units], check=False, cwd=Path("/"))
    assert cp.returncode == 0 and not cp.stderr.strip(), cp.stdout + cp.stderr
    assert run(["man", "-w", "afarmctl"]).stdout.strip().endswith("afarmctl.1.gz")


def test_the_master_package_makes_the_task_user_and_ships_the_sandbox_helper(
        installed: Build) -> None:
    """Issue 9: the master's tasks run as afarm-task (afarm-sandbox.service), never as
    afarm-master; the user has no home, no shell and its own group."""
    if installed.task_user_was_made:
        print("\n  afarm-task was made by afarm-master's postinst")
    entry = run(["getent", "passwd", TASK_USER]).stdout.strip().split(":")
    group = run(["getent", "group", TASK_USER]).stdout.strip().split(":")
    assert (entry[5], entry[6]) == ("/nonexistent", "/usr/sbin/nologin"), entry
    assert int(entry[2]) < 1000 and entry[3] == group[2], (entry, group)
    assert entry[2] != run(["id", "-u", "afarm-master"]).stdout.strip()
    assert not Path("/nonexistent").exists()
    helper = _unit(Path("/lib/systemd/system/afarm-sandbox.service"))
    assert "--allow-user afarm-master --task-user afarm-task" in helper["ExecStart"]
    master = Path("/lib/systemd/system/afarm-master.service").read_text()
    assert "Wants=afarm-sandbox.service" in master
    # Enabled like the master (no systemd runs here to start it).
    assert Path("/etc/systemd/system/multi-user.target.wants/afarm-sandbox.service").exists()
    # The helper the unit starts imports from the installed package.
    cp = run(["/usr/bin/python3", "-I", "-m", "afarm.runner.sandbox_helper", "--help"],
             cwd=Path("/"))
    assert "--allow-user" in cp.stdout


def test_the_autopkgtest_smoke_test_passes_on_the_installed_packages(installed: Build,
                                                                      tmp_path: Path) -> None:
    cp = run(["sh", str(installed.tree / "debian" / "tests" / "smoke")],
             env={**CLEAN_ENV, "AUTOPKGTEST_TMP": str(tmp_path)}, check=False, timeout=300)
    assert cp.returncode == 0, cp.stdout + cp.stderr


def test_installing_again_keeps_the_key_the_users_and_edited_configuration(
        installed: Build) -> None:
    key = Path("/var/lib/afarm-master/.ssh/id_ed25519.pub").read_text()
    uids = [run(["id", "-u", u]).stdout for u in USERS]
    conf = Path("/etc/afarm/slave.conf")
    conf.write_text(conf.read_text() + "# edited by the admin\n")
    debs = [str(p) for p in installed.debs if not p.name.startswith((WAKEONLAN, BAT))]
    run(["dpkg", "-i", "--force-confold", *debs], timeout=600)
    assert Path("/var/lib/afarm-master/.ssh/id_ed25519.pub").read_text() == key
    assert [run(["id", "-u", u]).stdout for u in USERS] == uids
    assert conf.read_text().endswith("# edited by the admin\n")


def _unit(path: Path) -> dict[str, str]:
    out = {}
    for line in path.read_text().splitlines():
        if "=" in line and not line.startswith(("#", ";", "[")):
            key, _, value = line.partition("=")
            out[key.strip()] = value.strip()
    return out


def _free_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def _start_as_unit(unit_path: Path, build: Build, base: Path) -> subprocess.Popen[bytes]:
    """Run the service the way systemd would: its User=, ExecStartPre=, ExecStart=, UMask=,
    a clean environment, and Type=notify (wait for READY=1 on a notify socket)."""
    unit = _unit(unit_path)
    user = unit["User"]
    as_user = ["setpriv", f"--reuid={user}", f"--regid={unit.get('Group', user)}",
               "--init-groups", "--no-new-privs", "--"]
    home = run(["getent", "passwd", user]).stdout.split(":")[5]
    env = {"PATH": SYSTEM_PATH, "LANG": "C.UTF-8", "HOME": home, "USER": user,
           "LOGNAME": user, "SHELL": "/usr/sbin/nologin"}
    if "ExecStartPre" in unit:
        run([*as_user, *shlex.split(unit["ExecStartPre"])], env=env, cwd=Path("/"))
    # Where the service user can reach it (pytest's tmp dirs are root's alone), as
    # systemd's own /run/systemd/notify.
    notify_dir = Path(tempfile.mkdtemp(prefix="afarm-notify-", dir="/run"))
    build.dirs.append(notify_dir)
    notify_dir.chmod(0o755)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(notify_dir / "notify"))
    (notify_dir / "notify").chmod(0o777)
    sock.settimeout(60)
    log = open(base / f"{user}.log", "wb")  # the child keeps its own copy of the fd
    proc = subprocess.Popen(  # noqa: S603 - argv list
        [*as_user, *shlex.split(unit["ExecStart"])], stdout=log, stderr=subprocess.STDOUT,
        env={**env, "NOTIFY_SOCKET": str(notify_dir / "notify")}, cwd="/",
        umask=int(unit.get("UMask", "0022"), 8), start_new_session=True)
    build.processes.append(proc)
    log.close()
    with sock:
        try:
            assert unit["Type"] == "notify"
            while not sock.recv(4096).startswith(b"READY=1"):
                pass
        except TimeoutError:
            raise AssertionError(f"{unit_path.name} sent no READY=1:\n"
                                 f"{(base / f'{user}.log').read_text()}") from None
    return proc


def _use_afarm_user(net: TestNet) -> None:
    """Point the host's sshd at the packaged slave user, as a slave's own sshd is: with
    the drop-in afarm-slave installed, included first as Debian's sshd_config does."""
    h = net[0]
    text = ("Include /etc/ssh/sshd_config.d/afarm-slave.conf\n"
            + h.sshd_config.read_text())
    text = re.sub(r"(?m)^AllowUsers .*$", "AllowUsers afarm", text)
    text = re.sub(r"(?m)^AuthorizedKeysFile .*$",
                  "AuthorizedKeysFile /var/lib/afarm-slave/.ssh/authorized_keys", text)
    h.sshd_config.write_text(text)
    net.restart(h)


def test_a_namespace_host_enrols_and_renders_with_the_installed_commands(
        installed: Build, tmp_path: Path) -> None:
    with TestNet(1) as net:
        h = net[0]
        _use_afarm_user(net)
        job_port, results_port = _free_port(net.bridge_addr), _free_port(net.bridge_addr)
        master = f"{net.bridge_addr}:{job_port}"
        # What the admin does (README.Debian): open the job port, make a client token.
        conf = Path("/etc/afarm/master.conf")
        conf.write_text(conf.read_text()
                        .replace("#listen = 127.0.0.1:7731", f"listen = {master}")
                        .replace("#listen = 127.0.0.1:7732",
                                 f"listen = {net.bridge_addr}:{results_port}"))
        # An admin token: it makes the slaves' enrolment tokens below.
        token = run(["afarm-master", "--config", str(conf), "new-token", "ops", "--scope",
                     "admin"]).stdout.strip()
        token_file = tmp_path / "token"
        token_file.write_text(token + "\n")
        _start_as_unit(Path("/lib/systemd/system/afarm-master.service"), installed, tmp_path)
        ctl = ["/usr/bin/afarmctl", "--master", master, "--results",
               f"{net.bridge_addr}:{results_port}", "--token-file", str(token_file), "--json"]

        slave_token = json.loads(run([*ctl, "slave", "token"]).stdout)["token"]
        cp = net.exec(h, ["/usr/bin/afarm-slave", "enroll", "--master", master,
                          "--token", slave_token, "--name", "h1",
                          "--host-key", f"{h.host_key}.pub"], env=CLEAN_ENV, timeout=120)
        assert cp.returncode == 0, cp.stdout + cp.stderr
        line = Path("/var/lib/afarm-slave/.ssh/authorized_keys").read_text().strip()
        master_key = Path("/var/lib/afarm-master/.ssh/id_ed25519.pub").read_text().split()
        assert line.startswith('restrict,command="/usr/bin/afarm-slave-shell" '
                               f"{master_key[0]} {master_key[1]}")
        assert Path("/var/lib/afarm-master/known_hosts").read_text() == \
            f"{h.addr} {h.host_key_pub}\n"
        definition = Path("/etc/afarm/slaves.d/h1.conf").read_text()
        assert f"host = {h.addr}\n" in definition

        deadline = time.monotonic() + 90
        state = ""
        while time.monotonic() < deadline:
            slaves = {s["name"]: s for s in json.loads(run([*ctl, "slaves"]).stdout)}
            state = slaves.get("h1", {}).get("state", "")
            if state == "online":
                break
            time.sleep(0.5)
        assert state == "online", f"h1 is {state!r}:\n{(tmp_path / 'afarm-master.log').read_text()}"

        scene = make_scene(tmp_path, frames=2)
        job = json.loads(run([*ctl, "submit", str(scene), "--frames", "1-2"]).stdout)
        cp = run([*ctl, "wait", str(job["id"])], check=False, timeout=600)
        status = json.loads(run([*ctl, "status", str(job["id"])]).stdout)
        assert cp.returncode == 0 and status["status"] == "completed", \
            json.dumps(status, indent=1) + (tmp_path / "afarm-master.log").read_text()[-4000:]
        assert {t["slave"] for t in status["tasks"]} == {"h1"}
        out = tmp_path / "out"
        run([*ctl, "fetch", str(job["id"]), "-o", str(out)])
        frames = sorted(p.name for p in out.rglob("*.png"))
        assert len(frames) == 2, frames
        for png in out.rglob("*.png"):
            assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        for p in installed.processes:
            _stop(p)


def test_the_installed_master_runs_its_local_tasks_as_afarm_task(installed: Build) -> None:
    """Issue 9: with afarm-sandbox.service's helper running, a local slave of the master
    (user afarm-master, as its unit says) runs its task as afarm-task."""
    for p in installed.processes:
        _stop(p)
    base = Path(tempfile.mkdtemp(prefix="afarm-local-", dir="/run"))  # afarm-master reads
    installed.dirs += [base, Path("/run/afarm-sandbox")]
    base.chmod(0o755)
    app = Path("/etc/afarm/applications.d/whoami.conf")
    app.write_text('kind = command\nexecutable = /bin/sh\nargv = -c, "id -u; id -g", {item}\n')
    job_port, results_port = _free_port("127.0.0.1"), _free_port("127.0.0.1")
    conf = base / "master.conf"
    conf.write_text(f"[job_port]\nlisten = 127.0.0.1:{job_port}\n[results_port]\n"
                    f"listen = 127.0.0.1:{results_port}\n[local_slaves]\ncount = 1\n")
    conf.chmod(0o644)
    # The helper as afarm-sandbox.service starts it (root; its own unit tests cover the
    # limits), with Type=notify's READY=1 before the master starts (Before=).
    helper = _unit(Path("/lib/systemd/system/afarm-sandbox.service"))
    ready = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    ready.bind(str(base / "notify"))
    ready.settimeout(60)
    log = open(base / "helper.log", "wb")
    installed.processes.append(subprocess.Popen(  # noqa: S603 - argv list
        shlex.split(helper["ExecStart"]), stdout=log, stderr=subprocess.STDOUT, cwd="/",
        env={**CLEAN_ENV, "NOTIFY_SOCKET": str(base / "notify")}, start_new_session=True))
    log.close()
    with ready:
        assert ready.recv(64) == b"READY=1", (base / "helper.log").read_text()
    unit = base / "afarm-master.service"
    unit.write_text(Path("/lib/systemd/system/afarm-master.service").read_text()
                    .replace("/etc/afarm/master.conf", str(conf)))
    try:
        token = run(["afarm-master", "--config", str(conf), "new-token"]).stdout.strip()
        (base / "token").write_text(token + "\n")
        _start_as_unit(unit, installed, base)
        ctl = ["/usr/bin/afarmctl", "--master", f"127.0.0.1:{job_port}", "--results",
               f"127.0.0.1:{results_port}", "--token-file", str(base / "token"), "--json"]
        job = json.loads(run([*ctl, "submit", "--app", "whoami", "--items", "x"]).stdout)
        run([*ctl, "wait", str(job["id"])], check=False, timeout=300)
        status = json.loads(run([*ctl, "status", str(job["id"])]).stdout)
        master_log = (base / "afarm-master.log").read_text()
        assert status["status"] == "completed", json.dumps(status) + master_log[-3000:]
        out = Path(f"/var/lib/afarm-master/jobs/{job['id']}/out/item_000001.out")
        task = pwd.getpwnam(TASK_USER)
        assert out.read_text().split() == [str(task.pw_uid), str(task.pw_gid)]
        assert task.pw_uid != pwd.getpwnam("afarm-master").pw_uid
    finally:
        for p in installed.processes:
            _stop(p)
        app.unlink()


def _owner_mode(path: str) -> tuple[str, str, int]:
    st = os.lstat(path)
    return pwd.getpwuid(st.st_uid).pw_name, grp.getgrgid(st.st_gid).gr_name, st.st_mode & 0o7777


def test_the_slave_account_cannot_change_its_own_door(installed: Build) -> None:
    """Issue 9: the installed layout. The home and .ssh are root's, the work dir afarm's
    alone, sshd forces the shell for afarm whatever the key, and the entry points run
    isolated from user site-packages."""
    assert _owner_mode("/var/lib/afarm-slave") == ("root", "root", 0o755)
    assert _owner_mode("/var/lib/afarm-slave/.ssh") == ("root", "root", 0o755)
    assert _owner_mode("/var/lib/afarm-slave/work") == ("afarm", "afarm", 0o700)
    passwd = run(["getent", "passwd", "afarm"]).stdout.strip().split(":")
    assert (passwd[5], passwd[6]) == ("/var/lib/afarm-slave", "/usr/bin/afarm-slave-shell")
    for prog in ("afarm-slave-shell", "afarm-slave", "afarm-master", "afarmctl"):
        first = Path(f"/usr/bin/{prog}").read_text().splitlines()[0]
        assert re.fullmatch(r"#! ?/usr/bin/python3 -I", first), (prog, first)
    dropin = "/etc/ssh/sshd_config.d/afarm-slave.conf"
    assert Path(dropin).read_text() == (ROOT / dropin.lstrip("/")).read_text()
    assert dropin in run(["dpkg-query", "-W", "-f=${Conffiles}", "afarm-slave"]).stdout
    Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
    cfg = run(["/usr/sbin/sshd", "-T", "-f", "/etc/ssh/sshd_config", "-C",
               "user=afarm,host=h,addr=192.0.2.1"]).stdout.splitlines()
    for line in ("forcecommand /usr/bin/afarm-slave-shell", "disableforwarding yes",
                 "permittty no", "permittunnel no", "allowagentforwarding no",
                 "x11forwarding no", "permituserrc no",
                 "authorizedkeysfile /var/lib/afarm-slave/.ssh/authorized_keys"):
        assert line in cfg, line
    # Anyone else on the machine keeps sshd's own defaults.
    assert "forcecommand none" in run(["/usr/sbin/sshd", "-T", "-f", "/etc/ssh/sshd_config",
                                       "-C", "user=root,host=h,addr=192.0.2.1"]).stdout


def test_docs_examples_and_wakeonlan_are_where_the_admin_looks(installed: Build) -> None:
    for pkg in ("afarm-master", "afarm-slave"):
        text = Path(f"/usr/share/doc/{pkg}/README.Debian").read_text()
        assert "afarmctl slave token" in text
    assert not Path("/usr/share/doc/python3-afarm/README.Debian").exists()
    readme = Path("/etc/afarm/slaves.d/README").read_text()
    assert "afarmctl slave token" in readme and "slave-token" not in readme
    # sleep keeps slaves busy for as long as a job says: an example, never enabled.
    assert not Path("/etc/afarm/applications.d/sleep.conf").exists()
    assert Path("/usr/share/doc/python3-afarm/examples/sleep.conf").is_file()
    cp = run(["/usr/bin/python3", "-I", "-c", "import wakeonlan; print(len("
              "wakeonlan.create_magic_packet('00:11:22:33:44:55')))"], cwd=Path("/"))
    assert cp.stdout.strip() == "102"
    # afarmctl traces .blend dependencies with the packaged blender-asset-tracer.
    cp = run(["/usr/bin/python3", "-I", "-c", "import afarm.project.trace, blender_asset_tracer;"
              " print(blender_asset_tracer.__version__)"], cwd=Path("/"))
    assert cp.stdout.strip() == "1.23"


def test_purging_leaves_nothing_of_afarm_but_its_users(installed: Build) -> None:
    for p in installed.processes:
        _stop(p)
    run(["apt-get", "purge", "-y", *PACKAGES, WAKEONLAN], timeout=600)
    assert _leftovers() == []
    assert not [p for p in (*PACKAGES, WAKEONLAN) if _installed(p)]
    statoverrides = run(["dpkg-statoverride", "--list"]).stdout
    assert "/etc/afarm" not in statoverrides
    cp = run(["/usr/bin/python3", "-c", "import afarm"], check=False, cwd=Path("/"))
    assert cp.returncode != 0 and "No module named 'afarm'" in cp.stderr
    assert all(map(_user_exists, (*USERS, TASK_USER))), \
        "Debian policy: purge keeps the system users"
    # ... with a shell that exists: afarm's own went with the package.
    for user in (*USERS, TASK_USER):
        shell = run(["getent", "passwd", user]).stdout.strip().split(":")[6]
        assert shell == "/usr/sbin/nologin", (user, shell)
    assert run(["getent", "shadow", "afarm"]).stdout.split(":")[1].startswith("!")
