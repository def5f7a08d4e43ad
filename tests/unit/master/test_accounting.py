# SPDX-License-Identifier: MIT
"""The arithmetic of energy and cost: unit conversions and a time-of-day tariff."""

from datetime import UTC, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from afarm.master import accounting as acc

NIGHT_DAY = ["00:00-07:00 0.15", "07:00-23:00 0.30"]


def at(hour: int, minute: int = 0, tz: timezone = UTC) -> float:
    return datetime(2026, 12, 1, hour, minute, tzinfo=tz).timestamp()


def test_one_kilowatt_for_one_hour_is_one_kwh_and_costs_the_price() -> None:
    j = acc.joules(1000, 3600)
    assert j == 3.6e6
    assert acc.kwh(j) == 1.0
    assert acc.cost(acc.kwh(j), 0.25) == 0.25


def test_a_150_watt_slave_busy_for_a_minute_uses_2_5_watt_hours() -> None:
    assert acc.kwh(acc.joules(150, 60)) == pytest.approx(0.0025)


def test_a_tariff_prices_each_moment_by_its_period_and_the_rest_by_the_default() -> None:
    t = acc.parse_tariff(NIGHT_DAY, default=0.20)
    assert t.price_at(0) == 0.15
    assert t.price_at(7 * 3600 - 1) == 0.15
    assert t.price_at(7 * 3600) == 0.30  # a period's start belongs to it, its end does not
    assert t.price_at(23 * 3600 - 1) == 0.30
    assert t.price_at(23 * 3600) == 0.20  # 23:00-24:00 is in no period
    assert not t.covers_day()


def test_a_period_may_also_be_written_with_an_equals_sign() -> None:
    t = acc.parse_tariff(["00:00-07:00=0.15", "07:00-23:00 = 0.30"], default=0.2)
    assert (t.price_at(3600), t.price_at(8 * 3600)) == (0.15, 0.30)


def test_a_period_may_wrap_midnight_and_end_at_24_00() -> None:
    t = acc.parse_tariff(["22:00-06:00 0.10", "06:00-22:00 0.40"])
    assert t.price_at(23 * 3600) == t.price_at(3600) == 0.10
    assert t.price_at(12 * 3600) == 0.40
    assert t.covers_day()
    late = acc.parse_tariff(["23:00-24:00 0.05"], default=1.0)
    assert late.price_at(23.5 * 3600) == 0.05 and late.price_at(0) == 1.0


def test_energy_across_a_tariff_boundary_is_split_by_time() -> None:
    t = acc.parse_tariff(NIGHT_DAY, default=0.20)
    # 1 kWh evenly from 06:30 to 07:30: half at 0.15, half at 0.30.
    assert acc.priced(3.6e6, at(6, 30), at(7, 30), t, UTC) == pytest.approx(0.225)
    # Inside one period: all of it at that period's price.
    assert acc.priced(3.6e6, at(1), at(2), t, UTC) == pytest.approx(0.15)
    # Over midnight into the next day: 22:00-23:00 day, 23:00-24:00 default, 00-01 night.
    start = at(22)
    assert acc.priced(3 * 3.6e6, start, start + 3 * 3600, t, UTC) == pytest.approx(
        0.30 + 0.20 + 0.15)


def test_a_zero_length_attempt_is_priced_at_the_moment_it_ended() -> None:
    t = acc.parse_tariff(NIGHT_DAY, default=0.20)
    assert acc.priced(3.6e6, at(8), at(8), t, UTC) == pytest.approx(0.30)


def test_the_tariff_is_read_in_the_given_local_time() -> None:
    t = acc.parse_tariff(NIGHT_DAY, default=0.20)
    plus2 = timezone(timedelta(hours=2))
    # 06:00 UTC is 08:00 at +02:00: day rate there.
    assert acc.price_at(t, at(6), plus2) == 0.30
    assert acc.price_at(t, at(6), UTC) == 0.15


def test_a_daylight_saving_change_inside_an_attempt_loses_no_energy() -> None:
    t = acc.parse_tariff(["00:00-02:00 0.10", "02:00-24:00 0.10"])
    berlin = ZoneInfo("Europe/Berlin")
    start = datetime(2026, 3, 29, 1, 0, tzinfo=berlin).timestamp()  # clocks jump 2 -> 3
    assert acc.priced(3.6e6, start, start + 7200, t, berlin) == pytest.approx(0.10)


@pytest.mark.parametrize("bad, says", [
    (["7-23 0.3"], "HH:MM-HH:MM PRICE"),
    (["07:00-23:00"], "HH:MM-HH:MM PRICE"),
    (["07:00-23:00 -1"], "HH:MM-HH:MM PRICE"),
    (["25:00-23:00 0.3"], "not a time of day"),
    (["07:61-23:00 0.3"], "not a time of day"),
    (["07:00-07:00 0.3"], "whole day"),
    (["00:00-08:00 0.1", "07:00-09:00 0.2"], "overlap"),
    (["22:00-06:00 0.1", "05:00-07:00 0.2"], "overlap"),
])
def test_a_bad_tariff_is_refused_with_what_is_wrong(bad: list[str], says: str) -> None:
    with pytest.raises(ValueError, match=says):
        acc.parse_tariff(bad)


def test_measured_energy_is_believed_only_within_bounds() -> None:
    assert acc.measured_is_plausible(3600.0, 60)
    assert not acc.measured_is_plausible(None, 60)
    assert not acc.measured_is_plausible(-1.0, 60)
    assert not acc.measured_is_plausible(float("nan"), 60)
    assert not acc.measured_is_plausible(acc.MAX_MEASURED_WATTS * 61, 60)
