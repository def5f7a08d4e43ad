# SPDX-License-Identifier: MIT
from pathlib import Path

import pytest

from afarm.applications.base import RunContext
from afarm.applications.command import CommandApp
from afarm.errors import ConfigError, UsageError

APP = CommandApp("factor", {"executable": "/usr/bin/factor", "argv": ["--", "{item}"]})


def test_each_item_is_one_argument_whatever_it_contains(tmp_path: Path) -> None:
    items = ["12", "a b; rm -rf / $(id) `x` | y"]
    params = APP.validate({"items": items, "chunk": 2}, [])
    plan = APP.plan("j", params, [])
    assert len(plan) == 1 and plan[0].outputs == ["out/item_000001.out", "out/item_000002.out"]
    ctx = RunContext(inputs=[], out_dir=tmp_path, scratch=tmp_path, outputs=[])
    cmds = APP.commands("item", plan[0].params, ctx)
    assert [c.argv for c in cmds] == [["/usr/bin/factor", "--", items[0]],
                                      ["/usr/bin/factor", "--", items[1]]]
    assert [c.stdout_name for c in cmds] == ["item_000001.out", "item_000002.out"]


def test_a_command_without_item_placeholder_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="{item}"):
        CommandApp("x", {"executable": "/bin/true", "argv": ["--help"]})


@pytest.mark.parametrize("params", [{}, {"items": []}, {"items": "1,2"},
                                    {"items": ["a\0b"]}, {"items": ["1"], "frames": "1"}])
def test_bad_items_are_usage_errors(params: dict[str, object]) -> None:
    with pytest.raises(UsageError):
        APP.validate(params, [])


def _argv(app: CommandApp, item: str, tmp_path: Path) -> list[str]:
    params = app.validate({"items": [item]}, [])
    ctx = RunContext(inputs=[], out_dir=tmp_path / "out", scratch=tmp_path, outputs=[])
    return app.commands("item", app.plan("j", params, [])[0].params, ctx)[0].argv


@pytest.mark.parametrize("item", ["{out}", "{input}/x", "{index}", "{item}{item}",
                                  "a{out}b"])
def test_placeholders_inside_an_item_stay_literal_text(item: str, tmp_path: Path) -> None:
    app = CommandApp("echo", {"executable": "/bin/echo", "argv": ["{out}/{item}", "{item}"]})
    assert _argv(app, item, tmp_path)[1:] == [f"{tmp_path / 'out'}/{item}", item]


@pytest.mark.parametrize("item", ["--version", "-", "-rf", "--help=x"])
def test_an_item_that_would_start_an_argument_with_a_dash_is_refused_at_submit(
        item: str) -> None:
    app = CommandApp("factor", {"executable": "/usr/bin/factor", "argv": ["{item}"]})
    with pytest.raises(UsageError, match=r"item 2 .*starts with '-'.*"
                                         r"items_may_start_with_dash = yes"):
        app.validate({"items": ["12", item]}, [])


def test_the_dash_check_is_repeated_where_the_argv_is_built(tmp_path: Path) -> None:
    # A slave builds argv from its own copy of the definition: it refuses too.
    app = CommandApp("factor", {"executable": "/usr/bin/factor", "argv": ["{item}"]})
    ctx = RunContext(inputs=[], out_dir=tmp_path, scratch=tmp_path, outputs=[])
    with pytest.raises(UsageError, match="starts with '-'"):
        app.commands("item", {"items": [[1, "--version"]]}, ctx)


@pytest.mark.parametrize("argv", [["{out}/{item}"], ["x{item}"], ["--n={item}"],
                                  ["{index}-{item}"]])
def test_a_dash_item_is_fine_where_it_does_not_start_the_argument(
        argv: list[str], tmp_path: Path) -> None:
    app = CommandApp("echo", {"executable": "/bin/echo", "argv": argv})
    assert _argv(app, "-5", tmp_path)[1].endswith("-5")


def test_a_definition_may_allow_items_starting_with_a_dash(tmp_path: Path) -> None:
    app = CommandApp("factor", {"executable": "/usr/bin/factor", "argv": ["--", "{item}"],
                                "items_may_start_with_dash": True})
    assert _argv(app, "-5", tmp_path) == ["/usr/bin/factor", "--", "-5"]
