"""Masked positions (neural-tangents' `mask_constant`): carried from layer to layer.

A masked position is absent: every kernel entry that involves it is 0 after every layer
(`remask`: a bias, or phi(0) != 0, would otherwise give it a value), and layers that average
over positions count only the positions present (AvgPool, GlobalAvgPool, LayerNorm over
spatial axes, attention's keys: in their own rules, which read `Kernel.keep1/keep2`).
Layers that keep the positions keep the mask. Windowed layers (Conv, ConvLocal, AvgPool,
SumPool) mark an output position present when its window holds at least one present
position. Layers that remove positions (Flatten, global pooling) end the mask: after them
each example is one vector. A layer that changes positions in another way says how in its
row's `keep_after`, or refuses masked inputs.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax.numpy as jnp
from jax import Array

from ntkserve_engine.kernels.errors import InputError
from ntkserve_engine.kernels.kernel import Kernel, scale_positions
from ntkserve_engine.kernels.windows import Windowed, window_of, window_sums


def remask(k: Kernel) -> Kernel:
    """k with every entry that involves a masked position set to 0."""
    return k if k.keep1 is None else scale_positions(k, k.keep1, k.keep2)


def window_counts(
    keep: Array, windows: Sequence[int], strides: Sequence[int], padding: int
) -> Array:
    """(n, *S) -> (n, *S'): how many present positions each output window holds."""
    axes = [(1 + i,) for i in range(len(windows))]
    return window_sums(keep, axes, windows, strides, padding)


def windowed_keep(
    keep: Array | None, windows: Sequence[int], strides: Sequence[int], padding: int
) -> Array | None:
    """An output position is present when its window holds a present position."""
    if keep is None:
        return None
    return (window_counts(keep, windows, strides, padding) > 0).astype(keep.dtype)


def reciprocal_counts(counts: Array) -> Array:
    """1 / counts, and 0 where nothing is present (an all-masked window or example)."""
    present = counts > 0
    return present / jnp.where(present, counts, 1)


def divide_by_counts(k: Kernel, counts1: Array, counts2: Array | None) -> Kernel:
    """Each entry divided by the counts of its two positions (x1's, x2's): an average over
    the positions present, for a kernel whose entries are sums over windows."""
    r2 = None if counts2 is None else reciprocal_counts(counts2)
    return scale_positions(k, reciprocal_counts(counts1), r2)


def carry(
    keep_after: Callable[[Any, Array], Array | None] | None,
    message: Any,
    before: Kernel,
    after: Kernel,
    path: str,
) -> Kernel:
    """`after` (a layer's output for the masked input `before`) with its mask and remasked."""
    if keep_after is None:
        if after.spatial != before.spatial:
            raise InputError(
                "mask_constant",
                f"{path} does not support masked inputs (it moves positions in a way the "
                "mask cannot follow yet); send the inputs without mask_constant",
            )
        keep1, keep2 = before.keep1, before.keep2
    else:
        keep1 = None if before.keep1 is None else keep_after(message, before.keep1)
        keep2 = None if before.keep2 is None else keep_after(message, before.keep2)
    return remask(after.replace(keep1=keep1, keep2=keep2))


def windowed(message: Windowed, keep: Array) -> Array | None:
    """`keep_after` of a windowed layer (Conv, ConvLocal, AvgPool, SumPool)."""
    window, strides, padding = window_of(message)
    return windowed_keep(keep, window, strides, padding)


def positions_removed(message: Any, keep: Array) -> None:
    """`keep_after` of layers after which an example is one vector (Flatten, global pools)."""
    return None
