# SPDX-License-Identifier: MIT
import dataclasses
from pathlib import Path

import pytest

from afarm.config.loader import load
from afarm.config.types import MasterConfig
from afarm.errors import ConfigError


def master(tmp_path: Path, text: str) -> MasterConfig:
    path = tmp_path / "master.conf"
    path.write_text(f"[master]\nslaves_dir = {tmp_path / 'none'}\n" + text)
    return MasterConfig.of(load(path, "master"), {}, str(path))


def test_master_conf_is_read_once_into_frozen_typed_sections(tmp_path: Path) -> None:
    cfg = master(tmp_path, "[local_slaves]\ntags = gpu, big\n[job_port]\n"
                           "listen = [::1]:7000\n")
    assert cfg.local_slaves.tags == ("gpu", "big")
    assert cfg.listen("job_port") == ("::1", 7000)
    assert cfg.scheduler.slaves_per_task == 3
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.scheduler.slaves_per_task = 9  # type: ignore[misc]


def test_a_bad_listen_address_is_a_config_error_at_load(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"\[results_port\] listen"):
        master(tmp_path, "[results_port]\nlisten = [::1\n")
