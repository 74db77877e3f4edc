"""Window index tables for reference_conv.py: which input positions each output reads.

Built straight from the padding definitions (VALID: windows inside the input; SAME: zero
padding, output size ceil(size / stride); CIRCULAR: wrap-around), independently of the
engine's windows.py.
"""

from __future__ import annotations

import numpy as np
from ntkserve.v1 import architecture_pb2 as pb


def windows(size: int, window: int, stride: int, padding: int) -> np.ndarray:
    """(window, out) table: the input position that output o reads at offset f, or `size`
    for a position outside the image (SAME's zero padding); wrapped for CIRCULAR."""
    if padding in (pb.PADDING_VALID, pb.PADDING_UNSPECIFIED):
        out, lo = (size - window) // stride + 1, 0
        if out < 1:
            raise ValueError(f"a VALID window of {window} does not fit {size} positions")
    elif padding in (pb.PADDING_SAME, pb.PADDING_CIRCULAR):
        out = -(-size // stride)
        lo = max((out - 1) * stride + window - size, 0) // 2
    else:
        raise NotImplementedError(f"padding {padding}")
    table = np.empty((window, out), dtype=np.int64)
    for f in range(window):
        for o in range(out):
            p = o * stride + f - lo
            if padding == pb.PADDING_CIRCULAR:
                p %= size
            table[f, o] = p if 0 <= p < size else size
    return table


def with_zero_slab(a: np.ndarray, axes: tuple[int, ...]) -> np.ndarray:
    """a (moved so that `axes` lead, contiguous) with one more position of zeros at the end
    of each of them: position `size` of the tables reads 0."""
    b = np.moveaxis(a, axes, tuple(range(len(axes))))
    padded = np.zeros(tuple(n + (i < len(axes)) for i, n in enumerate(b.shape)))
    padded[tuple(slice(0, n) for n in b.shape[: len(axes)])] = b
    return padded


def shared_offsets_mean(
    a: np.ndarray, window: list[int], strides: list[int], padding: int
) -> np.ndarray:
    """A(a)[i, j] = 1/|F| sum_f a[t(f, i), t(f, j)] over the trailing (*S, *S) position
    axes: both positions shifted by the same filter offset f, one dimension at a time."""
    d = len(window)
    axes = tuple(ax for i in range(d) for ax in (a.ndim - 2 * d + i, a.ndim - d + i))
    b = with_zero_slab(a, axes)  # (x1 dim 0, x2 dim 0, x1 dim 1, x2 dim 1, ..., batch)
    for i in range(d):
        table = windows(a.shape[axes[2 * i]], window[i], strides[i], padding)
        lead = (slice(None),) * (2 * i)
        total = np.zeros((*b.shape[: 2 * i], table.shape[1], table.shape[1], *b.shape[2 * i + 2 :]))
        for f in range(window[i]):
            total += b[(*lead, *np.ix_(table[f], table[f]))]
        b = total / window[i]
    return np.moveaxis(b, tuple(range(2 * d)), axes)


def own_window(
    a: np.ndarray, axis: int, window: int, stride: int, padding: int, how: str
) -> np.ndarray:
    """Sum ("sum"), mean over the window ("window") or over its in-image part ("inside")
    of a along one position axis."""
    size = a.shape[axis]
    table = windows(size, window, stride, padding)
    b = with_zero_slab(a, (axis,))
    total = np.zeros((table.shape[1], *b.shape[1:]))
    for f in range(window):
        total += b[table[f]]
    if how == "window":
        total /= window
    elif how == "inside":
        counts = (table < size).sum(0).astype(np.float64)
        total /= counts.reshape(-1, *(1,) * (b.ndim - 1))
    return np.moveaxis(total, 0, axis)


def out_spatial(
    spatial: tuple[int, ...], window: list[int], strides: list[int], padding: int
) -> tuple[int, ...]:
    return tuple(
        windows(n, w, s, padding).shape[1] for n, w, s in zip(spatial, window, strides, strict=True)
    )
