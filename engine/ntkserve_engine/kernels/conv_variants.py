"""ConvLocal and ConvTranspose: the convolutions of neural-tangents beyond Conv (Novak et al.
2019, "Bayesian deep convolutional networks with many channels are Gaussian processes",
whose Conv kernel both build on; see spatial.py for Conv's).

ConvLocal (a locally connected layer: its own weights and bias at every output position q).
Outputs at two different positions depend on independent weights, so
    k'(q, q') = 0                                                            for q != q',
and at equal positions the update is Conv's, with A(k)(q) the mean of k(q s + t - p, q s + t - p)
over the filter's offsets t (p: the padding before; same-position inputs only):
    nngp'(q, q) = W_std^2 A(nngp)(q) + b_std^2,   ntk'(q, q) = nngp'(q, q) + W_std^2 A(ntk)(q)
    ntk'(q, q)  = (C_in |F| / s_in) A(nngp)(q) + W_std^2 A(ntk)(q) + [bias present]  (standard)
With same positions only (a Flatten readout) it is Conv exactly; pooling after it sees the zeros.

ConvTranspose, y = W_std / sqrt(C_in |F|) lax.conv_transpose(x, W) + b_std b (neural-tangents'
weights and normalisation; W and b shared over positions). Upsample the input covariance as
lax upsamples x: s - 1 zero rows between positions, then lax's padding (pad_lo, pad_hi) for
the padding mode (`transpose_pads`); call it k~. Every output pair shares the filter's offset:
    T(k)(q, q') = (1 / |F|) sum_{t < |F|} k~(q + t, q' + t)
and T takes A's place in Conv's update (both parameterizations, fan-in C_in |F|). Output size
per dimension: VALID n s + max(f - s, 0), SAME n s. CIRCULAR is neural-tangents' definition:
the VALID output wrapped onto n s positions (entry j added to position (j - o) mod n s, with
o = max(f - s, 0) // 2), applied to each position axis of the covariance.
"""

from __future__ import annotations

import math

import jax.numpy as jnp
import numpy as np
from jax import Array, lax
from ntkserve.v1 import architecture_pb2 as pb

from ntkserve_engine.kernels.dense import affine_update
from ntkserve_engine.kernels.errors import InputError
from ntkserve_engine.kernels.kernel import Kernel
from ntkserve_engine.kernels.rows import Hyper, LayerRow, Role, Rule, Spatial, Violations
from ntkserve_engine.kernels.spatial import (
    CONV,
    check_conv,
    check_dimensions,
    conv_rule,
    map_windowed,
    position_axes,
)
from ntkserve_engine.kernels.windows import ShapeProblem, window_of, window_sums

# -- ConvLocal ----------------------------------------------------------------------------


def _same_positions(a: Array, batch: int, spatial: Spatial) -> Array:
    """(batch..., *S, *S) -> (batch..., *S): each position with itself."""
    grids = tuple(np.indices(spatial))
    return a[(slice(None),) * batch + grids * 2]


def _on_position_diagonal(a: Array, batch: int, spatial: Spatial) -> Array:
    """(batch..., *S) -> (batch..., *S, *S): a at equal positions, exactly 0 elsewhere.

    The mask is built in the program from iotas, not as a host array: an identity over |S|^2
    pairs would be allocated while tracing, before any memory planning sees it.
    """
    d = len(spatial)
    pairs = spatial + spatial
    same = lax.broadcasted_iota(jnp.int32, pairs, 0) == lax.broadcasted_iota(jnp.int32, pairs, d)
    for i in range(1, d):
        same &= lax.broadcasted_iota(jnp.int32, pairs, i) == lax.broadcasted_iota(
            jnp.int32, pairs, d + i
        )
    expanded = a.reshape(a.shape + (1,) * d)
    return jnp.where(same, expanded, np.zeros((), a.dtype))


def conv_local_rule(layer: pb.ConvLocal) -> Rule:
    """Conv's rule on same-position covariances; zeros between different positions."""
    same_position_update = conv_rule(layer)

    def rule(k: Kernel, hp: Hyper) -> Kernel:
        if not k.position_pairs:
            return same_position_update(k, hp)
        diagonal = map_windowed(
            k, lambda a, batch: _same_positions(a, batch, k.spatial), position_pairs=False
        )
        out = same_position_update(diagonal, hp)
        return map_windowed(
            out, lambda a, batch: _on_position_diagonal(a, batch, out.spatial), position_pairs=True
        )

    return rule


CONV_LOCAL = LayerRow(
    message=pb.ConvLocal,
    role=Role.AFFINE,
    build=conv_local_rule,
    defaults=CONV.defaults,
    hyper=CONV.hyper,
    check=check_conv,
    canonical=CONV.canonical,
    out_spatial=CONV.out_spatial,
    keep_after=CONV.keep_after,  # masks: the same windows as Conv's (neural-tangents too)
)


# -- ConvTranspose ------------------------------------------------------------------------

# Output positions one ConvTranspose may produce, all dimensions together (a 1024 x 1024
# image). The output grows by the stride (and the filter): without a bound, a one-position
# input and a stride of 2**60 would reach XLA as a shape, and positions cost host memory
# even when nothing is computed (tracing indexes them: 2**28 positions took 14 GiB just to
# estimate a tile's memory); squared (position pairs), 2**40 entries per pair still fit int64.
MAX_TRANSPOSED_POSITIONS = 1 << 20


