# SPDX-License-Identifier: MIT
"""The slave-name rule, written once: slaves.d files, enrolment and the master all use it.

A name becomes a file name (slaves.d/NAME.conf), a log word and a config section, so it
is letters, digits, '.', '_' and '-', starts with a letter or digit, at most 63 long.
'master' (master-side follow-ups run there) and local-N (the master's local slaves) are
taken.
"""

from __future__ import annotations

import re

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}")
RULE = ("a slave name is letters, digits, '.', '_' or '-', starts with a letter or digit,"
        " at most 63 long, and is not 'master' or local-N")


def is_plain_name(text: str) -> bool:
    """Letters, digits, '.', '_', '-', starting with a letter or digit, at most 63: the
    shape of a slave name, also asked of a user name that goes into a definition."""
    # fullmatch: with re.match and '$', a trailing newline would pass.
    return _NAME.fullmatch(text) is not None


def is_slave_name(name: str) -> bool:
    return is_plain_name(name) and name != "master" and not name.startswith("local-")
