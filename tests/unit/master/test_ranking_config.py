# SPDX-License-Identifier: MIT
"""master.conf's ranking settings: policies, tariff and slave properties, checked at load."""

from pathlib import Path

import pytest

from afarm.errors import ConfigError
from afarm.master.daemon import load_config, ranking_setup
from afarm.master.scheduling.properties import Properties


def config(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "master.conf"
    path.write_text(f"[master]\nstate_dir = {tmp_path}/state\nslaves_dir = {tmp_path}/sd\n"
                    + text)
    return path


def test_policies_tariff_and_properties_of_slaves_reach_the_ranking(tmp_path: Path) -> None:
    cfg = load_config(str(config(tmp_path, (
        "[scheduler]\npolicy = eco\n[energy]\nprice_per_kwh = 0.25\n"
        "tariff = 22:00-06:00=0.18,\n"
        "[policies]\n[[eco]]\nkind = pareto\nkeys = speed, -watts_busy~0.1\n"
        "[[[weights]]]\nspeed = 0.7\nwatts_busy = 0.3\n"
        "[local_slaves]\ncount = 2\nwatts_busy = 150\n[[local-1]]\nspeed = 2\nwatts_busy = 90\n"
        "[slaves]\n[[box]]\nhost = 192.0.2.7\nwatts_busy = 120\nprice = 0.4\n"
        "[[[properties]]]\nvram_gib = 24\n"))))
    props, policy, policies = ranking_setup(cfg)
    assert policy == "eco" and policies["eco"].kind == "pareto"
    assert policies["eco"].weight("speed") == 0.7
    assert isinstance(props, Properties) and props.price == 0.25
    assert len(props.tariff.periods) == 1
    assert props.static["box"] == {"watts_busy": 120.0, "price": 0.4, "vram_gib": 24.0}
    assert props.static["local-1"] == {"speed": 2.0, "watts_busy": 90.0}
    assert props.static["local-2"] == {"watts_busy": 150.0}  # [local_slaves] for all


def test_every_ranking_mistake_is_reported_at_once_with_where_it_is(tmp_path: Path) -> None:
    cfg = load_config(str(config(tmp_path, (
        "[scheduler]\npolicy = nosuch\n"
        "[policies]\n[[bad]]\nkind = weighted\nkeys = speed~7,\n"))))
    with pytest.raises(ConfigError) as err:
        ranking_setup(cfg)
    text = str(err.value)
    assert "[policies] [[bad]]" in text and "tolerance" in text
    assert "[scheduler] policy = 'nosuch'" in text and "fastest" in text


def test_a_negative_watt_figure_is_refused_by_the_spec(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="watts_busy"):
        load_config(str(config(tmp_path, "[slaves]\n[[box]]\nhost = h\nwatts_busy = -5\n")))


def test_a_slave_file_gives_watts_price_speed_and_its_own_properties(tmp_path: Path) -> None:
    (tmp_path / "sd").mkdir()
    (tmp_path / "sd" / "box.conf").write_text(
        "host = 192.0.2.8\nwatts_idle = 40\nwatts_busy = 210\nspeed = 0.5\n"
        "[properties]\nrack_temperature = 31\n")
    cfg = load_config(str(config(tmp_path, "")))
    props, _, _ = ranking_setup(cfg)
    assert props.static["box"] == {"watts_idle": 40.0, "watts_busy": 210.0, "speed": 0.5,
                                   "rack_temperature": 31.0}
    row = props.row("box")
    assert row["energy_per_frame"] == pytest.approx(210 / 0.5 / 3600)
