"""Conv, AvgPool, SumPool, GlobalAvgPool, GlobalSumPool and Flatten (Novak et al. 2019,
"Bayesian deep convolutional networks with many channels are Gaussian processes").

With A the mean over a filter's offsets, shared by both positions of a pair,
    Conv:  nngp' = W_std^2 A(nngp) + b_std^2,   ntk' = nngp' + W_std^2 A(ntk)          (NTK)
           ntk' = (C_in |F| / s_in) A(nngp) + W_std^2 A(ntk) + [bias]            (standard)
Pooling averages (or sums) each position of a pair over its own window independently,
so it needs the covariance of every pair of positions; Flatten averages the
same-position covariances (Dense after it sees C * |S| inputs).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import jax.numpy as jnp
import numpy as np
from jax import Array
from ntkserve.v1 import architecture_pb2 as pb

from ntkserve_engine.kernels import masking
from ntkserve_engine.kernels.dense import affine_update, check_affine, ntk_by_default
from ntkserve_engine.kernels.kernel import Kernel
from ntkserve_engine.kernels.rows import Hyper, LayerRow, Role, Rule, Spatial, Violations
from ntkserve_engine.kernels.windows import (
    ShapeProblem,
    Windowed,
    in_image_counts,
    out_size,
    window_of,
    window_sum,
    window_sums,
)

CONVOLUTIONS = (pb.Conv, pb.ConvTranspose, pb.ConvLocal)
Convolution = pb.Conv | pb.ConvTranspose | pb.ConvLocal


def check_dimensions(window: list[int], spatial: Spatial) -> None:
    """Raises ShapeProblem unless the window has one size per spatial dimension."""
    if len(window) != len(spatial):
        raise ShapeProblem(
            f"has a {len(window)}-dimensional window but the input has {len(spatial)} spatial "
            f"dimensions (inputs are (N, *spatial, C))"
        )


def windowed_shape(message: Windowed, spatial: Spatial) -> Spatial:
    """The positions after a windowed layer (Conv, ConvLocal, AvgPool, SumPool)."""
    window = window_of(message)
    check_dimensions(window.sizes, spatial)
    return tuple(
        out_size(n, w, s, window.padding)
        for n, w, s in zip(spatial, window.sizes, window.strides, strict=True)
    )


def map_windowed(k: Kernel, fn: Callable[[Array, int], Array], **changes: object) -> Kernel:
    """`k.map_arrays(fn)`, with nngp and ntk stacked into one array for fn.

    The input kernel's ntk is a constant (zeros); a windowed sum of a constant alone is
    folded by XLA at compile time, element by element (seconds per million entries).
    Stacked with the nngp it is not a constant, and both are summed in one pass.
    """
    if k.ntk is None:
        return k.map_arrays(fn, **changes)
    both = fn(jnp.stack([k.nngp, k.ntk]), 3)
    return k.replace(
        nngp=both[0],
        cov1=None if k.cov1 is None else fn(k.cov1, 1),
        cov2=None if k.cov2 is None else fn(k.cov2, 1),
        ntk=both[1],
        **changes,
    )


def position_axes(a: Array, batch: int, i: int, d: int) -> tuple[int, ...]:
    """The axes of spatial dimension i: one (same positions) or an (x1, x2) pair (pairs)."""
    return (batch + i, batch + d + i) if a.ndim - batch == 2 * d else (batch + i,)


# -- Conv ---------------------------------------------------------------------------------


def conv_rule(layer: pb.Conv | pb.ConvLocal) -> Rule:
    window, strides, padding = window_of(layer)
    out_width = layer.out_chan * layer.s_out
    scale = 1.0 / math.prod(window)

    def offsets_mean(a: Array, batch: int) -> Array:
        d = len(window)
        axes = [position_axes(a, batch, i, d) for i in range(d)]
        return window_sums(a, axes, window, strides, padding) * scale

    def rule(k: Kernel, hp: Hyper) -> Kernel:
        mean = map_windowed(k, offsets_mean, spatial=windowed_shape(layer, k.spatial))
        return affine_update(k, mean, hp, layer, k.width * math.prod(window), out_width)

    return rule


def _check_window(message: Windowed, name: str) -> Violations:
    window = list(getattr(message, name))
    out: Violations = []
    if not 1 <= len(window) <= 3 or min(window, default=0) < 1:
        out.append((name, f"needs 1 to 3 sizes, each >= 1, got {window}"))
    if message.strides and (len(message.strides) != len(window) or min(message.strides) < 1):
        out.append(
            ("strides", f"needs one stride >= 1 per window dimension, got {list(message.strides)}")
        )
    if message.padding not in pb.Padding.values():
        out.append(("padding", f"unknown value {message.padding}"))
    return out


def canonical_windowed(message: Windowed) -> None:
    """Explicit strides and padding; and for a convolution (Conv, ConvTranspose, ConvLocal)
    an explicit parameterization."""
    if isinstance(message, CONVOLUTIONS):
        ntk_by_default(message)
    if not message.strides:
        message.strides.extend(window_of(message).strides)
    if message.padding == pb.PADDING_UNSPECIFIED:
        message.padding = pb.PADDING_VALID


def check_conv(layer: Convolution) -> Violations:
    return check_affine(layer, "out_chan") + _check_window(layer, "filter_shape")


CONV = LayerRow(
    message=pb.Conv,
    role=Role.AFFINE,
    build=conv_rule,
    defaults={"w_std": 1.0, "s_in": 1, "s_out": 1},
    hyper=("w_std", "b_std"),
    check=check_conv,
    canonical=canonical_windowed,
    keep_after=masking.windowed,
    out_spatial=windowed_shape,
)


# -- pooling ------------------------------------------------------------------------------


def pool_rule(layer: pb.AvgPool | pb.SumPool) -> Rule:
    window, strides, padding = window_of(layer)
    average = isinstance(layer, pb.AvgPool)
    by_counts = (
        isinstance(layer, pb.AvgPool) and layer.normalize_edges and padding == pb.PADDING_SAME
    )

    def pool(a: Array, batch: int, divide: bool = True) -> Array:
        d = len(window)
        for i in range(d):
            size = a.shape[batch + i]
            for axis in position_axes(a, batch, i, d):
                a = window_sum(a, (axis,), window[i], strides[i], padding)
                if not divide:
                    continue
                if by_counts:
                    counts = in_image_counts(size, window[i], strides[i], padding)
                    shape = [1] * a.ndim
                    shape[axis] = counts.shape[0]
                    a = a * (1.0 / counts.astype(a.dtype)).reshape(shape)
                elif average:
                    a = a * (1.0 / window[i])
        return a

    def denominators(keep: Array) -> Array:
        """With masks: the positions present in each window, plus the padded ones unless
        normalize_edges (as the unmasked average counts them)."""
        present = masking.window_counts(keep, window, strides, padding)
        if by_counts:
            return present
        in_image = masking.window_counts(jnp.ones_like(keep), window, strides, padding)
        return present + (math.prod(window) - in_image)

    def rule(k: Kernel, hp: Hyper) -> Kernel:
        spatial = windowed_shape(layer, k.spatial)
        if k.keep1 is None or not average:
            return map_windowed(k, pool, spatial=spatial)
        sums = map_windowed(k, lambda a, batch: pool(a, batch, divide=False), spatial=spatial)
        keep2 = None if k.keep2 is None else denominators(k.keep2)
        return masking.divide_by_counts(sums, denominators(k.keep1), keep2)

    return rule


def _pool_row(message: type[pb.AvgPool] | type[pb.SumPool]) -> LayerRow:
    return LayerRow(
        message=message,
        role=Role.LINEAR,
        build=pool_rule,
        check=lambda layer: _check_window(layer, "window_shape"),
        canonical=canonical_windowed,
        needs_position_pairs=True,
        keep_after=masking.windowed,
        out_spatial=windowed_shape,
    )


AVG_POOL = _pool_row(pb.AvgPool)
SUM_POOL = _pool_row(pb.SumPool)


# -- global pooling and Flatten ----------------------------------------------------------


def _needs_positions(layer: object, spatial: Spatial) -> Spatial:
    if not spatial:
        raise ShapeProblem("needs inputs with spatial dimensions (N, *spatial, C)")
    return ()


def global_pool_rule(average: bool) -> Rule:
    def rule(k: Kernel, hp: Hyper) -> Kernel:
        masked = average and k.keep1 is not None

        def reduce(a: Array, batch: int) -> Array:
            axes = tuple(range(batch, a.ndim))
            return jnp.mean(a, axis=axes) if average and not masked else jnp.sum(a, axis=axes)

        pooled = k.map_arrays(reduce, spatial=(), position_pairs=False)
        if not masked:
            return pooled
        assert k.keep1 is not None
        positions = tuple(range(1, k.keep1.ndim))  # the mean over the positions present
        n2 = None if k.keep2 is None else k.keep2.sum(axis=positions)
        return masking.divide_by_counts(pooled, k.keep1.sum(axis=positions), n2)

    return rule


def flatten_rule(layer: pb.Flatten) -> Rule:
    def rule(k: Kernel, hp: Hyper) -> Kernel:
        d = len(k.spatial)
        grids = tuple(np.indices(k.spatial)) if d else ()

        def same_positions_mean(a: Array, batch: int) -> Array:
            if k.position_pairs:
                a = a[(slice(None),) * batch + grids * 2]
            return jnp.mean(a, axis=tuple(range(batch, a.ndim))) if d else a

        return k.map_arrays(
            same_positions_mean,
            spatial=(),
            position_pairs=False,
            is_gaussian=False,
            width=k.width * math.prod(k.spatial),
        )

    return rule


GLOBAL_AVG_POOL = LayerRow(
    message=pb.GlobalAvgPool,
    role=Role.LINEAR,
    build=lambda layer: global_pool_rule(True),
    needs_position_pairs=True,
    out_spatial=_needs_positions,
    keep_after=masking.positions_removed,
)
GLOBAL_SUM_POOL = LayerRow(
    message=pb.GlobalSumPool,
    role=Role.LINEAR,
    build=lambda layer: global_pool_rule(False),
    needs_position_pairs=True,
    out_spatial=_needs_positions,
    keep_after=masking.positions_removed,
)
FLATTEN = LayerRow(
    message=pb.Flatten,
    role=Role.FLATTEN,
    build=flatten_rule,
    out_spatial=lambda layer, s: (),
    keep_after=masking.positions_removed,
)
