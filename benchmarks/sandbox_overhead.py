#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""Measure what the task sandbox adds to one process and to one task, and print the figures.

(a) One process: /bin/true, factor and `python3 -c pass`, started plainly and through
    Sandbox.wrap (this process's own mode: root's two-bwrap path when run as root) and, when
    root, as nobody through the unprivileged path (against a plain run as nobody).
(b) One task through the agent (in process): a `command` task of /bin/true and of factor,
    with the real sandbox and with a pass-through one. Medians of --runs runs each.
"""

import argparse
import dataclasses
import io
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src"), str(ROOT)]

from afarm.applications.registry import load_applications  # noqa: E402
from afarm.runner.sandbox import SETPRIV, Sandbox, build_argv  # noqa: E402
from afarm.slave.agent import Agent, Running  # noqa: E402

NOBODY = ["--reuid=65534", "--regid=65534", "--clear-groups", "--"]


class PassThrough(Sandbox):
    def wrap(self, argv: Sequence[str], in_dir: Path, out_dir: Path,
             scratch: Path) -> list[str]:
        return list(argv)


def median_ms(argv: list[str], cwd: Path, runs: int) -> float:
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        subprocess.run(argv, cwd=cwd, stdout=subprocess.DEVNULL,  # noqa: S603
                       stderr=subprocess.DEVNULL, check=True)
        times.append((time.perf_counter() - t) * 1000)
    return statistics.median(times)


def per_process(base: Path, runs: int) -> None:
    dirs = (base / "in", base / "out", base / "scratch")
    for d in dirs:
        d.mkdir()
    sandbox = Sandbox()
    for name, argv in (("true", ["/bin/true"]), ("factor", ["/usr/bin/factor", "600851475143"]),
                       ("python3 -c pass", ["/usr/bin/python3", "-I", "-c", "pass"])):
        plain = median_ms(argv, dirs[2], runs)
        wrapped = median_ms(sandbox.wrap(argv, *dirs), dirs[2], runs)
        line = f"{name:16s} plain {plain:6.2f} ms, sandboxed {wrapped:6.2f} ms " \
               f"(+{wrapped - plain:.2f})"
        if os.geteuid() == 0:
            for d in dirs:
                os.chown(d, 65534, 65534)
                d.chmod(0o755)
            plan = dataclasses.replace(sandbox.plan(argv), user=None)
            as_nobody = median_ms([SETPRIV, *NOBODY, *argv], dirs[2], runs)
            unpriv = median_ms([SETPRIV, *NOBODY, *build_argv(argv, *dirs, plan)], dirs[2],
                               runs)
            line += f"; as nobody {as_nobody:.2f} ms, unprivileged sandbox {unpriv:.2f} ms " \
                    f"(+{unpriv - as_nobody:.2f})"
        print(line)


def per_task(base: Path, runs: int) -> None:
    apps = base / "apps"
    apps.mkdir()
    (apps / "factor.conf").write_text("kind = command\nexecutable = /usr/bin/factor\n"
                                      "argv = {item},\n")
    (apps / "true.conf").write_text("kind = command\nexecutable = /bin/true\nargv = {item},\n"
                                    "capture_stdout = false\n")
    for app in ("true", "factor"):
        result = {}
        for label, sandbox in (("plain", PassThrough()), ("sandboxed", Sandbox())):
            agent = Agent("bench", base / f"work-{app}-{label}", load_applications(apps),
                          io.BytesIO(), sandbox)
            times = []
            for task in range(runs):
                msg: dict[str, Any] = {
                    "op": "run", "job": 1, "task": task, "attempt": 1, "app": app,
                    "kind": "item", "params": {"items": [[1, "600851475143"]]},
                    "outputs": ["item_000001.out"] if app == "factor" else [], "timeout": 30}
                agent.running[(task, 1)] = Running(task, 1)
                t = time.perf_counter()
                agent.run_task(msg, 1, task, 1)
                times.append((time.perf_counter() - t) * 1000)
            assert isinstance(agent.out, io.BytesIO)
            last = json.loads(agent.out.getvalue().splitlines()[-1])
            assert last["error"] is None, last
            result[label] = statistics.median(times)
        print(f"task {app:10s} plain {result['plain']:6.2f} ms, sandboxed "
              f"{result['sandboxed']:6.2f} ms (+{result['sandboxed'] - result['plain']:.2f})")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--runs", type=int, default=50)
    a = p.parse_args()
    problem = Sandbox().check()
    if problem:
        print(f"sandbox_overhead: {problem}", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        base.chmod(0o711)  # nobody walks to the job dirs itself
        (base / "p").mkdir()
        per_process(base / "p", a.runs)
        per_task(base, a.runs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
