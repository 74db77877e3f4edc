"""tiles, in process (pure numpy, no server): the grid covers a kernel exactly, symmetric
grids cover it with their mirror, bad selections are named, padding and message blocks
reassemble what they cut."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from ntkserve_server.tiles import TileGrid, blocks, padded_rows

SIZES = [(1, 1, 1), (7, 7, 3), (8, 8, 4), (9, 5, 4), (5, 9, 4), (37, 40, 8), (3, 2, 16)]


def _coverage(grid: TileGrid, mirrored: bool) -> np.ndarray[Any, Any]:
    """How many times each kernel entry is written by the grid's tiles (and their mirrors,
    when `mirrored`)."""
    count = np.zeros((grid.n1, grid.n2), int)
    for i, j in grid.all_tiles():
        count[grid.rows_of(i), grid.cols_of(j)] += 1
        if mirrored and i != j:
            count[grid.cols_of(j), grid.rows_of(i)] += 1
    return count


@pytest.mark.parametrize(("n1", "n2", "size"), SIZES)
def test_the_grid_covers_a_kernel_exactly_once(n1: int, n2: int, size: int) -> None:
    grid = TileGrid(n1, n2, size, symmetric=False)
    assert grid.rows == -(-n1 // size) and grid.cols == -(-n2 // size)
    assert len(list(grid.all_tiles())) == grid.count() == grid.rows * grid.cols
    np.testing.assert_array_equal(_coverage(grid, mirrored=False), np.ones((n1, n2), int))


@pytest.mark.parametrize(("n", "size"), [(1, 1), (7, 3), (8, 4), (9, 4), (37, 8), (2, 16)])
def test_a_symmetric_grid_and_its_mirror_cover_a_kernel_exactly_once(n: int, size: int) -> None:
    grid = TileGrid(n, n, size, symmetric=True)
    tiles = list(grid.all_tiles())
    assert all(i <= j for i, j in tiles)
    assert len(tiles) == grid.count() == grid.rows * (grid.rows + 1) // 2
    np.testing.assert_array_equal(_coverage(grid, mirrored=True), np.ones((n, n), int))


def test_rows_and_cols_of_the_last_tile_are_cropped_to_the_kernel() -> None:
    grid = TileGrid(10, 7, 4, symmetric=False)
    assert grid.rows_of(2) == slice(8, 10)
    assert grid.cols_of(1) == slice(4, 7)


def test_every_tile_of_the_grid_is_a_valid_selection() -> None:
    for symmetric in (False, True):
        grid = TileGrid(9, 9, 4, symmetric)
        assert grid.check(grid.all_tiles()) is None
        assert grid.check([]) is None


@pytest.mark.parametrize(
    ("symmetric", "tiles", "problem"),
    [
        (False, [(0, 0), (3, 0)], "tiles[1] = (3, 0) lies outside the 3 x 3 grid"),
        (False, [(0, -1)], "tiles[0] = (0, -1) lies outside the 3 x 3 grid"),
        (False, [(1, 2), (0, 0), (1, 2)], "tiles[2] = (1, 2) is named twice"),
        (True, [(0, 1), (2, 1)], "tiles[1] = (2, 1) lies below the diagonal"),
    ],
)
def test_a_bad_selection_names_the_tile_and_the_problem(
    symmetric: bool, tiles: list[tuple[int, int]], problem: str
) -> None:
    found = TileGrid(9, 9, 4, symmetric).check(tiles)
    assert found is not None and found.startswith(problem), found


def test_below_the_diagonal_is_valid_when_x2_is_given() -> None:
    assert TileGrid(9, 9, 4, symmetric=False).check([(2, 1)]) is None


def test_padded_rows_fill_with_zero_rows_up_to_the_tile_size() -> None:
    x = np.arange(5 * 3, dtype=np.float32).reshape(5, 3) + 1
    padded = padded_rows(x, slice(4, 5), 4)
    assert padded.shape == (4, 3) and padded.dtype == np.float32
    np.testing.assert_array_equal(padded[0], x[4])
    np.testing.assert_array_equal(padded[1:], np.zeros((3, 3)))
    full = padded_rows(x, slice(0, 4), 4)
    np.testing.assert_array_equal(full, x[:4])


def test_padded_rows_keep_the_feature_shape() -> None:
    x = np.ones((3, 4, 4, 2))
    assert padded_rows(x, slice(0, 3), 8).shape == (8, 4, 4, 2)


@pytest.mark.parametrize(
    ("shape", "max_bytes"),
    [((6, 5), 5 * 8), ((6, 5), 3 * 5 * 8), ((6, 5), 2 * 8), ((6, 5), 1), ((4, 3, 2, 2), 40)],
)
def test_blocks_reassemble_the_tile_and_stay_under_the_byte_limit(
    shape: tuple[int, ...], max_bytes: int
) -> None:
    values = np.random.default_rng(0).standard_normal(shape)
    entry = values[:1, :1].nbytes
    rebuilt = np.full_like(values, np.nan)
    for r, c, block in blocks(values, max_bytes):
        assert block.nbytes <= max(max_bytes, entry), (r, c, block.shape)
        rebuilt[r : r + block.shape[0], c : c + block.shape[1]] = block
    np.testing.assert_array_equal(rebuilt, values)


def test_blocks_take_whole_rows_while_a_row_fits() -> None:
    values = np.zeros((10, 4))  # 32 bytes a row
    pieces = list(blocks(values, 100))  # three rows a block
    assert [(r, c, b.shape) for r, c, b in pieces] == [
        (0, 0, (3, 4)),
        (3, 0, (3, 4)),
        (6, 0, (3, 4)),
        (9, 0, (1, 4)),
    ]


def test_a_huge_grid_is_counted_not_listed() -> None:
    """Issue 17 finding 4: 10**9 rows in tiles of 1 make 5 * 10**17 tiles; counting them and
    taking the first few costs nothing (a list of them would not fit any memory)."""
    grid = TileGrid(10**9, 10**9, 1, symmetric=True)
    assert grid.count() == 10**9 * (10**9 + 1) // 2
    tiles = grid.all_tiles()
    assert [next(tiles) for _ in range(3)] == [(0, 0), (0, 1), (0, 2)]
    wide = TileGrid(2**62, 3, 1, symmetric=False)
    assert wide.count() == 3 * 2**62  # Python ints: no int64 wrap-around
