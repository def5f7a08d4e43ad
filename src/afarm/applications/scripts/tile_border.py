# SPDX-License-Identifier: MIT
"""Restrict a Blender render to one tile of the frame, for afarm's tiled renders.

Run by the slave after the .blend file is loaded and before the render starts (Blender runs
its arguments in order, so ``--python`` must come between FILE and ``-f``):

    blender -b -Y FILE.blend -E ENGINE --python-exit-code 1 --python tile_border.py \
        -o /abs/out/frame_####_r{row}c{col} -F PNG -x 1 -f N -- [--job-dirs ..] \
        --tile COL ROW COLS ROWS

Tile (COL, ROW) covers the whole pixels floor(COL*W/COLS) up to floor((COL+1)*W/COLS)
(exclusive), and likewise for rows, where ROW 0 is the top row as images are read and W, H
are the effective resolution. The tiles of a frame therefore never overlap, never leave a
gap, and stitch back (with afarm.applications.stitch) into exactly the full-frame image.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import NamedTuple

# Tile counts beyond this gain nothing (each tile pays Blender's start-up and scene sync)
# and a typo such as "--tile 0 0 160 1" should fail loudly instead of queueing 160 tasks.
MAX_TILES_PER_AXIS = 16

# Blender stores the border as float32 fractions and turns them into pixels with
# `(int)(fraction * size)` (truncation) in both the render pipeline and Cycles. Aiming a
# quarter pixel past the wanted edge lands on it for truncation and for round-to-nearest
# alike, and float32's error (< 0.01 px below 16k pixels) cannot push it across.
_EDGE_NUDGE = 0.25

_USAGE = "usage: ... --python tile_border.py ... -- --tile COL ROW COLS ROWS"


class TileError(Exception):
    """The tile arguments are malformed or do not fit the scene's resolution."""


class Tile(NamedTuple):
    col: int
    row: int
    cols: int
    rows: int


class Border(NamedTuple):
    """Fractions as Blender's render settings take them: y = 0 is the bottom edge."""

    min_x: float
    max_x: float
    min_y: float
    max_y: float


def parse_tile(argv: Sequence[str]) -> Tile:
    """Read ``--tile COL ROW COLS ROWS`` from the arguments after Blender's ``--``."""
    args = list(argv)
    if "--" not in args:
        raise TileError(f"tile_border.py: no '--' in the command line\n{_USAGE}")
    ours = args[args.index("--") + 1 :]
    # Other afarm scripts (render_prep.py's --job-dirs) read their own options after the
    # same '--'; ours run from --tile to the next option.
    if ours.count("--tile") != 1:
        raise TileError(f"tile_border.py: expected '--tile COL ROW COLS ROWS', got {ours!r}\n"
                        f"{_USAGE}")
    rest = ours[ours.index("--tile") + 1 :]
    values = rest[:next((i for i, a in enumerate(rest) if a.startswith("--")), len(rest))]
    if len(values) != 4:
        raise TileError(f"tile_border.py: expected '--tile COL ROW COLS ROWS', got {ours!r}\n"
                        f"{_USAGE}")
    numbers: list[int] = []
    for name, text in zip(("COL", "ROW", "COLS", "ROWS"), values, strict=True):
        # int() alone would accept " 1", "+1" and "1_0"; a tile index is plain digits.
        if not text.isascii() or not text.isdigit():
            raise TileError(f"tile_border.py: {name} must be a non-negative integer, "
                            f"got {text!r}\n{_USAGE}")
        numbers.append(int(text, 10))
    tile = Tile(*numbers)
    for count, name in ((tile.cols, "COLS"), (tile.rows, "ROWS")):
        if not 1 <= count <= MAX_TILES_PER_AXIS:
            raise TileError(f"tile_border.py: {name} must be in 1..{MAX_TILES_PER_AXIS}, "
                            f"got {count}")
    if tile.col >= tile.cols:
        raise TileError(f"tile_border.py: COL must be in 0..{tile.cols - 1}, got {tile.col}")
    if tile.row >= tile.rows:
        raise TileError(f"tile_border.py: ROW must be in 0..{tile.rows - 1}, got {tile.row}")
    return tile


def pixel_span(index: int, count: int, size: int) -> tuple[int, int]:
    """Pixels [start, end) of tile `index` of `count` along an axis `size` pixels long."""
    return index * size // count, (index + 1) * size // count


def _fraction(pixel: int, size: int) -> float:
    if pixel <= 0:
        return 0.0
    if pixel >= size:
        return 1.0
    return (pixel + _EDGE_NUDGE) / size


def border_for(tile: Tile, width: int, height: int) -> Border:
    """The border fractions that make Blender render exactly the pixels of `tile`."""
    if tile.cols > width or tile.rows > height:
        raise TileError(f"tile_border.py: {tile.cols}x{tile.rows} tiles do not fit a "
                        f"{width}x{height} frame: every tile needs at least one pixel")
    x0, x1 = pixel_span(tile.col, tile.cols, width)
    top, bottom = pixel_span(tile.row, tile.rows, height)
    # Rows count down from the top of the image; Blender's y axis counts up from the bottom.
    y0, y1 = height - bottom, height - top
    return Border(_fraction(x0, width), _fraction(x1, width),
                  _fraction(y0, height), _fraction(y1, height))


def effective_size(resolution_x: int, resolution_y: int, percentage: int) -> tuple[int, int]:
    # Blender's own integer arithmetic for the rendered size (`winx = size * xsch / 100`).
    return resolution_x * percentage // 100, resolution_y * percentage // 100


def main(argv: Sequence[str]) -> None:
    # Imported here, not at the top, so the tile arithmetic can be tested without Blender.
    import bpy

    tile = parse_tile(argv)
    render = bpy.context.scene.render
    width, height = effective_size(render.resolution_x, render.resolution_y,
                                   render.resolution_percentage)
    border = border_for(tile, width, height)
    render.use_border = True
    render.use_crop_to_border = True
    # Dither noise depends on the position inside the rendered rectangle, so with any
    # dither a tile's pixels would differ from the same pixels of the full frame.
    render.dither_intensity = 0.0
    render.border_min_x = border.min_x
    render.border_max_x = border.max_x
    render.border_min_y = border.min_y
    render.border_max_y = border.max_y
    x0, x1 = pixel_span(tile.col, tile.cols, width)
    y0, y1 = pixel_span(tile.row, tile.rows, height)
    print(f"tile_border.py: tile c{tile.col} r{tile.row} of {tile.cols}x{tile.rows}: "
          f"x {x0}..{x1}, y {y0}..{y1} (from the top) of {width}x{height}", flush=True)


if __name__ == "__main__":
    try:
        main(sys.argv)
    except TileError as error:
        # Exit at once rather than raise: a traceback only fails the run when the caller
        # passed --python-exit-code, and without it Blender would render the whole frame.
        print(error, file=sys.stderr, flush=True)
        sys.exit(2)
