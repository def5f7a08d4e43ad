# SPDX-License-Identifier: MIT
"""[power] and the slaves' mac, sleep_watts and sleep_windows reach the power manager; a
bad MAC, window or floor stops the master at load with the reason."""

from pathlib import Path

import pytest

from afarm.errors import ConfigError, UsageError
from afarm.master.daemon import build_farm, load_config


def conf(tmp_path: Path, power: str, slave: str = "") -> Path:
    apps = tmp_path / "apps"
    apps.mkdir(exist_ok=True)
    path = tmp_path / "master.conf"
    path.write_text(f"[master]\nstate_dir = {tmp_path / 'state'}\napplications_dir = {apps}\n"
                    f"slaves_dir = {tmp_path / 'slaves.d'}\n[power]\n{power}\n"
                    f"[slaves]\n[[box]]\nhost = box.example\n{slave}"
                    "[[desk]]\nhost = desk.example\n")
    return path


def test_power_settings_and_wakeable_slaves_reach_the_manager(tmp_path: Path) -> None:
    cfg = load_config(str(conf(
        tmp_path, "enabled = yes\nidle_suspend = 20\nkeep_awake = *:1, gpu:2\n"
                  "sleep_windows = mon-fri 20:00-07:00, sat-sun 00:00-24:00\nexclude = desk",
        "mac = 52:54:00:12:34:56\nbroadcast = 10.0.0.255\nsleep_watts = 3\n"
        "sleep_windows = * 00:00-24:00\n")))
    farm = build_farm(cfg)
    try:
        pm = farm.power
        assert pm is not None and farm.power_loop
        s = pm.settings
        assert (s.idle_suspend, s.keep_awake, s.exclude) == (20, (("*", 1), ("gpu", 2)),
                                                             frozenset({"desk"}))
        assert len(s.windows) == 2
        box = pm.machines["box"]
        assert (box.mac, box.broadcast, box.sleep_watts) == ("52:54:00:12:34:56",
                                                              "10.0.0.255", 3)
        assert box.windows is not None and len(box.windows) == 1
        assert "desk" not in pm.machines  # no mac: never suspended, never woken
        assert farm.meter.places["box"].sleep_watts == 3
    finally:
        farm.store.close()


def test_power_is_off_by_default(tmp_path: Path) -> None:
    farm = build_farm(load_config(str(conf(tmp_path, ""))))
    try:
        assert farm.power is not None and not farm.power_loop
    finally:
        farm.store.close()


@pytest.mark.parametrize(("power", "slave", "says"), [
    ("", "mac = 52:54:00:12:34\n", "mac"),
    ("", "sleep_windows = weekdays 20:00-07:00\n", "sleep_windows"),
    ("sleep_windows = mon-fri 25:00-07:00", "", "sleep_windows"),
    ("keep_awake = gpu", "", "keep_awake"),
])
def test_a_bad_power_setting_is_a_config_error_naming_it(tmp_path: Path, power: str,
                                                          slave: str, says: str) -> None:
    with pytest.raises(ConfigError, match=says):
        load_config(str(conf(tmp_path, power, slave)))


def test_slave_wake_by_hand_sends_the_packet_and_refuses_what_it_cannot_wake(
        tmp_path: Path) -> None:
    farm = build_farm(load_config(str(conf(tmp_path, "enabled = yes",
                                           "mac = 52:54:00:12:34:56\n"))))
    sent: list[tuple[str, str, int]] = []

    class Recorder:
        def wake(self, mac: str, broadcast: str, port: int) -> None:
            sent.append((mac, broadcast, port))

    try:
        assert farm.power is not None
        farm.power.waker = Recorder()
        farm.dispatchers["box"].state = "asleep"
        farm.dispatchers["box"].wake = lambda: None  # type: ignore[method-assign]
        assert farm.wake_slave("box")["mac"] == "52:54:00:12:34:56"
        assert sent == [("52:54:00:12:34:56", "255.255.255.255", 9)]
        with pytest.raises(UsageError, match="no mac"):
            farm.wake_slave("desk")
        with pytest.raises(UsageError, match="no slave"):
            farm.wake_slave("nobody")
        farm.dispatchers["box"].state = "busy"
        with pytest.raises(UsageError, match="not asleep"):
            farm.wake_slave("box")
    finally:
        farm.store.close()
