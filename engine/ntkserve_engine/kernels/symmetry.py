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
from jax import Array, lax


def symmetrized(a: Array, d: int, position_pairs: bool) -> Array:
    """K made exactly symmetric for x2 = x1: pooling sums the two positions of a pair in a
    fixed order, which leaves K and K^T a rounding apart, and users expect a symmetric matrix.

    The upper triangle is mirrored by a select, not averaged: under jit XLA contracts the
    multiply before an average into an FMA (fma(a_ij, s, round(a_ji * s))), so (K + K^T) / 2
    came out a rounding from symmetric. With position pairs, the order
    is on (sample, position) pairs, so the diagonal blocks K[i, i] come out symmetric too.
    """
    if d == 0 or not position_pairs:
        swap = (1, 0, *range(2, a.ndim))
        rows = lax.broadcasted_iota(jnp.int32, a.shape[:2], 0)
        cols = lax.broadcasted_iota(jnp.int32, a.shape[:2], 1)
        keep = (rows <= cols).reshape(a.shape[:2] + (1,) * (a.ndim - 2))
    else:
        swap = (1, 0, *range(2 + d, 2 + 2 * d), *range(2, 2 + d))
        n, positions = a.shape[0], math.prod(a.shape[2 : 2 + d])
        flat = (n, n, positions, positions)
        sample_1 = lax.broadcasted_iota(jnp.int32, flat, 0)
        sample_2 = lax.broadcasted_iota(jnp.int32, flat, 1)
        position_1 = lax.broadcasted_iota(jnp.int32, flat, 2)
        position_2 = lax.broadcasted_iota(jnp.int32, flat, 3)
        first = (sample_1 < sample_2) | ((sample_1 == sample_2) & (position_1 <= position_2))
        keep = first.reshape(a.shape)
    return jnp.where(keep, a, jnp.transpose(a, swap))


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