def transpose_pads(window: int, stride: int, padding: int) -> tuple[int, int]:
    """The zeros lax.conv_transpose puts before and after the upsampled input of one
    dimension (lax's rule for 'SAME' and 'VALID'; CIRCULAR pads as VALID, then wraps)."""
    if padding == pb.PADDING_SAME:
        total = window + stride - 2
        before = window - 1 if stride > window - 1 else -(-total // 2)
    else:
        total = window + stride - 2 + max(window - stride, 0)
        before = window - 1
    return before, total - before


def transposed_size(size: int, window: int, stride: int, padding: int) -> int:
    upsampled = size * stride
    if padding in (pb.PADDING_VALID, pb.PADDING_UNSPECIFIED):
        return upsampled + max(window - stride, 0)
    if window > 2 * upsampled + 1:
        # As for Conv: wider taps only ever see padding (SAME) or the same positions again
        # (CIRCULAR), and would make the padded arrays as large as the client asks.
        raise ShapeProblem(
            f"a window of {window} over {upsampled} upsampled positions reaches past every "
            f"position from every output (at most {2 * upsampled + 1} here)"
        )
    return upsampled


def transposed_shape(layer: pb.ConvTranspose, spatial: Spatial) -> Spatial:
    window, strides, padding = window_of(layer)
    check_dimensions(window, spatial)
    out = tuple(
        transposed_size(n, w, s, padding) for n, w, s in zip(spatial, window, strides, strict=True)
    )
    if math.prod(out) > MAX_TRANSPOSED_POSITIONS:
        raise ShapeProblem(
            f"would make {list(out)} output positions, more than {MAX_TRANSPOSED_POSITIONS} "
            "in all; use smaller strides or filters"
        )
    return out


def _wrap_sum(a: Array, axis: int, period: int, offset: int) -> Array:
    """Adds entry j of `axis` into position (j - offset) mod period: the VALID output of a
    transposed convolution wrapped around onto `period` positions (CIRCULAR)."""
    lead = (-offset) % period  # j + lead = (j - offset) mod period, up to whole periods
    length = a.shape[axis] + lead
    total = -(-length // period) * period
    widths = [(0, 0)] * a.ndim
    widths[axis] = (lead, total - length)
    a = jnp.pad(a, widths)
    return a.reshape((*a.shape[:axis], total // period, period, *a.shape[axis + 1 :])).sum(axis)


def conv_transpose_rule(layer: pb.ConvTranspose) -> Rule:
    window, strides, padding = window_of(layer)
    circular = padding == pb.PADDING_CIRCULAR
    lax_padding = pb.PADDING_VALID if circular else padding
    out_width = layer.out_chan * layer.s_out
    scale = 1.0 / math.prod(window)

    def offsets_mean(a: Array, batch: int) -> Array:
        """T(a): upsample and pad each position axis as lax does x, then the filter's
        offsets summed with one shift shared by both positions of a pair."""
        d = len(window)
        axes = [position_axes(a, batch, i, d) for i in range(d)]
        sizes = [a.shape[pair[0]] for pair in axes]
        config = [(0, 0, 0)] * a.ndim
        for pair, w, s in zip(axes, window, strides, strict=True):
            before, after = transpose_pads(w, s, lax_padding)
            for axis in pair:
                config[axis] = (before, after, s - 1)
        upsampled = lax.pad(a, np.zeros((), a.dtype), config)
        out = window_sums(upsampled, axes, window, [1] * d, pb.PADDING_VALID)
        if circular:
            for pair, n, w, s in zip(axes, sizes, window, strides, strict=True):
                for axis in pair:
                    out = _wrap_sum(out, axis, n * s, max(w - s, 0) // 2)
        return out * scale

    def rule(k: Kernel, hp: Hyper) -> Kernel:
        mean = map_windowed(k, offsets_mean, spatial=transposed_shape(layer, k.spatial))
        return affine_update(k, mean, hp, layer, k.width * math.prod(window), out_width)

    return rule


def check_conv_transpose(layer: pb.ConvTranspose) -> Violations:
    """Conv's checks, and sizes that cannot alone exceed the output bound (rejected when the
    network is registered, before any input is seen)."""
    out = check_conv(layer)
    for name in ("filter_shape", "strides"):
        values = list(getattr(layer, name))
        if max(values, default=0) > MAX_TRANSPOSED_POSITIONS:
            out.append(
                (name, f"each at most {MAX_TRANSPOSED_POSITIONS} (output positions), got {values}")
            )
    return out


def _refuse_masks(layer: pb.ConvTranspose, keep: Array) -> Array:
    """Masked inputs are refused: which upsampled positions a mask leaves present (those fed
    only by masked inputs? and the ones no input reaches, between strides?) is not settled."""
    raise InputError(
        "mask_constant",
        "ConvTranspose does not support masked inputs yet; send the inputs without mask_constant",
    )


CONV_TRANSPOSE = LayerRow(
    message=pb.ConvTranspose,
    role=Role.AFFINE,
    build=conv_transpose_rule,
    defaults=CONV.defaults,
    hyper=CONV.hyper,
    check=check_conv_transpose,
    canonical=CONV.canonical,
    out_spatial=transposed_shape,
    keep_after=_refuse_masks,
)
