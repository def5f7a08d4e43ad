# SPDX-License-Identifier: MIT
"""The Wake-on-LAN magic packet and afarm's own sender."""

import socket

import pytest

from afarm.master.slaves.wol import WakeOnLan, check_mac, magic_packet, send_own


def test_the_magic_packet_is_six_ff_bytes_then_the_mac_sixteen_times() -> None:
    p = magic_packet("52:54:00:AB:cd:01")
    assert len(p) == 102
    assert p[:6] == b"\xff" * 6
    assert p[6:] == bytes([0x52, 0x54, 0x00, 0xAB, 0xCD, 0x01]) * 16


@pytest.mark.parametrize("mac", ["52-54-00-ab-cd-01", "525400abcd01"])
def test_dashes_and_bare_hex_name_the_same_mac(mac: str) -> None:
    assert check_mac(mac) == "525400abcd01"


@pytest.mark.parametrize("mac", ["52:54:00:ab:cd", "zz:54:00:ab:cd:01", "52:54-00:ab:cd:01",
                                 ""])
def test_a_bad_mac_is_refused_with_the_expected_form(mac: str) -> None:
    with pytest.raises(ValueError, match="six hex bytes"):
        check_mac(mac)


def test_the_own_sender_puts_the_packet_on_the_wire() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as rx:
        rx.bind(("127.0.0.1", 0))
        rx.settimeout(5)
        send_own("52:54:00:ab:cd:01", "127.0.0.1", rx.getsockname()[1])
        assert rx.recv(200) == magic_packet("525400abcd01")


def test_without_the_module_the_waker_uses_its_own_sender() -> None:
    w = WakeOnLan(prefer_module=False)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as rx:
        rx.bind(("127.0.0.1", 0))
        rx.settimeout(5)
        w.wake("52:54:00:ab:cd:02", "127.0.0.1", rx.getsockname()[1])
        assert rx.recv(200) == magic_packet("52:54:00:ab:cd:02")
