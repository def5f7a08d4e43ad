# SPDX-License-Identifier: MIT
"""ffmpeg argv builders for afarm's follow-up tasks: stitch the tiles of a frame, encode frames.

Pure functions: they only build argument lists (never a shell string); the caller runs them
through a Transport. Every path is used verbatim as one argument, so paths must not start
with "-" (ffmpeg would read an option) nor contain "%" (ffmpeg's image2 format would read
a sequence pattern where a single file was meant).
"""

from __future__ import annotations

from collections.abc import Sequence

# Tile grids are limited to 16x16 by tile_border.py; xstack itself takes any number.
_MAX_TILES = 16 * 16


def _check_path(path: str, what: str) -> None:
    if not path:
        raise ValueError(f"{what}: empty path")
    if path.startswith("-"):
        raise ValueError(f"{what}: a path starting with '-' would be read as an option: {path!r}")
    if "\n" in path or "\0" in path:
        raise ValueError(f"{what}: control characters in path {path!r}")


def _sum_terms(prefix: str, indices: Sequence[int]) -> str:
    # xstack's layout grammar: "0" or terms like "w0+w1" naming the sizes of earlier inputs.
    return "+".join(f"{prefix}{i}" for i in indices) or "0"


def xstack_layout(cols: int, rows: int) -> str:
    """The xstack layout for `cols` x `rows` tiles given in row-major order, row 0 on top.

    Offsets are sums of the real tile sizes rather than multiples of one tile's size,
    because tiles of a frame that does not divide evenly differ by a pixel.
    """
    if cols < 1 or rows < 1:
        raise ValueError(f"tile grid must be at least 1x1, got {cols}x{rows}")
    cells = []
    for row in range(rows):
        # Column-0 tile of row k is input k*cols; row-0 tile of column c is input c.
        y = _sum_terms("h", [k * cols for k in range(row)])
        for col in range(cols):
            x = _sum_terms("w", list(range(col)))
            cells.append(f"{x}_{y}")
    return "|".join(cells)


def stitch_argv(
    ffmpeg: str,
    tiles: list[str],
    cols: int,
    rows: int,
    output: str,
    *,
    pix_fmt: str | None = None,
) -> list[str]:
    """An ffmpeg argv that joins `tiles` (row-major, row 0 on top) into the image `output`.

    Without `pix_fmt` the output keeps the tiles' own pixel format (rgb24, rgba, rgb48be,
    rgba64be, ...): ffmpeg's PNG encoder accepts all of them, so format negotiation picks the
    input format unchanged and the stitched pixels are bit-identical to the tiles'.
    """
    if cols < 1 or rows < 1:
        raise ValueError(f"tile grid must be at least 1x1, got {cols}x{rows}")
    if len(tiles) != cols * rows:
        raise ValueError(f"{cols}x{rows} tiles need {cols * rows} files, got {len(tiles)}")
    if len(tiles) > _MAX_TILES:
        raise ValueError(f"at most {_MAX_TILES} tiles can be stitched, got {len(tiles)}")
    _check_path(ffmpeg, "ffmpeg")
    for tile in tiles:
        _check_path(tile, "tile")
        if "%" in tile:
            raise ValueError(f"tile: '%' would be read as a sequence pattern: {tile!r}")
    _check_path(output, "output")
    # -nostdin: on a slave ffmpeg runs on the SSH channel that carries afarm's own messages
    # and would otherwise consume them.
    argv = [ffmpeg, "-nostdin", "-hide_banner", "-loglevel", "error"]
    for tile in tiles:
        # Tiles come from slaves: ffmpeg must not pick a demuxer by their content (a "tile"
        # that is an HLS playlist or ffconcat script would pull other files into the frame).
        argv += ["-protocol_whitelist", "file", "-f", "image2", "-pattern_type", "none",
                 "-i", f"file:{tile}"]
    if len(tiles) > 1:
        layout = xstack_layout(cols, rows)
        argv += ["-filter_complex", f"xstack=inputs={len(tiles)}:layout={layout}"]
    # One tile: no filter (xstack needs two inputs); ffmpeg decodes and re-encodes the
    # pixels unchanged, which keeps one code path for verifying the output.
    if pix_fmt is not None:
        argv += ["-pix_fmt", pix_fmt]
    # -update 1 writes exactly the named file (no pattern expansion of the output name).
    # No -y: the output is a fresh path in a scratch directory made anew for every
    # attempt, so nothing is ever overwritten; with -nostdin an existing file would be an
    # error, not a prompt.
    argv += ["-frames:v", "1", "-update", "1", output]
    return argv


def encode_argv(ffmpeg: str, pattern: str, start_number: int, fps: int, output: str) -> list[str]:
    """An ffmpeg argv that encodes the numbered images `pattern` (e.g. /abs/in_%06d.png)
    from `start_number` on to an H.264 mp4 at `fps` frames per second.

    The sequence must be contiguous: ffmpeg's image2 reader stops at the first missing number.
    """
    _check_path(ffmpeg, "ffmpeg")
    _check_path(pattern, "pattern")
    _check_path(output, "output")
    if "%" not in pattern:
        raise ValueError(f"pattern needs a printf-style frame number such as %06d: {pattern!r}")
    if start_number < 0:
        raise ValueError(f"start_number must be >= 0, got {start_number}")
    if not 1 <= fps <= 1000:
        raise ValueError(f"fps must be in 1..1000, got {fps}")
    return [
        ffmpeg, "-nostdin", "-hide_banner", "-loglevel", "error",
        "-f", "image2", "-framerate", str(fps), "-start_number", str(start_number),
        "-i", pattern,
        # yuv420p halves chroma resolution, so odd frame sizes are padded by one pixel.
        "-vf", "pad=ceil(iw/2)*2:ceil(ih/2)*2",
        "-c:v", "libx264", "-pix_fmt", "yuv420p",
        # The index goes first so the web page can start playing before the whole file loads.
        "-movflags", "+faststart",
        # No -y, as in stitch_argv: the output is a fresh scratch path.
        output,
    ]
