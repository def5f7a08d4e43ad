# SPDX-License-Identifier: MIT
"""Connection caps: per client address and in all, below the file-descriptor limit."""

from afarm.master.http.limits import FD_RESERVE, Limits


def test_one_address_cannot_take_more_than_its_share() -> None:
    limits = Limits(max_connections=100, per_client=3)
    assert [limits.admit("10.0.0.9") for _ in range(3)] == [None] * 3
    assert "from it" in (limits.admit("10.0.0.9") or "")
    assert limits.admit("10.0.0.8") is None
    limits.release("10.0.0.9")
    assert limits.admit("10.0.0.9") is None


def test_the_global_cap_holds_and_frees() -> None:
    limits = Limits(max_connections=4, per_client=10)
    for i in range(4):
        assert limits.admit(f"10.0.0.{i}") is None
    assert "limit 4" in (limits.admit("10.0.0.99") or "")
    for i in range(4):
        limits.release(f"10.0.0.{i}")
    assert limits.total == 0 and limits.open == {}


def test_the_cap_stays_below_the_descriptor_limit() -> None:
    limits = Limits(max_connections=4096)
    limits.fit_fd_limit(1024)
    assert limits.max_connections == 1024 - FD_RESERVE


class Waiting:
    """A connection that has sent no complete headers yet."""

    def __init__(self, limits: Limits, peer: str) -> None:
        self.limits, self.peer, self.evicted = limits, peer, False
        assert limits.admit(peer, self) is None

    def evict(self) -> None:
        self.evicted = True
        self.limits.release(self.peer, self)


def test_when_full_a_new_connection_replaces_the_oldest_one_still_waiting() -> None:
    limits = Limits(max_connections=3, per_client=10)
    first, second = Waiting(limits, "10.0.0.1"), Waiting(limits, "10.0.0.2")
    busy = Waiting(limits, "10.0.0.3")
    limits.started(busy)  # sent its request: never evicted
    newcomer = Waiting(limits, "10.0.0.4")
    assert first.evicted and not second.evicted and not busy.evicted
    assert limits.total == 3 and list(limits.pending) == [second, newcomer]
    limits.started(second)
    limits.started(newcomer)
    assert "limit 3" in (limits.admit("10.0.0.5") or "")  # all busy: refused
