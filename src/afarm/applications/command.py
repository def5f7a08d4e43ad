# SPDX-License-Identifier: MIT
"""command: any program over a list of items, the general-computing case."""

import re
from typing import Any

from afarm.applications.base import (
    Command,
    ConfiguredApp,
    RunContext,
    check_keys,
    int_param,
    resolve_executable,
)
from afarm.errors import ConfigError, UsageError
from afarm.model.frames import chunk
from afarm.model.job import InputFile, TaskSpec

PARAMS = {"items", "chunk"}
PLACEHOLDERS = ("{item}", "{out}", "{input}", "{index}")
# One pass over the template: what a placeholder expands to is never scanned again, so an
# item "{out}" stays the text "{out}".
_PLACEHOLDER = re.compile("|".join(re.escape(p) for p in PLACEHOLDERS))
MAX_ITEMS = 1_000_000
MAX_ITEM_LEN = 4096


def _expand(arg: str, values: dict[str, str]) -> str:
    return _PLACEHOLDER.sub(lambda m: values[m.group(0)], arg)


def item_stem(index: int) -> str:
    return f"item_{index:06d}"


class CommandApp(ConfiguredApp):
    kind = "command"

    def __init__(self, name: str, conf: dict[str, Any]) -> None:
        super().__init__(name, conf)
        self.template: list[str] = [str(a) for a in conf.get("argv", [])]
        self.capture_stdout = bool(conf.get("capture_stdout", True))
        # An item that starts an argument with "-" is an option to most programs
        # ("factor --version"): refused unless the definition says the program takes none
        # there (e.g. {item} after "--").
        self.items_may_start_with_dash = bool(conf.get("items_may_start_with_dash", False))
        self.test: list[str] = [str(a) for a in conf.get("test", [])]
        if not any("{item}" in a for a in self.template):
            raise ConfigError(f"application {name}", [
                "argv: a command application needs {item} in its argv, e.g."
                " argv = {item}, or argv = --input, {item}"])

    def validate(self, params: dict[str, Any], files: list[InputFile]) -> dict[str, Any]:
        check_keys(params, PARAMS, self.name)
        items = params.get("items")
        if not isinstance(items, list) or not items:
            raise UsageError(f"application {self.name!r} needs --items (a comma-separated list)"
                             " or --items-file (one item a line)")
        if len(items) > MAX_ITEMS:
            raise UsageError(f"--items: {len(items)} items; at most {MAX_ITEMS} in one job")
        for i, item in enumerate(items):
            if not isinstance(item, str) or "\0" in item or len(item) > MAX_ITEM_LEN:
                raise UsageError(f"--items: item {i + 1} must be text of at most {MAX_ITEM_LEN}"
                                 " characters without NUL")
            if self._dash_argument(item, {"{out}": "/out", "{index}": "1",
                                          "{input}": "/in" if files else ""}):
                raise UsageError(
                    f"--items: item {i + 1} ({item[:40]!r}) starts with '-', so "
                    f"{self.name} would read it as an option; give items that do not start "
                    "with '-' (or the application's definition may allow them with "
                    "items_may_start_with_dash = yes)")
        if any("{input}" in a for a in self.template) and not files:
            raise UsageError(f"application {self.name!r} needs an input file (give FILE)")
        return {"items": items, "chunk": int_param(params, "chunk", 1, 1, 100_000)}

    def plan(self, job_name: str, params: dict[str, Any],
             files: list[InputFile]) -> list[TaskSpec]:
        numbered = list(enumerate(params["items"], start=1))
        plan = []
        for part in chunk(numbered, params["chunk"]):
            first = part[0][0]
            outputs = ([f"out/{item_stem(i)}.out" for i, _ in part]
                       if self.capture_stdout else [])
            label = f"item {first}" if len(part) == 1 else f"items {first}..{part[-1][0]}"
            plan.append(TaskSpec(
                kind="item", label=label, application=self.name, runs_on=self.runs_on,
                params={"items": [[i, it] for i, it in part],
                        "collect_extra": f"out/{item_stem(first)}"},
                outputs=outputs, frames=0))
        return plan

    def _dash_argument(self, item: str, values: dict[str, str]) -> bool:
        """Whether ``item`` would make an argument start with '-' that the definition does
        not allow: where nothing (after expansion) comes before {item} in the argument."""
        if self.items_may_start_with_dash or not item.startswith("-"):
            return False
        return any(_expand(a.split("{item}", 1)[0], values) == ""
                   for a in self.template if "{item}" in a)

    def argv_for(self, index: int, item: str, ctx: RunContext) -> list[str]:
        values = {"{item}": item, "{out}": str(ctx.out_dir),
                  "{input}": str(ctx.inputs[0]) if ctx.inputs else "",
                  "{index}": str(index)}
        if self._dash_argument(item, values):
            # Checked at submit; again here, since a slave builds argv from its own copy
            # of the definition.
            raise UsageError(f"item {index} ({item[:40]!r}) starts with '-' and "
                             f"{self.name} does not allow that (items_may_start_with_dash)")
        argv = [resolve_executable(self.executable)]
        for arg in self.template:
            argv.append(_expand(arg, values))
        return argv

    def test_argv(self, out_dir: str) -> list[str]:
        """The acceptance test's argv ({out} filled in); empty when none is defined."""
        if not self.test:
            return []
        return [resolve_executable(self.test[0]),
                *(a.replace("{out}", out_dir) for a in self.test[1:])]

    def commands(self, kind: str, params: dict[str, Any], ctx: RunContext) -> list[Command]:
        return [Command(self.argv_for(int(i), str(item), ctx),
                        f"{item_stem(int(i))}.out" if self.capture_stdout else None)
                for i, item in params["items"]]

    def failure(self, exit_code: int, log_lines: list[str]) -> str | None:
        if exit_code != 0:
            tail = [ln for ln in log_lines if ln.strip()][-1:]
            return f"{self.name} exited {exit_code}" + (f": {tail[0]}" if tail else "")
        return None
