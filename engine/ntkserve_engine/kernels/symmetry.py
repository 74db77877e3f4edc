"""Exactly symmetric kernels for x2 = None: in the compiled graph (`symmetrized`, for traced
calls) and on the host (`mirror_upper`, for the server's programs and direct calls).

Users expect K(x, x) to be a symmetric matrix bit for bit, and rounding (pooling's order of
sums, XLA's FMA contractions) leaves K and K^T a rounding apart; both functions keep the
upper triangle (over (sample, position) pairs with position pairs) and copy it below.
"""

from __future__ import annotations

import math
from typing import Any

import jax.numpy as jnp
import numpy as np
from jax import Array


def symmetrized(a: Array, d: int, position_pairs: bool) -> Array:
    """K made exactly symmetric for x2 = x1: pooling sums the two positions of a pair in a
    fixed order, which leaves K and K^T a rounding apart, and users expect a symmetric matrix.

    The upper triangle is kept and copied below, not averaged: under jit XLA contracts the
    multiply before an average into an FMA (fma(a_ij, s, round(a_ji * s))), so (K + K^T) / 2
    came out a rounding from symmetric. With position pairs, the order is on (sample,
    position) pairs, so the diagonal blocks K[i, i] come out symmetric too.
    """
    if d == 0 or not position_pairs:  # (n, n, *rest): the triangle over the first two axes
        square = jnp.moveaxis(a, (0, 1), (-2, -1))
        return jnp.moveaxis(_upper_copied_below(square), (-2, -1), (0, 1))
    n, spatial = a.shape[0], a.shape[2 : 2 + d]
    positions = math.prod(spatial)
    # (n, n, *S, *S) -> (n, *S, n, *S) -> (n P, n P): rows and columns are (sample,
    # position) pairs in row-major order
    order = (0, *range(2, 2 + d), 1, *range(2 + d, 2 + 2 * d))
    square = jnp.transpose(a, order).reshape(n * positions, n * positions)
    mirrored = _upper_copied_below(square).reshape(n, *spatial, n, *spatial)
    return jnp.transpose(mirrored, tuple(int(i) for i in np.argsort(order)))


def _upper_copied_below(m: Array) -> Array:
    """triu(m) with its transpose below the diagonal, over the last two axes: every entry is
    one of m's upper triangle plus an exact zero (a -0.0 becomes +0.0, in both triangles
    alike). Not `where(row <= col, m, m^T)`: with the mask from iotas, XLA-CPU's compile time
    grew with the square of the rows when m came from a dot (a 3-layer ReLU network's traced
    x2=None kernel: 7.5 s to compile at 500 inputs; at 2,000, 3.5 min and then a crash);
    this compiles in 0.3 s at 4,000 (measured)."""
    return jnp.triu(m) + jnp.swapaxes(jnp.triu(m, 1), -1, -2)


MIRROR_BLOCK = 256  # rows per block of the host-side mirror


def mirror_upper(a: np.ndarray[Any, Any], position_pairs: bool) -> np.ndarray[Any, Any]:
    """A kernel of x2 = x1, exactly symmetric: its upper triangle (over (sample, position)
    pairs with position pairs) copied onto the lower one, on the host.

    The compiled programs symmetrize too (`symmetrized`), but XLA may fuse the last layer's
    update into that select and compute it twice, once per triangle, with different FMA
    contractions: a rounding apart. A copy on the host is exact whatever the compiler does.
    """
    n = a.shape[0]
    if a.ndim == 2 or not position_pairs:
        # In blocks of rows: a whole-array np.where reads the transpose with a stride of a
        # row per element (80 ms for 4000^2 float32, against 22 ms for these block copies).
        out = np.array(a)  # the program's own buffer is read-only
        for start in range(0, n, MIRROR_BLOCK):
            stop = min(start + MIRROR_BLOCK, n)
            out[start:stop, :start] = out[:start, start:stop].swapaxes(0, 1)
            block = out[start:stop, start:stop]
            size = stop - start
            keep = np.triu(np.ones((size, size), dtype=bool)).reshape(
                (size, size) + (1,) * (a.ndim - 2)
            )
            block[...] = np.where(keep, block, block.swapaxes(0, 1))
        return out
    d = (a.ndim - 2) // 2
    positions = math.prod(a.shape[2 : 2 + d])
    flat = a.reshape(n, n, positions, positions)
    order = np.arange(n * positions).reshape(n, positions)  # (sample, position), row-major
    keep = order[:, None, :, None] <= order[None, :, None, :]
    return np.where(keep, flat, flat.transpose(1, 0, 3, 2)).reshape(a.shape)
