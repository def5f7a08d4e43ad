# SPDX-License-Identifier: MIT
"""Version constraints written like Debian dependencies, matched as Debian compares."""

import pytest

from afarm.errors import UsageError
from afarm.master.scheduling.versions import choose, newest, parse_constraint

POOL = ["3.4.1", "4.2.0", "4.2.3", "5.0.0~beta1", "5.0.0", "4.10.0"]


def test_the_newest_version_satisfying_every_clause_is_chosen() -> None:
    assert choose(parse_constraint("blender (>= 4.2), blender (<< 5)"), POOL) == "4.10.0"
    assert choose(parse_constraint("blender (<< 4)"), POOL) == "3.4.1"
    assert choose(parse_constraint("blender (= 4.2.0)"), POOL) == "4.2.0"
    assert choose(parse_constraint("blender"), POOL) == "5.0.0"


def test_versions_compare_as_debian_compares_them() -> None:
    assert newest(POOL) == ["5.0.0", "5.0.0~beta1", "4.10.0", "4.2.3", "4.2.0", "3.4.1"]
    assert choose(parse_constraint("blender (<< 5.0.0)"), POOL) == "5.0.0~beta1"
    assert choose(parse_constraint("blender (<< 5~)"), POOL) == "4.10.0"
    assert choose(parse_constraint("blender (>> 4.10.0), blender (<= 5.0.0~beta1)"),
                  POOL) == "5.0.0~beta1"


def test_an_unsatisfiable_constraint_is_refused_listing_the_versions() -> None:
    with pytest.raises(UsageError, match=r"the pool has: 5.0.0, 5.0.0~beta1, 4.10.0"):
        choose(parse_constraint("blender (>= 9)"), POOL)
    with pytest.raises(UsageError, match="no version of 'blender' is in the pool"):
        choose(parse_constraint("blender (>= 4)"), [])


@pytest.mark.parametrize("text", [
    "blender (>= 4.2) | blender (<< 3)", "blender (>= 4.2), ffmpeg (>= 5)",
    "blender (~= 4)", "blender (>= 4; rm -rf /)", "blender (>= x4)", "", "Blender",
    "blender (>= 4.2", "blender " + "(>= 1), " * 100])
def test_malformed_constraints_are_refused_with_the_expected_form(text: str) -> None:
    with pytest.raises(UsageError, match="--app|Debian-style version"):
        parse_constraint(text)
