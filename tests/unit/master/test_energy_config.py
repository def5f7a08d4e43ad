# SPDX-License-Identifier: MIT
"""[energy] and the slaves' watts and prices in master.conf reach the meter; a tariff the
master cannot read stops it at load with the reason."""

from pathlib import Path

import pytest

from afarm.errors import ConfigError
from afarm.master.daemon import build_farm, load_config


def conf(tmp_path: Path, energy: str, slave: str = "") -> Path:
    apps = tmp_path / "apps"
    apps.mkdir(exist_ok=True)
    path = tmp_path / "master.conf"
    path.write_text(f"[master]\nstate_dir = {tmp_path / 'state'}\napplications_dir = {apps}\n"
                    f"slaves_dir = {tmp_path / 'slaves.d'}\n"
                    f"[local_slaves]\ncount = 1\nwork_dir = {tmp_path / 'local'}\n"
                    "slots = 2\nwatts_busy = 90\nprice = 0.4\n"
                    f"[energy]\n{energy}\n[slaves]\n[[box]]\nhost = box.example\n{slave}")
    return path


def test_watts_and_prices_of_every_slave_and_the_site_reach_the_meter(tmp_path: Path) -> None:
    cfg = load_config(str(conf(tmp_path, "watts_busy = 60\nprice_per_kwh = 0.2\n"
                               "currency = CHF\ntariff = 00:00-06:00 0.1, 22:00-24:00 0.1",
                               "watts_busy = 300\nwatts_idle = 40\nslots = 3\n")))
    farm = build_farm(cfg)
    try:
        m = farm.meter
        assert (m.site.watts_busy, m.site.price_per_kwh, m.site.currency) == (60, 0.2, "CHF")
        assert m.site.tariff.price_at(3600) == 0.1 and m.site.tariff.price_at(43200) == 0.2
        assert m.places["local-1"].price == 0.4
        assert m.watts_per_task("local-1") == 45  # 90 W over 1 local slave x 2 slots
        assert m.places["local-1"].shared and not m.places["box"].shared
        assert m.places["box"].watts_idle == 40 and m.watts_per_task("box") == 100
        assert m.watts_per_task("master") == 60
    finally:
        farm.store.close()


@pytest.mark.parametrize("tariff, says", [
    ("00:00-08:00 0.1, 07:00-09:00 0.2", "overlap"),
    ("7-9 0.1", "HH:MM-HH:MM PRICE"),
    ("00:00-08:00 0.1", "without a price"),  # and no price_per_kwh for the rest
])
def test_a_tariff_the_master_cannot_use_is_a_config_error(tmp_path: Path, tariff: str,
                                                           says: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_config(str(conf(tmp_path, f"tariff = {tariff}")))
    assert "[energy] tariff" in str(err.value.problems) and says in str(err.value.problems)


def test_negative_watts_are_refused_like_any_out_of_range_value(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        load_config(str(conf(tmp_path, "", "watts_busy = -5\n")))
    assert "watts_busy" in str(err.value.problems)
