# SPDX-License-Identifier: MIT
"""File names made from what users type: their letters kept, nothing that leaves a
directory or hides what it is."""

import pytest

from afarm.applications.base import plain_name, relative_name
from afarm.applications.blender import MAX_STEM_BYTES, safe_stem
from afarm.errors import UsageError


@pytest.mark.parametrize(("name", "stem"), [
    ("ñøn-äscii ☃", "ñøn-äscii_☃"),
    ("shot 010.blend", "shot_010.blend"),
    ("日本語のショット", "日本語のショット"),
    ("Ελληνικά/../../etc/passwd", "Ελληνικά_.._.._etc_passwd"),
    ("..", "job"),
    ("../x", "x"),
    ("-rf", "rf"),
    ("a\\b", "a_b"),
    ("tab\there\nnew", "tab_here_new"),
    ("evil\u202egnp.exe", "evil_gnp.exe"),  # a bidi override is not kept
    ("zero\u200bwidth", "zero_width"),
    ("a\u2215b", "a_b"),  # a division slash looks like '/'
    ("☃", "☃"),
    ("", "job"),
    ("e\u0301", "é"),  # NFC: one character, as most file systems show it
])
def test_a_job_name_becomes_a_stem_that_keeps_the_users_letters(name: str, stem: str) -> None:
    assert safe_stem(name) == stem


def test_a_long_name_is_cut_between_characters_within_the_byte_bound() -> None:
    stem = safe_stem("ø" * 300)
    assert len(stem.encode()) <= MAX_STEM_BYTES and stem == "ø" * (MAX_STEM_BYTES // 2)
    assert safe_stem("☃" * 300).encode().decode() == "☃" * (MAX_STEM_BYTES // 3)


def test_a_backslash_in_a_file_name_is_refused_naming_the_backslash() -> None:
    with pytest.raises(UsageError, match=r"holds a backslash \('\\'\)"):
        relative_name("textures\\wood.png", "input file name")
    with pytest.raises(UsageError, match="backslash"):
        plain_name("a\\b", "output path part")


def test_other_bad_names_keep_their_message() -> None:
    with pytest.raises(UsageError, match="must be a plain file name"):
        plain_name("..", "input file name")
    assert plain_name("ñøn_☃.mp4", "x") == "ñøn_☃.mp4"
