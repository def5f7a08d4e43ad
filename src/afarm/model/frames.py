# SPDX-License-Identifier: MIT
"""Frame specs (`1-240`, `1,5,10-20`, `1-100x5`), chunks and tiles."""

import re
from dataclasses import dataclass
from typing import TypeVar

from afarm.errors import UsageError

MAX_FRAME = 1_048_574  # Blender's MAXFRAME
_PART = re.compile(r"^(-?\d+)(?:-(-?\d+)(?:x(\d+))?)?$")


def parse_frames(spec: str) -> list[int]:
    """Frames in the order given, duplicates removed; raises UsageError naming the bad part."""
    frames: list[int] = []
    seen: set[int] = set()
    if not spec.strip():
        raise UsageError("--frames is empty: give frames like 1-240, 1,5,10-20 or 1-100x5")
    for raw in spec.split(","):
        part = raw.strip()
        m = _PART.match(part)
        if not m:
            raise UsageError(
                f"--frames {spec!r}: {part!r} is not a frame, a range A-B or a stepped range"
                " A-BxN; use e.g. 1-240, 1,5,10-20 or 1-100x5"
            )
        start = int(m.group(1))
        end = int(m.group(2)) if m.group(2) is not None else start
        step = int(m.group(3)) if m.group(3) is not None else 1
        if end < start:
            raise UsageError(
                f"--frames {spec!r}: range {part!r} ends before it starts; write {end}-{start}"
            )
        if step < 1:
            raise UsageError(f"--frames {spec!r}: step in {part!r} must be at least 1")
        for n in (start, end):
            if not -MAX_FRAME <= n <= MAX_FRAME:
                raise UsageError(
                    f"--frames {spec!r}: frame {n} is outside Blender's range "
                    f"-{MAX_FRAME}..{MAX_FRAME}"
                )
        if (end - start) // step + 1 > 1_000_000:
            raise UsageError(f"--frames {spec!r}: more than a million frames in one job")
        for f in range(start, end + 1, step):
            if f not in seen:
                seen.add(f)
                frames.append(f)
    return frames


T = TypeVar("T")


def chunk(frames: list[T], size: int) -> list[list[T]]:
    if size < 1:
        raise UsageError(f"--chunk {size}: a chunk holds at least 1 frame; use --chunk 1 or more")
    return [frames[i : i + size] for i in range(0, len(frames), size)]


@dataclass(frozen=True)
class Tile:
    """One tile of a frame; (0, 0) is the top-left tile as images are read."""

    col: int
    row: int
    cols: int
    rows: int

    @property
    def name(self) -> str:
        return f"r{self.row}c{self.col}"


def parse_tiles(spec: str) -> tuple[int, int]:
    m = re.fullmatch(r"\s*(\d+)\s*[xX]\s*(\d+)\s*", spec)
    if not m:
        raise UsageError(f"--tiles {spec!r}: write COLUMNSxROWS, e.g. 2x2")
    cols, rows = int(m.group(1)), int(m.group(2))
    if not (1 <= cols <= 16 and 1 <= rows <= 16):
        raise UsageError(f"--tiles {spec!r}: columns and rows must each be 1 to 16")
    return cols, rows


def tiles(cols: int, rows: int) -> list[Tile]:
    return [Tile(c, r, cols, rows) for r in range(rows) for c in range(cols)]


def compact(frames: list[int]) -> str:
    """The shortest `a-b,c` spelling of a frame list, for display."""
    if not frames:
        return ""
    runs: list[list[int]] = []
    for f in frames:
        if runs and f == runs[-1][-1] + 1:
            runs[-1].append(f)
        else:
            runs.append([f])
    return ",".join(str(r[0]) if len(r) == 1 else f"{r[0]}-{r[-1]}" for r in runs)
