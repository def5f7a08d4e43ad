# SPDX-License-Identifier: MIT
"""Text for the user's terminal: what others wrote (a .blend's paths, a task's error or
log, a slave's message) is shown with its control characters spelled out, so it cannot
set the window title, write the clipboard (OSC 52), erase or hide lines, or make the
terminal answer back as if typed."""

import re

# C0 (but newline and tab), DEL and C1: UTF-8 terminals take C1 characters as controls too.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def printable(text: str) -> str:
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)
