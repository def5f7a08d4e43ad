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
