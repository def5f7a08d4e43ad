# SPDX-License-Identifier: MIT
"""Slave definitions from master.conf and slaves.d/, and the transport each one gets."""

import hashlib
import os
import tempfile
from pathlib import Path
from typing import Any

from afarm.config.loader import load
from afarm.config.types import SlaveDef
from afarm.errors import ConfigError
from afarm.master.slaves.power import power_problems
from afarm.protocol.names import RULE, is_slave_name
from afarm.protocol.net import host_problem
from afarm.transport.base import Transport


def slave_definitions(cfg: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """[slaves] sections plus one file per slave in [master] slaves_dir, checked together."""
    slaves: dict[str, dict[str, Any]] = dict(cfg.get("slaves", {}))
    problems: list[str] = []
    directory = Path(cfg["master"]["slaves_dir"])
    if directory.is_dir():
        for path in sorted(directory.glob("*.conf")):
            name = path.name.removesuffix(".conf")
            try:
                conf = load(path, "slavedef")
            except ConfigError as exc:
                problems += [f"{path.name}: {p}" for p in exc.problems]
                continue
            if name in slaves:
                problems.append(f"{path.name}: slave {name!r} is also defined in [slaves];"
                                " keep one of the two")
            slaves[name] = conf
    for name in slaves:
        if not is_slave_name(name):
            problems.append(f"[slaves] [[{name}]]: {RULE}; rename it")
        bad_host = host_problem(str(slaves[name].get("host", "")))
        if bad_host:
            problems.append(f"[slaves] [[{name}]] host: {bad_host}")
        problems += power_problems(name, slaves[name])
    if problems:
        raise ConfigError(str(directory), problems)
    return slaves


def control_dir(state_dir: Path) -> Path:
    """Where OpenSSH's ControlMaster sockets go: a unix socket path holds ~107 bytes, so a
    deep state dir gets a short private directory of its own under /tmp instead."""
    preferred = state_dir / "ssh-control"
    if len(str(preferred)) <= 60:
        return preferred
    digest = hashlib.sha256(str(state_dir).encode()).hexdigest()[:16]
    return Path(tempfile.gettempdir()) / f"afarm-ssh-{os.getuid()}-{digest}"


def transport_for(name: str, conf: SlaveDef, state_dir: Path) -> Transport:
    from afarm.transport.ssh import SSHTransport

    return SSHTransport(name=name, host=conf.host, port=conf.port, user=conf.user,
                        key=Path(conf.key), known_hosts=state_dir / "known_hosts",
                        work_dir=conf.work_dir, control_dir=control_dir(state_dir))
