# SPDX-License-Identifier: MIT
"""The states a slave can be in, as `afarmctl slaves` shows them, and which are awake.

The link (master/slaves/link.py) keeps the connection's states (offline, connecting,
testing, online, busy, quarantined, unreachable, refused); the power manager adds the
states of a machine that sleeps (asleep, waking, draining, down) and discovery adds
pending. All are kept in the one `slaves.state` column of the store. `online` is a slave
connected without a task: it is shown as idle.
"""

from enum import StrEnum


class SlaveState(StrEnum):
    PENDING = "pending"  # found by discovery, not accepted: never gets work
    ASLEEP = "asleep"  # suspended by afarm; woken by Wake-on-LAN
    WAKING = "waking"  # magic packet sent, waiting for SSH within resume_timeout
    TESTING = "testing"  # connected, running its acceptance test
    IDLE = "idle"  # connected, no task (the link calls this `online`)
    BUSY = "busy"  # every slot has a task
    DRAINING = "draining"  # takes no new task; suspended once its tasks ended
    DOWN = "down"  # did not wake within resume_timeout; woken again later
    QUARANTINED = "quarantined"  # failed its acceptance test
    # The connection's own states, from before power management:
    OFFLINE = "offline"
    CONNECTING = "connecting"
    UNREACHABLE = "unreachable"
    REFUSED = "refused"


ONLINE = "online"  # the link's word for IDLE
# Drawing full idle power: everything but a machine asleep or down.
ASLEEP_STATES = frozenset({SlaveState.ASLEEP, SlaveState.DOWN})


def shown(state: str) -> str:
    """The state as `afarmctl slaves` shows it (the link's online is idle)."""
    return SlaveState.IDLE.value if state == ONLINE else state


def of(state: str) -> SlaveState:
    """A stored state as the enum; ValueError for a word no part of afarm writes."""
    return SlaveState(shown(state))
