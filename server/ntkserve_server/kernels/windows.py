"""Window sums over the position axes of kernel arrays: the arithmetic of Conv and pooling.

Padding follows lax/stax: VALID keeps windows inside the input; SAME pads with zeros (zero
covariance) to ceil(size / stride) outputs; CIRCULAR wraps around with SAME's amounts.
"""

from __future__ import annotations

import math

import jax.numpy as jnp
from jax import Array, lax
from ntkserve.v1 import architecture_pb2 as pb


class ShapeProblem(ValueError):
    """A window that cannot be applied to an input of this size."""


def out_size(size: int, window: int, stride: int, padding: int) -> int:
    if padding in (pb.PADDING_VALID, pb.PADDING_UNSPECIFIED):
        if window > size:
            raise ShapeProblem(f"a VALID window of {window} does not fit {size} positions")
        return (size - window) // stride + 1
    return math.ceil(size / stride)


def pad_amounts(size: int, window: int, stride: int, padding: int) -> tuple[int, int]:
    if padding in (pb.PADDING_VALID, pb.PADDING_UNSPECIFIED):
        return 0, 0
    total = max((out_size(size, window, stride, padding) - 1) * stride + window - size, 0)
    return total // 2, total - total // 2


def window_sum(a: Array, axes: tuple[int, ...], window: int, stride: int, padding: int) -> Array:
    """Sums a[..., p*stride + delta, ...] over delta < window, shifting every axis in `axes`
    by the same delta (one axis: a pooling window; an (x1, x2) pair of axes: a shared-weight
    convolution, whose covariance pairs position p + delta with p' + delta)."""
    size = a.shape[axes[0]]
    lo, hi = pad_amounts(size, window, stride, padding)
    if lo or hi:
        widths = [(0, 0)] * a.ndim
        for axis in axes:
            widths[axis] = (lo, hi)
        a = jnp.pad(a, widths, mode="wrap" if padding == pb.PADDING_CIRCULAR else "constant")
    n = out_size(size, window, stride, padding)
    total = None
    for delta in range(window):
        start = [0] * a.ndim
        limit = list(a.shape)
        strides = [1] * a.ndim
        for axis in axes:
            start[axis] = delta
            limit[axis] = delta + (n - 1) * stride + 1
            strides[axis] = stride
        piece = lax.slice(a, start, limit, strides)
        total = piece if total is None else total + piece
    assert total is not None
    return total


def in_image_counts(size: int, window: int, stride: int, padding: int) -> Array:
    """How many positions of each output window lie inside the input (SAME's edges)."""
    return window_sum(jnp.ones((size,)), (0,), window, stride, padding)
