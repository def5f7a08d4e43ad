# SPDX-License-Identifier: MIT
"""A flood of one log message is cut to a few lines a minute and counted."""

import logging

from afarm.master.http.lograte import RateLimit


def record(msg: str, *args: object) -> logging.LogRecord:
    return logging.LogRecord("afarm.master.http", logging.WARNING, __file__, 1, msg, args,
                             None)


def test_a_flood_of_one_message_is_cut_and_the_dropped_lines_counted() -> None:
    now = [0.0]
    limit = RateLimit(burst=10, window=60, clock=lambda: now[0])
    passed = sum(limit.filter(record("refused %s from %s", "GET", f"10.0.0.{i % 250}"))
                 for i in range(100_000))
    assert passed == 10
    now[0] = 61.0
    later = record("refused %s from %s", "GET", "10.0.0.1")
    assert limit.filter(later)
    assert "99990 more like this were not logged" in later.getMessage()


def test_different_messages_are_counted_apart() -> None:
    limit = RateLimit(burst=1, window=60, clock=lambda: 0.0)
    assert limit.filter(record("a %s", 1)) and limit.filter(record("b %s", 1))
    assert not limit.filter(record("a %s", 2))


def test_a_malformed_request_is_one_warning_line_without_a_traceback() -> None:
    from aiohttp.http_exceptions import BadHttpMessage

    from afarm.master.http.lograte import QuietBadRequests

    try:
        raise BadHttpMessage("Invalid header value char")
    except BadHttpMessage:
        import sys

        rec = logging.LogRecord("aiohttp.server", logging.ERROR, __file__, 1,
                                "Error handling request", (), sys.exc_info())
    assert QuietBadRequests().filter(rec)
    assert rec.levelname == "WARNING" and rec.exc_info is None
    assert "Invalid header value char" in rec.getMessage()
