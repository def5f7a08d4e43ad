# SPDX-License-Identifier: MIT
"""Which announced addresses the master will ever dial: an mDNS record is anyone's to
publish, and accepting the slave makes the master POST a token to that address."""

import pytest

from afarm.discovery.browse import usable_address


@pytest.mark.parametrize("address", ["10.231.0.5", "192.168.1.20", "2001:db8::5"])
def test_a_lan_address_is_dialled(address: str) -> None:
    assert usable_address(address)


@pytest.mark.parametrize("address", ["127.0.0.1", "127.8.9.10", "::1", "169.254.1.1",
                                     "fe80::1", "224.0.0.251", "0.0.0.0", "::",
                                     "::ffff:127.0.0.1", "not an address"])
def test_loopback_link_local_multicast_and_unspecified_are_not(address: str) -> None:
    # Loopback would point the master's claim (and its token) at a service on the master
    # itself, on a port the record chose.
    assert not usable_address(address)
