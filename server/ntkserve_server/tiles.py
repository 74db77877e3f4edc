"""The geometry of a tiled kernel: the grid, which tiles to compute, padding, message blocks.

A kernel K (N1, N2, *positions) is cut into a grid of square tiles of `size` rows and
columns. Every tile is computed at the same padded shape (size, size) — the last, ragged
tiles are filled with zero rows and cropped afterwards — so one (architecture, tile shape,
feature shape) compiles once, for any N. The tiles are counted by arithmetic and made as
they are computed, never listed: a plan costs the same for any N. With x2 = x1 the kernel
is symmetric: only the tiles on and above the diagonal are computed (the receiver mirrors
the rest), and the diagonal tiles are computed as symmetric kernels themselves
(x2 = None), so their diagonals are exact. Pure numpy; knows nothing of jax or gRPC.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np

Array = np.ndarray[Any, Any]


@dataclasses.dataclass(frozen=True)
class TileGrid:
    n1: int
    n2: int
    size: int
    symmetric: bool

    @property
    def rows(self) -> int:
        return -(-self.n1 // self.size)

    @property
    def cols(self) -> int:
        return -(-self.n2 // self.size)

    def count(self) -> int:
        """How many tiles this kernel needs (upper triangle only when symmetric), by
        arithmetic: a grid of 10**11 tiles is counted, never listed."""
        if self.symmetric:
            return self.rows * (self.rows + 1) // 2
        return self.rows * self.cols

    def all_tiles(self) -> Iterator[tuple[int, int]]:
        """Every tile this kernel needs, row by row (upper triangle only when symmetric),
        made one at a time as they are taken."""
        for i in range(self.rows):
            for j in range(i if self.symmetric else 0, self.cols):
                yield i, j

    def check(self, tiles: Iterable[tuple[int, int]]) -> str | None:
        """Why this selection of tiles is not valid, or None."""
        seen: set[tuple[int, int]] = set()
        for k, (i, j) in enumerate(tiles):
            if not (0 <= i < self.rows and 0 <= j < self.cols):
                return f"tiles[{k}] = ({i}, {j}) lies outside the {self.rows} x {self.cols} grid"
            if self.symmetric and j < i:
                return (
                    f"tiles[{k}] = ({i}, {j}) lies below the diagonal; with x2 absent only "
                    "tiles with row <= col exist (the rest are mirrored)"
                )
            if (i, j) in seen:
                return f"tiles[{k}] = ({i}, {j}) is named twice"
            seen.add((i, j))
        return None

    def rows_of(self, i: int) -> slice:
        return slice(i * self.size, min((i + 1) * self.size, self.n1))

    def cols_of(self, j: int) -> slice:
        return slice(j * self.size, min((j + 1) * self.size, self.n2))


def padded_rows(x: Array, rows: slice, size: int) -> Array:
    """x[rows] with zero rows appended up to `size` (zeros are valid, finite inputs)."""
    block = x[rows]
    if block.shape[0] == size:
        return block
    pad = np.zeros((size - block.shape[0], *x.shape[1:]), x.dtype)
    return np.concatenate([block, pad])


def blocks(values: Array, max_bytes: int) -> Iterator[tuple[int, int, Array]]:
    """(row offset, col offset, block) pieces of a tile, each at most `max_bytes` (unless a
    single entry is larger): whole rows while a row fits, else pieces of one row."""
    rows, cols = values.shape[:2]
    entry = max(1, values[:1, :1].nbytes)
    row_bytes = entry * cols
    if row_bytes <= max_bytes:
        step = max(1, max_bytes // row_bytes)
        for r in range(0, rows, step):
            yield r, 0, values[r : r + step]
        return
    step = max(1, max_bytes // entry)
    for r in range(rows):
        for c in range(0, cols, step):
            yield r, c, values[r : r + 1, c : c + step]
