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

from ntkserve_server.kernels.dense import affine_update, check_affine, ntk_by_default
from ntkserve_server.kernels.kernel import Kernel
from ntkserve_server.kernels.rows import Hyper, LayerRow, Role, Rule, Spatial, Violations
from ntkserve_server.kernels.windows import (
    ShapeProblem,
    in_image_counts,
    out_size,
    window_sum,
    window_sums,
)


def _strides(message: pb.Conv | pb.AvgPool | pb.SumPool, window: list[int]) -> list[int]:
    return list(message.strides) or [1] * len(window)


def _windowed_shape(
    window: list[int], strides: list[int], padding: int, spatial: Spatial
) -> Spatial:
    if len(window) != len(spatial):
        raise ShapeProblem(
            f"has a {len(window)}-dimensional window but the input has {len(spatial)} spatial "
            f"dimensions (inputs are (N, *spatial, C))"
        )
    return tuple(
        out_size(n, w, s, padding) for n, w, s in zip(spatial, window, strides, strict=True)
    )


def _map_windowed(k: Kernel, fn: Callable[[Array, int], Array], **changes: object) -> Kernel:
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


def _position_axes(a: Array, batch: int, i: int, d: int) -> tuple[int, ...]:
    """The axes of spatial dimension i: one (diagonal layout) or an (x1, x2) pair (full)."""
    return (batch + i, batch + d + i) if a.ndim - batch == 2 * d else (batch + i,)


# -- Conv ---------------------------------------------------------------------------------


def conv_rule(layer: pb.Conv) -> Rule:
    window = list(layer.filter_shape)
    strides = _strides(layer, window)
    out_width = layer.out_chan * layer.s_out
    scale = 1.0 / math.prod(window)

    def offsets_mean(a: Array, batch: int) -> Array:
        d = len(window)
        axes = [_position_axes(a, batch, i, d) for i in range(d)]
        return window_sums(a, axes, window, strides, layer.padding) * scale

    def rule(k: Kernel, hp: Hyper) -> Kernel:
        mean = _map_windowed(
            k, offsets_mean, spatial=_windowed_shape(window, strides, layer.padding, k.spatial)
        )
        return affine_update(k, mean, hp, layer, k.width * math.prod(window), out_width)

    return rule


def _check_window(message: pb.Conv | pb.AvgPool | pb.SumPool, name: str) -> Violations:
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


def _canonical_windowed(message: pb.Conv | pb.AvgPool | pb.SumPool) -> None:
    window = message.filter_shape if isinstance(message, pb.Conv) else message.window_shape
    if not message.strides:
        message.strides.extend([1] * len(window))
    if message.padding == pb.PADDING_UNSPECIFIED:
        message.padding = pb.PADDING_VALID
    if isinstance(message, pb.Conv):
        ntk_by_default(message)


def _check_conv(layer: pb.Conv) -> Violations:
    return check_affine(layer, "out_chan") + _check_window(layer, "filter_shape")


CONV = LayerRow(
    message=pb.Conv,
    role=Role.AFFINE,
    build=conv_rule,
    defaults={"w_std": 1.0, "s_in": 1, "s_out": 1},
    hyper=("w_std", "b_std"),
    check=_check_conv,
    canonical=_canonical_windowed,
    out_spatial=lambda layer, spatial: _windowed_shape(
        list(layer.filter_shape), _strides(layer, list(layer.filter_shape)), layer.padding, spatial
    ),
)


# -- pooling ------------------------------------------------------------------------------


def pool_rule(layer: pb.AvgPool | pb.SumPool) -> Rule:
    window = list(layer.window_shape)
    strides = _strides(layer, window)
    average = isinstance(layer, pb.AvgPool)
    by_counts = (
        isinstance(layer, pb.AvgPool) and layer.normalize_edges and layer.padding == pb.PADDING_SAME
    )

    def pool(a: Array, batch: int) -> Array:
        d = len(window)
        for i in range(d):
            size = a.shape[batch + i]
            for axis in _position_axes(a, batch, i, d):
                a = window_sum(a, (axis,), window[i], strides[i], layer.padding)
                if by_counts:
                    counts = in_image_counts(size, window[i], strides[i], layer.padding)
                    shape = [1] * a.ndim
                    shape[axis] = counts.shape[0]
                    a = a * (1.0 / counts.astype(a.dtype)).reshape(shape)
                elif average:
                    a = a * (1.0 / window[i])
        return a

    def rule(k: Kernel, hp: Hyper) -> Kernel:
        spatial = _windowed_shape(window, strides, layer.padding, k.spatial)
        return _map_windowed(k, pool, spatial=spatial)

    return rule


def _pool_row(message: type[pb.AvgPool] | type[pb.SumPool]) -> LayerRow:
    return LayerRow(
        message=message,
        role=Role.LINEAR,
        build=pool_rule,
        check=lambda layer: _check_window(layer, "window_shape"),
        canonical=_canonical_windowed,
        needs_full_spatial=True,
        out_spatial=lambda layer, spatial: _windowed_shape(
            list(layer.window_shape),
            _strides(layer, list(layer.window_shape)),
            layer.padding,
            spatial,
        ),
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
        def reduce(a: Array, batch: int) -> Array:
            axes = tuple(range(batch, a.ndim))
            return jnp.mean(a, axis=axes) if average else jnp.sum(a, axis=axes)

        return k.map_arrays(reduce, spatial=(), full=False)

    return rule


def flatten_rule(layer: pb.Flatten) -> Rule:
    def rule(k: Kernel, hp: Hyper) -> Kernel:
        d = len(k.spatial)
        grids = tuple(np.indices(k.spatial)) if d else ()

        def same_positions_mean(a: Array, batch: int) -> Array:
            if k.full:
                a = a[(slice(None),) * batch + grids * 2]
            return jnp.mean(a, axis=tuple(range(batch, a.ndim))) if d else a

        return k.map_arrays(
            same_positions_mean,
            spatial=(),
            full=False,
            is_gaussian=False,
            width=k.width * math.prod(k.spatial),
        )

    return rule


GLOBAL_AVG_POOL = LayerRow(
    message=pb.GlobalAvgPool,
    role=Role.LINEAR,
    build=lambda layer: global_pool_rule(True),
    needs_full_spatial=True,
    out_spatial=_needs_positions,
)
GLOBAL_SUM_POOL = LayerRow(
    message=pb.GlobalSumPool,
    role=Role.LINEAR,
    build=lambda layer: global_pool_rule(False),
    needs_full_spatial=True,
    out_spatial=_needs_positions,
)
FLATTEN = LayerRow(
    message=pb.Flatten,
    role=Role.FLATTEN,
    build=flatten_rule,
    out_spatial=lambda layer, s: (),
)
