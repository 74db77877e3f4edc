"""Convolutions, pooling and Flatten: layers over channels-last inputs (N, *spatial, C)."""

from __future__ import annotations

from collections.abc import Sequence

from ntkserve.builders.arguments import (
    ArgumentError,
    Axis,
    Count,
    Flag,
    Ints,
    Real,
    Scales,
    builder,
)
from ntkserve.builders.common import channels_last, ints, padding, parameterization, single
from ntkserve.spec import Architecture
from ntkserve.v1 import architecture_pb2 as pb


def _dimension_numbers(value: tuple[str, str, str] | None, d: int) -> None:
    if value is None:
        return
    lhs, rhs, out = (str(v) for v in value) if len(value) == 3 else ("", "", "-")
    if not (lhs[:1] == "N" and lhs[-1] == "C" and rhs[-2:] == "IO" and out == lhs):
        raise ArgumentError(
            "dimension_numbers",
            "must be channels-last like ('NHWC', 'HWIO', 'NHWC') (or None), got "
            f"{value!r}; transpose the inputs instead",
        )


_ConvMessage = pb.Conv | pb.ConvTranspose | pb.ConvLocal


def _conv_layer(
    message: type[_ConvMessage],
    field: str,
    out_chan: int,
    filter_shape: Sequence[int],
    strides: Sequence[int] | None,
    padding: str,
    W_std: float,
    b_std: float | None,
    dimension_numbers: tuple[str, str, str] | None,
    parameterization: str,
    s: Sequence[int],
) -> Architecture:
    """The arguments every convolution shares (Conv, ConvTranspose, ConvLocal), as the
    layer message of type `message` in a spec, under the `Layer` field `field`."""
    _dimension_numbers(dimension_numbers, len(filter_shape))
    s_in, s_out = s
    conv = message(
        out_chan=int(out_chan),
        filter_shape=ints(filter_shape),
        strides=ints(strides),
        padding=_padding(padding),  # type: ignore[arg-type]
        w_std=float(W_std),
        parameterization=_param(parameterization),  # type: ignore[arg-type]
        s_in=int(s_in),
        s_out=int(s_out),
    )
    if b_std is not None:
        conv.b_std = float(b_std)
    return single(**{field: conv})


@builder
def Conv(
    out_chan: Count,
    filter_shape: Ints,
    strides: Ints | None = None,
    padding: str = "VALID",
    W_std: Real = 1.0,
    b_std: Real | None = None,
    dimension_numbers: tuple[str, str, str] | None = None,
    parameterization: str = "ntk",
    s: Scales = (1, 1),
) -> Architecture:
    """Convolution with shared weights over 1 to 3 spatial dimensions."""
    return _conv_layer(
        pb.Conv,
        "conv",
        out_chan,
        filter_shape,
        strides,
        padding,
        W_std,
        b_std,
        dimension_numbers,
        parameterization,
        s,
    )


@builder
def ConvTranspose(
    out_chan: Count,
    filter_shape: Ints,
    strides: Ints | None = None,
    padding: str = "VALID",
    W_std: Real = 1.0,
    b_std: Real | None = None,
    dimension_numbers: tuple[str, str, str] | None = None,
    parameterization: str = "ntk",
    s: Scales = (1, 1),
) -> Architecture:
    """Transposed convolution (`jax.lax.conv_transpose`; `strides` upsample): output size
    n * stride + max(filter - stride, 0) for VALID, n * stride for SAME and CIRCULAR."""
    return _conv_layer(
        pb.ConvTranspose,
        "conv_transpose",
        out_chan,
        filter_shape,
        strides,
        padding,
        W_std,
        b_std,
        dimension_numbers,
        parameterization,
        s,
    )


@builder
def ConvLocal(
    out_chan: Count,
    filter_shape: Ints,
    strides: Ints | None = None,
    padding: str = "VALID",
    W_std: Real = 1.0,
    b_std: Real | None = None,
    dimension_numbers: tuple[str, str, str] | None = None,
    parameterization: str = "ntk",
    s: Scales = (1, 1),
) -> Architecture:
    """Locally connected layer: a convolution with its own weights (and bias) at every
    output position, so outputs at different positions are uncorrelated."""
    return _conv_layer(
        pb.ConvLocal,
        "conv_local",
        out_chan,
        filter_shape,
        strides,
        padding,
        W_std,
        b_std,
        dimension_numbers,
        parameterization,
        s,
    )


_padding, _param = padding, parameterization


@builder
def AvgPool(
    window_shape: Ints,
    strides: Ints | None = None,
    padding: str = "VALID",
    normalize_edges: Flag = False,
    batch_axis: Axis = 0,
    channel_axis: Axis = -1,
) -> Architecture:
    """Average over windows of positions."""
    channels_last(batch_axis, channel_axis)
    return single(
        avg_pool=pb.AvgPool(
            window_shape=ints(window_shape),
            strides=ints(strides),
            padding=_padding(padding),  # type: ignore[arg-type]
            normalize_edges=bool(normalize_edges),
        )
    )


@builder
def SumPool(
    window_shape: Ints,
    strides: Ints | None = None,
    padding: str = "VALID",
    batch_axis: Axis = 0,
    channel_axis: Axis = -1,
) -> Architecture:
    """Sum over windows of positions."""
    channels_last(batch_axis, channel_axis)
    return single(
        sum_pool=pb.SumPool(
            window_shape=ints(window_shape),
            strides=ints(strides),
            padding=_padding(padding),  # type: ignore[arg-type]
        )
    )


@builder
def GlobalAvgPool(batch_axis: Axis = 0, channel_axis: Axis = -1) -> Architecture:
    """Mean over all positions: (N, *spatial, C) -> (N, C)."""
    channels_last(batch_axis, channel_axis)
    return single(global_avg_pool=pb.GlobalAvgPool())


@builder
def GlobalSumPool(batch_axis: Axis = 0, channel_axis: Axis = -1) -> Architecture:
    """Sum over all positions: (N, *spatial, C) -> (N, C)."""
    channels_last(batch_axis, channel_axis)
    return single(global_sum_pool=pb.GlobalSumPool())


@builder
def Flatten(batch_axis: Axis = 0, batch_axis_out: Axis = 0) -> Architecture:
    """(N, *spatial, C) -> (N, prod(spatial) * C)."""
    channels_last(batch_axis)
    channels_last(batch_axis_out)
    return single(flatten=pb.Flatten())
