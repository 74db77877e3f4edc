"""Window sums over the position axes of kernel arrays: the arithmetic of Conv and pooling.

Padding follows lax/stax: VALID keeps windows inside the input; SAME pads with zeros (zero
covariance) to ceil(size / stride) outputs; CIRCULAR wraps around with SAME's amounts.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import jax.numpy as jnp
import numpy as np
from jax import Array, lax
from ntkserve.v1 import architecture_pb2 as pb


class ShapeProblem(ValueError):
    """A window that cannot be applied to an input of this size."""


Windowed = pb.Conv | pb.ConvTranspose | pb.ConvLocal | pb.AvgPool | pb.SumPool


class Window(NamedTuple):
    """The window of a windowed layer, per spatial dimension."""

    sizes: list[int]
    strides: list[int]
    padding: int


def window_of(message: Windowed) -> Window:
    """A convolution's filter or a pooling window, with its strides (1 where absent, as
    before canonicalization) and padding: the one reading of these fields."""
    if isinstance(message, pb.AvgPool | pb.SumPool):
        sizes = list(message.window_shape)
    else:
        sizes = list(message.filter_shape)
    return Window(sizes, list(message.strides) or [1] * len(sizes), message.padding)


def out_size(size: int, window: int, stride: int, padding: int) -> int:
    if padding in (pb.PADDING_VALID, pb.PADDING_UNSPECIFIED):
        if window > size:
            raise ShapeProblem(f"a VALID window of {window} does not fit {size} positions")
        return (size - window) // stride + 1
    if window > 2 * size + 1:
        # Taps past 2 * size + 1 only ever see padding; such a window would only make the
        # padded arrays (and the memory they take) as large as the client asks.
        raise ShapeProblem(
            f"a window of {window} over {size} positions reaches past every position from "
            f"every output (at most {2 * size + 1} here)"
        )
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
    return window_sums(a, [axes], [window], [stride], padding)


def window_sums(
    a: Array,
    axes: Sequence[tuple[int, ...]],
    windows: Sequence[int],
    strides: Sequence[int],
    padding: int,
) -> Array:
    """`window_sum` over several spatial dimensions at once (dimension d: `axes[d]`, all of
    one kind): one pad, then one `reduce_window` per dimension.

    Not a sum of shifted slices: XLA simplifies the unshifted slice back to its operand and
    fuses that operand into every consumer, so a chain of convolutions recomputed every
    earlier layer inside each one (quadratic time, every layer's buffers kept alive).
    """
    widths = [(0, 0)] * a.ndim
    sizes = [a.shape[pair[0]] for pair in axes]
    for pair, size, window, stride in zip(axes, sizes, windows, strides, strict=True):
        for axis in pair:
            widths[axis] = pad_amounts(size, window, stride, padding)
    if any(lo or hi for lo, hi in widths):
        a = jnp.pad(a, widths, mode="wrap" if padding == pb.PADDING_CIRCULAR else "constant")
    zero = np.zeros((), a.dtype)  # a concrete 0: lax picks its differentiable windowed sum
    if all(len(pair) == 1 for pair in axes):
        for (axis,), window, stride in zip(axes, windows, strides, strict=True):
            dims = [1] * a.ndim  # one dimension at a time: XLA-CPU is slower on 2-d windows
            steps = [1] * a.ndim
            dims[axis], steps[axis] = window, stride
            a = lax.reduce_window(a, zero, lax.add, dims, steps, "VALID")
        return a
    # A pair (i, j): flattened over axes i..j, shifting both by delta moves the flat index by
    # delta * (stride of i + 1), one dilated window. Every kept output (p*stride, p'*stride)
    # reads only in-range positions of the padded array (zeros or wrapped copies in the other
    # pairs' padding, as padding after summing would give), so nothing wraps between rows;
    # the other outputs are dropped at the end.
    shape = a.shape
    start = [0] * a.ndim
    limit = list(shape)
    steps = [1] * a.ndim
    for pair, size, window, stride in zip(axes, sizes, windows, strides, strict=True):
        i, j = sorted(pair)
        dilation = math.prod(shape[i + 1 : j + 1]) + 1
        flat = a.reshape((*shape[:i], math.prod(shape[i : j + 1]), *shape[j + 1 :]))
        dims = [1] * flat.ndim
        dilations = [1] * flat.ndim
        pads = [(0, 0)] * flat.ndim
        dims[i], dilations[i], pads[i] = window, dilation, (0, (window - 1) * dilation)
        a = lax.reduce_window(
            flat, zero, lax.add, dims, [1] * flat.ndim, pads, window_dilation=dilations
        ).reshape(shape)
        for axis in (i, j):
            limit[axis] = (out_size(size, window, stride, padding) - 1) * stride + 1
            steps[axis] = stride
    return lax.slice(a, start, limit, steps)


def in_image_counts(size: int, window: int, stride: int, padding: int) -> Array:
    """How many positions of each output window lie inside the input (SAME's edges)."""
    return window_sum(jnp.ones((size,)), (0,), window, stride, padding)
