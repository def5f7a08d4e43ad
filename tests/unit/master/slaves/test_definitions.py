# SPDX-License-Identifier: MIT
from pathlib import Path
from typing import Any

import pytest

from afarm.config.loader import load
from afarm.errors import ConfigError
from afarm.master.slaves.definitions import control_dir, slave_definitions


def config(tmp_path: Path, text: str) -> dict[str, Any]:
    conf = tmp_path / "master.conf"
    conf.write_text(f"[master]\nslaves_dir = {tmp_path / 'slaves.d'}\n" + text)
    return load(conf, "master")


def test_slaves_come_from_master_conf_and_drop_ins(tmp_path: Path) -> None:
    (tmp_path / "slaves.d").mkdir()
    (tmp_path / "slaves.d" / "box2.conf").write_text("host = 10.0.0.2\ntags = gpu, big\n")
    cfg = config(tmp_path, "[slaves]\n[[box1]]\nhost = 10.0.0.1\nport = 2222\n")
    slaves = slave_definitions(cfg)
    assert slaves["box1"]["port"] == 2222 and slaves["box1"]["user"] == "afarm"
    assert slaves["box2"]["tags"] == ["gpu", "big"]


def test_bad_slave_definitions_are_all_reported(tmp_path: Path) -> None:
    (tmp_path / "slaves.d").mkdir()
    (tmp_path / "slaves.d" / "box1.conf").write_text("host = h\n")
    (tmp_path / "slaves.d" / "box3.conf").write_text("port = 99999\n")
    cfg = config(tmp_path, "[slaves]\n[[box1]]\nhost = 10.0.0.1\n")
    with pytest.raises(ConfigError) as exc:
        slave_definitions(cfg)
    text = str(exc.value)
    assert "also defined in [slaves]" in text and "box3.conf: host" in text
    assert "box3.conf: port" in text


def test_a_deep_state_dir_gets_a_short_control_dir(tmp_path: Path) -> None:
    assert control_dir(Path("/var/lib/afarm-master")) == Path(
        "/var/lib/afarm-master/ssh-control")
    deep = Path("/" + "x" * 80)
    assert len(str(control_dir(deep))) < 60
