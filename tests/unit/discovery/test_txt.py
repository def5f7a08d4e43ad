# SPDX-License-Identifier: MIT
"""The _afarm._tcp TXT record: round trip, and every hostile shape refused with a reason."""

import pytest

from afarm.discovery.txt import MAX_ITEM, Announcement, BadRecord, decode, encode

FP = "SHA256:" + "Ab0+/" * 8 + "xyz"
A = Announcement("render1", FP, ("52:54:00:12:34:56", "52:54:00:ab:cd:ef"), "0.2.0", 22, 7733)


def test_an_announcement_survives_encoding_and_decoding() -> None:
    assert decode(encode(A)) == A


def test_the_record_carries_fingerprint_macs_version_and_name_as_plain_items() -> None:
    items = encode(A)
    assert b"fp=" + FP.encode() in items
    assert b"mac=52:54:00:12:34:56,52:54:00:ab:cd:ef" in items
    assert b"ver=0.2.0" in items and b"name=render1" in items and b"claim=7733" in items
    assert all(len(i) <= MAX_ITEM for i in items)


def test_a_slave_that_takes_no_claims_announces_no_claim_port() -> None:
    a = Announcement("render1", FP, (), "0.2.0")
    assert not any(i.startswith(b"claim=") for i in encode(a))
    assert decode(encode(a)).claim_port == 0


def test_unknown_keys_are_ignored_and_a_repeated_key_counts_once() -> None:
    items = [*encode(A), b"future=1", b"name=evil", b"fp=SHA256:" + b"A" * 43]
    assert decode(items) == A


@pytest.mark.parametrize(("items", "why"), [
    ([b"name=r1"], "txtvers"),
    ([b"txtvers=2", b"name=r1"], "txtvers"),
    ([b"txtvers=1", b"name=../etc", b"fp=" + FP.encode(), b"ver=1"], "name"),
    ([b"txtvers=1", b"name=master", b"fp=" + FP.encode(), b"ver=1"], "name"),
    ([b"txtvers=1", b"name=r1", b"fp=MD5:aa", b"ver=1"], "fp"),
    ([b"txtvers=1", b"name=r1", b"fp=" + FP.encode(), b"ver=1 2"], "ver"),
    ([b"txtvers=1", b"name=r1", b"fp=" + FP.encode(), b"ver=1", b"mac=zz"], "mac"),
    ([b"txtvers=1", b"name=r1", b"fp=" + FP.encode(), b"ver=1",
      b"mac=" + b",".join([b"52:54:00:12:34:56"] * 9)], "mac"),
    ([b"txtvers=1", b"name=r1", b"fp=" + FP.encode(), b"ver=1", b"ssh=0"], "ssh"),
    ([b"txtvers=1", b"name=r1", b"fp=" + FP.encode(), b"ver=1", b"claim=99999"], "claim"),
    ([b"txtvers=1", b"name=r1", b"fp=" + FP.encode(), b"ver=1", b"claim=-1"], "claim"),
    ([b"txtvers=1", b"name=r\xff", b"fp=" + FP.encode(), b"ver=1"], "ASCII"),
    ([b"txtvers=1", b"x=" + b"a" * 300], "longer than 255"),
    ([b"txtvers=1"] + [b"k=" + b"a" * 200] * 7, "larger than"),
    ([b"a=1"] * 17, "more than 16"),
])
def test_a_hostile_record_is_refused_with_the_reason(items: list[bytes], why: str) -> None:
    with pytest.raises(BadRecord, match=why):
        decode(items)


def test_encoding_refuses_what_decoding_would_refuse() -> None:
    with pytest.raises(BadRecord, match="name"):
        encode(Announcement("local-1", FP, (), "0.2.0"))
