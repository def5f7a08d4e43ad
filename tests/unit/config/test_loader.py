# SPDX-License-Identifier: MIT
import logging
from pathlib import Path

import pytest

from afarm.config.loader import allowed, load
from afarm.errors import ConfigError


def test_defaults_load_without_a_file() -> None:
    cfg = load(None, "master")
    assert cfg["job_port"]["listen"] == "127.0.0.1:7731"
    assert cfg["results_port"]["listen"] == "127.0.0.1:7732"
    assert cfg["scheduler"]["slaves_per_task"] == 3


def test_every_error_is_reported_at_once_with_its_section(tmp_path: Path) -> None:
    conf = tmp_path / "master.conf"
    conf.write_text("[scheduler]\nslaves_per_task = zero\ntask_timeout = -5\n"
                    "[master]\nlog_level = loud\n")
    with pytest.raises(ConfigError) as exc:
        load(conf, "master")
    text = str(exc.value)
    assert len(exc.value.problems) == 3
    assert "[scheduler] slaves_per_task" in text
    assert "[scheduler] task_timeout" in text
    assert "[master] log_level" in text


def test_unknown_keys_are_warned_about_not_fatal(tmp_path: Path,
                                                 caplog: pytest.LogCaptureFixture) -> None:
    conf = tmp_path / "master.conf"
    conf.write_text("[master]\nstate_dri = /tmp/x\n")
    with caplog.at_level(logging.WARNING):
        load(conf, "master")
    assert "[master] state_dri" in caplog.text


def test_a_missing_file_is_a_config_error_naming_it(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="nope.conf"):
        load(tmp_path / "nope.conf", "master")


def test_a_syntax_error_names_the_line(tmp_path: Path) -> None:
    conf = tmp_path / "master.conf"
    conf.write_text("[master\nstate_dir = /x\n")
    with pytest.raises(ConfigError, match="line 1"):
        load(conf, "master")


def test_application_spec_requires_kind_and_executable(tmp_path: Path) -> None:
    conf = tmp_path / "x.conf"
    conf.write_text("description = nothing\n")
    with pytest.raises(ConfigError) as exc:
        load(conf, "application")
    assert {p.split(":")[0] for p in exc.value.problems} == {"kind", "executable"}


@pytest.mark.parametrize(("check", "words"), [
    ("option(debug, info, warning, error, default=info)", "one of debug, info, warning, error"),
    ('option("", CYCLES, default="")', "one of '', CYCLES"),
    ("integer(min=1, max=100, default=3)", "a whole number from 1 to 100"),
    ("integer(min=1, default=3600)", "a whole number, at least 1"),
    ("boolean(default=no)", "yes or no"), ("string_list(default=list())", "list of texts")])
def test_allowed_values_are_said_in_words(check: str, words: str) -> None:
    assert words in allowed(check)
