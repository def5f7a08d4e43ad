# SPDX-License-Identifier: MIT
"""Energy per day, awake versus asleep, from the slaves' state changes in the store."""

from datetime import UTC, datetime
from pathlib import Path

from afarm.master import accounting
from afarm.store import usage
from afarm.store.db import Store

DAY1 = datetime(2026, 12, 1, tzinfo=UTC).timestamp()


def test_state_changes_become_spans_clipped_to_the_period(tmp_path: Path) -> None:
    now = [DAY1 - 3600]
    store = Store(tmp_path / "a.db", clock=lambda: now[0])
    store.set_slave("s", "online")
    now[0] = DAY1 + 3600
    store.set_slave("s", "asleep")
    now[0] = DAY1 + 5 * 3600
    store.set_slave("s", "waking")
    spans = usage.state_spans(store.db, DAY1, DAY1 + 6 * 3600)
    store.close()
    assert spans == [("s", "online", DAY1, DAY1 + 3600),
                     ("s", "asleep", DAY1 + 3600, DAY1 + 5 * 3600),
                     ("s", "waking", DAY1 + 5 * 3600, DAY1 + 6 * 3600)]


def test_asleep_hours_count_at_sleep_watts_and_awake_ones_at_idle_watts() -> None:
    spans = [("s", "online", DAY1, DAY1 + 2 * 3600),
             ("s", "asleep", DAY1 + 2 * 3600, DAY1 + 26 * 3600),  # into the next day
             ("s", "unreachable", DAY1 + 26 * 3600, DAY1 + 27 * 3600),
             ("t", "busy", DAY1, DAY1 + 3600)]
    days = accounting.energy_by_day(spans, {"s": 60.0, "t": 80.0}, {"s": 2.0}, UTC)
    d1, d2 = days["2026-12-01"], days["2026-12-02"]
    assert (d1.awake_hours, d1.asleep_hours) == (3.0, 22.0)
    assert abs(d1.idle_kwh - 0.12) < 1e-9  # 2 h x 60 W; t's busy hour is in usage
    assert abs(d1.asleep_kwh - 0.044) < 1e-9  # 22 h x 2 W
    assert (d2.asleep_hours, d2.awake_hours) == (2.0, 0.0)  # unreachable: unknown
