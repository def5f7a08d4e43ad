# SPDX-License-Identifier: MIT
"""A pool version's own definition (app add --definition FILE): checked whole at add, a bad
one refused naming its key."""

import pytest

from afarm.errors import UsageError
from afarm.master.pool.definition import build, parse_definition

GOOD = "kind = command\nexecutable = tool\nargv = two, {item}\ntimeout = 60\n"


def test_a_definition_file_gives_the_versions_keys_with_the_specs_defaults() -> None:
    conf = parse_definition("tool", GOOD)
    assert conf["argv"] == ["two", "{item}"] and conf["timeout"] == 60
    assert conf["capture_stdout"] is True  # a default of application.spec
    app = build("tool", conf)
    assert app.kind == "command" and app.timeout == 60


@pytest.mark.parametrize("text,key", [
    ("kind = command\nexecutable = tool\nargv = {item},\ntimeout = 0\n", "timeout"),
    ("kind = oven\nexecutable = tool\n", "kind"),
    ("kind = command\nargv = {item},\n", "executable"),
    ("kind = command\nexecutable = tool\nargv = x\n", "argv"),
    ("kind = command\nexecutable = tool\nargv = {item},\nsped = 3\n", "'sped'"),
    ("kind = command\nexecutable = tool\nargv = {item},\nruns_on = master\n", "runs_on"),
    ("kind = blender\nexecutable = blender\nformat = GIF\n", "format"),
    ("", "empty"),
    ("kind = command\n[section\n", "line 2"),
])
def test_a_bad_definition_is_refused_naming_its_key(text: str, key: str) -> None:
    with pytest.raises(UsageError, match="--definition") as err:
        parse_definition("tool", text)
    assert key in str(err.value)


def test_a_definition_too_long_for_the_url_is_refused() -> None:
    with pytest.raises(UsageError, match="at most 4096 characters"):
        parse_definition("tool", GOOD + "description = " + "x" * 5000 + "\n")
