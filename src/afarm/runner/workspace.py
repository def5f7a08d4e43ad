# SPDX-License-Identifier: MIT
"""A task's directory and the contract for its inputs, the same on slaves and the master.

`BASE/in/` holds the inputs, each linked under the name the master chose for it (a job's
files keep their relative names, so a .blend finds `textures/wood.png` beside it; the
outputs a follow-up reads are named `input_000001.png`, ... in order, so a tool reading a
numbered pattern sees no gaps). `BASE/out/` receives the outputs, `BASE/scratch/` is the
working directory. Nothing a task names can leave BASE.
"""

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from afarm.applications.base import RunContext, relative_name


def sequence_name(n: int, like: str) -> str:
    """The name of the n-th (from 1) output a follow-up reads, keeping its extension."""
    return f"input_{n:06d}{Path(like).suffix}"


@dataclass(frozen=True)
class Input:
    name: str  # relative path under in/
    source: Path  # the file to link there


class Workspace:
    def __init__(self, base: Path) -> None:
        self.base = base
        self.in_dir = base / "in"
        self.out_dir = base / "out"
        self.scratch = base / "scratch"

    def create(self) -> None:
        if self.base.exists():
            shutil.rmtree(self.base)
        for d in (self.in_dir, self.out_dir, self.scratch):
            d.mkdir(parents=True)

    def link(self, inp: Input) -> Path:
        target = self.in_dir / relative_name(inp.name, "input")
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(inp.source, target)
        except FileNotFoundError:
            raise
        except OSError:  # another file system, or hard links refused: copy instead
            shutil.copyfile(inp.source, target)
        return target

    def context(self, inputs: list[Path], outputs: list[str]) -> RunContext:
        return RunContext(inputs=inputs, out_dir=self.out_dir, scratch=self.scratch,
                          outputs=outputs, in_dir=self.in_dir)

    def env(self) -> dict[str, str]:
        """The environment a task's program starts with: nothing of the caller's but PATH;
        its home and temporary files are its scratch dir."""
        return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(self.scratch),
                "TMPDIR": str(self.scratch), "LANG": "C.UTF-8"}

    def remove(self) -> None:
        shutil.rmtree(self.base, ignore_errors=True)
