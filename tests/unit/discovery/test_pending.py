# SPDX-License-Identifier: MIT
"""What the master makes of announcements: pending, bound to the first fingerprint, bounded."""

from afarm.discovery.pending import accept_problem, judge
from afarm.discovery.txt import Announcement
from afarm.store.discovered import ACCEPTED, KNOWN, PENDING

FP1 = "SHA256:" + "A" * 43
FP2 = "SHA256:" + "B" * 43


def ann(name: str = "render1", fp: str = FP1, claim: int = 7733) -> Announcement:
    return Announcement(name, fp, ("52:54:00:12:34:56",), "0.2.0", 22, claim)


def test_a_new_name_becomes_pending_with_a_note_telling_how_to_accept_it() -> None:
    v = judge(ann(), "10.0.0.5", None, None, 0, 100.0)
    assert v.row is not None and v.row.state == PENDING and v.row.fingerprint == FP1
    assert v.row.address == "10.0.0.5" and v.row.first_seen == 100.0
    assert "afarmctl slave accept render1" in v.note and not v.warning


def test_a_pending_slave_seen_again_moves_its_address_and_keeps_its_first_sighting() -> None:
    first = judge(ann(), "10.0.0.5", None, None, 0, 100.0).row
    v = judge(ann(), "10.0.0.9", first, None, 1, 160.0)
    assert v.row is not None and v.row.address == "10.0.0.9"
    assert (v.row.first_seen, v.row.last_seen) == (100.0, 160.0) and not v.warning


def test_another_fingerprint_under_a_pending_name_is_refused_loudly_and_blocks_accept() -> None:
    first = judge(ann(), "10.0.0.5", None, None, 0, 100.0).row
    v = judge(ann(fp=FP2), "10.0.0.66", first, None, 1, 130.0)
    assert v.row is not None and v.row.fingerprint == FP1 and v.row.address == "10.0.0.5"
    assert FP2 in v.warning and FP1 in v.warning and v.row.warning == v.warning
    assert "refused" in (accept_problem(v.row, "render1", FP1) or "")
    # The warning sticks, also when the first machine announces itself again.
    again = judge(ann(), "10.0.0.5", v.row, None, 1, 140.0)
    assert again.row is not None and again.row.warning == v.warning


def test_pending_entries_are_bounded() -> None:
    v = judge(ann(), "10.0.0.5", None, None, 64, 100.0)
    assert v.row is None and "64 slaves wait already" in v.warning


def test_an_enrolled_slave_with_its_trusted_key_is_known_and_never_pending() -> None:
    v = judge(ann(), "10.0.0.5", None, {FP1}, 0, 100.0)
    assert v.row is not None and v.row.state == KNOWN and not v.warning and not v.note


def test_an_enrolled_slave_announced_with_another_key_is_refused_loudly() -> None:
    v = judge(ann(fp=FP2), "10.0.0.66", None, {FP1}, 0, 100.0)
    assert v.row is not None and v.row.state == KNOWN and v.row.fingerprint == FP1
    assert "the master trusts " + FP1 in v.warning
    assert "afarmctl slave token --replace render1" in v.warning


def test_accept_is_bound_to_the_fingerprint_the_admin_saw() -> None:
    row = judge(ann(), "10.0.0.5", None, None, 0, 100.0).row
    assert accept_problem(row, "render1", FP1) is None
    assert "changed since you looked" in (accept_problem(row, "render1", FP2) or "")
    assert "no pending slave" in (accept_problem(None, "render1", FP1) or "")


def test_a_known_slave_or_one_without_a_claim_port_cannot_be_accepted() -> None:
    known = judge(ann(), "10.0.0.5", None, {FP1}, 0, 100.0).row
    assert "no pending slave" in (accept_problem(known, "render1", FP1) or "")
    silent = judge(ann(claim=0), "10.0.0.5", None, None, 0, 100.0).row
    assert "afarmctl slave token" in (accept_problem(silent, "render1", FP1) or "")


def test_an_accepted_slave_whose_enrolment_did_not_finish_may_be_accepted_again() -> None:
    row = judge(ann(), "10.0.0.5", None, None, 0, 100.0).row
    assert row is not None
    from dataclasses import replace

    assert accept_problem(replace(row, state=ACCEPTED), "render1", FP1) is None


def test_an_impostor_of_an_enrolled_slave_does_not_move_where_it_is_woken() -> None:
    known = judge(ann(), "10.0.0.5", None, {FP1}, 0, 100.0).row
    fake = Announcement("render1", FP2, ("66:66:66:66:66:66",), "0.2.0", 22, 0)
    v = judge(fake, "10.0.0.66", known, {FP1}, 0, 130.0)
    assert v.row is not None and v.warning
    assert (v.row.address, v.row.macs, v.row.fingerprint) == ("10.0.0.5",
                                                              ("52:54:00:12:34:56",), FP1)


def test_a_withdrawn_pending_slave_is_gone_and_back_pending_when_announced_again() -> None:
    from afarm.discovery.pending import lost
    from afarm.store.discovered import GONE

    first = judge(ann(), "10.0.0.5", None, None, 0, 100.0).row
    gone = lost(first, 200.0)
    assert gone is not None and (gone.state, gone.last_seen) == (GONE, 200.0)
    assert "left the network" in (accept_problem(gone, "render1", FP1) or "")
    back = judge(ann(), "10.0.0.7", gone, None, 1, 300.0)
    assert back.row is not None and back.row.state == PENDING and "back" in back.note
    assert back.row.first_seen == 100.0
    # another key under the gone name is refused as under a pending one
    other = judge(ann(fp=FP2), "10.0.0.66", gone, None, 1, 300.0)
    assert other.warning and other.row is not None and other.row.fingerprint == FP1
    known = judge(ann(), "10.0.0.5", None, {FP1}, 0, 100.0).row
    assert lost(known, 200.0) is None and lost(None, 200.0) is None


def test_an_impostor_right_after_the_accept_does_not_move_the_accepted_slave() -> None:
    from dataclasses import replace

    pending = judge(ann(), "10.0.0.5", None, None, 0, 100.0).row
    assert pending is not None
    accepted = replace(pending, state=ACCEPTED)
    fake = Announcement("render1", FP2, (), "0.2.0", 22, 0)
    v = judge(fake, "10.0.0.66", accepted, {FP1}, 0, 130.0)
    assert v.row is not None and v.row.state == KNOWN and v.warning
    assert (v.row.address, v.row.macs) == ("10.0.0.5", ("52:54:00:12:34:56",))
