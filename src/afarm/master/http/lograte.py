# SPDX-License-Identifier: MIT
"""A log filter that lets each kind of message through a few times a minute, no more.

Under attack (a flood of refused connections or bad requests) every refusal is worth one
line, but not a million: the same message template is logged at most ``burst`` times per
``window`` seconds; the next line logged after a quiet window says how many were dropped.
"""

import logging
import time
from collections.abc import Callable

MAX_KEYS = 2000


class RateLimit(logging.Filter):
    def __init__(self, burst: int = 10, window: float = 60.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self.burst, self.window, self.clock = burst, window, clock
        # (logger, template) -> [window start, lines logged in it, lines dropped]
        self._seen: dict[tuple[str, str], list[float]] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        key = (record.name, str(record.msg))
        now = self.clock()
        state = self._seen.get(key)
        if state is None:
            if len(self._seen) >= MAX_KEYS:  # templates are few; a flood of keys is not
                self._seen.clear()
            self._seen[key] = [now, 1, 0]
            return True
        if now - state[0] >= self.window:
            dropped = int(state[2])
            state[:] = [now, 1, 0]
            if dropped:
                record.msg = f"{record.msg} [{dropped} more like this were not logged]"
            return True
        if state[1] < self.burst:
            state[1] += 1
            return True
        state[2] += 1
        return False


class QuietBadRequests(logging.Filter):
    """aiohttp logs every malformed request as an ERROR with a traceback; it is the client's
    mistake, not the master's: one WARNING line without the traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        from aiohttp.http_exceptions import HttpProcessingError

        exc = record.exc_info[1] if record.exc_info else None
        if record.name == "aiohttp.server" and isinstance(exc, HttpProcessingError):
            record.msg, record.args = "malformed request refused: %s", (exc,)
            record.exc_info, record.exc_text = None, None
            record.levelno, record.levelname = logging.WARNING, "WARNING"
        return True
