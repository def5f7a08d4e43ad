# SPDX-License-Identifier: MIT
import pytest

from afarm.errors import UsageError
from afarm.model.frames import chunk, compact, parse_frames, parse_tiles, tiles


@pytest.mark.parametrize(("spec", "frames"), [
    ("1-5", [1, 2, 3, 4, 5]),
    ("1,5,10-12", [1, 5, 10, 11, 12]),
    ("1-10x3", [1, 4, 7, 10]),
    ("7", [7]),
    (" 3 , 1-2 ", [3, 1, 2]),
    ("1-3,2-4", [1, 2, 3, 4]),
    ("0-2", [0, 1, 2]),
])
def test_frame_specs_parse_into_frames(spec: str, frames: list[int]) -> None:
    assert parse_frames(spec) == frames


@pytest.mark.parametrize(("spec", "needle"), [
    ("1-x", "'1-x'"),
    ("10-1", "ends before it starts"),
    ("", "empty"),
    ("1,,2", "''"),
    ("1-5x0", "step"),
    ("1;rm -rf /", "is not a frame"),
    ("$(id)", "is not a frame"),
    ("1-99999999", "outside Blender's range"),
])
def test_bad_frame_specs_name_the_bad_part(spec: str, needle: str) -> None:
    with pytest.raises(UsageError, match="--frames") as exc:
        parse_frames(spec)
    assert needle in str(exc.value)


def test_chunks_split_frames_in_order_and_keep_the_remainder() -> None:
    assert chunk([1, 2, 3, 4, 5], 2) == [[1, 2], [3, 4], [5]]


def test_chunk_of_zero_is_a_usage_error_naming_the_option() -> None:
    with pytest.raises(UsageError, match="--chunk 0"):
        chunk([1], 0)


def test_tiles_cover_every_cell_once_row_major() -> None:
    cols, rows = parse_tiles("3x2")
    cells = [(t.col, t.row) for t in tiles(cols, rows)]
    assert cells == [(0, 0), (1, 0), (2, 0), (0, 1), (1, 1), (2, 1)]


@pytest.mark.parametrize("spec", ["2", "0x2", "2x", "17x1", "axb"])
def test_bad_tile_specs_are_refused(spec: str) -> None:
    with pytest.raises(UsageError, match="--tiles"):
        parse_tiles(spec)


def test_compact_spells_frame_lists_short() -> None:
    assert compact([1, 2, 3, 5, 7, 8]) == "1-3,5,7-8"
