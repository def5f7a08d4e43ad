# SPDX-License-Identifier: MIT
from pathlib import Path

import pytest

from afarm.applications.registry import load_applications
from afarm.errors import ConfigError

ROOT = Path(__file__).resolve().parents[3]
SHIPPED = ROOT / "etc" / "afarm" / "applications.d"
EXAMPLES = ROOT / "examples" / "applications.d"


def test_the_shipped_application_definitions_load() -> None:
    apps = load_applications(SHIPPED)
    assert {"blender", "ffmpeg", "factor"} <= set(apps)
    # sleep keeps a slave busy as long as a job asks: an example, not enabled everywhere.
    assert "sleep" not in apps
    assert set(load_applications(EXAMPLES)) == {"sleep"}
    assert apps["blender"].kind == "blender" and apps["ffmpeg"].runs_on == "master"


def test_every_broken_definition_is_reported_at_once(tmp_path: Path) -> None:
    (tmp_path / "a.conf").write_text("kind = blender\n")
    (tmp_path / "b.conf").write_text("kind = maya\nexecutable = /bin/true\n")
    (tmp_path / "Bad Name.conf").write_text("kind = blender\nexecutable = blender\n")
    with pytest.raises(ConfigError) as exc:
        load_applications(tmp_path)
    text = str(exc.value)
    assert "a.conf: executable" in text and "b.conf: kind" in text and "rename" in text


def test_a_missing_directory_says_which_setting_to_fix(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="applications_dir"):
        load_applications(tmp_path / "nope")
