"""Convolutions, pooling and Flatten: layers over channels-last inputs (N, *spatial, C)."""

from __future__ import annotations

from collections.abc import Sequence

from ntkserve.builders.common import channels_last, ints, padding, parameterization, single
from ntkserve.spec import Architecture
from ntkserve.v1 import architecture_pb2 as pb


def _dimension_numbers(value: tuple[str, str, str] | None, d: int) -> None:
    if value is None:
        return
    lhs, rhs, out = (str(v) for v in value)
    if not (lhs[0] == "N" and lhs[-1] == "C" and rhs[-2:] == "IO" and out == lhs):
        raise ValueError(
            f"dimension_numbers {value!r}: ntkserve convolutions are channels-last "
            f"(e.g. ('NHWC', 'HWIO', 'NHWC')); transpose the inputs instead"
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


def Conv(
    out_chan: int,
    filter_shape: Sequence[int],
    strides: Sequence[int] | None = None,
    padding: str = "VALID",
    W_std: float = 1.0,
    b_std: float | None = None,
    dimension_numbers: tuple[str, str, str] | None = None,
    parameterization: str = "ntk",
    s: Sequence[int] = (1, 1),
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


def ConvTranspose(
    out_chan: int,
    filter_shape: Sequence[int],
    strides: Sequence[int] | None = None,
    padding: str = "VALID",
    W_std: float = 1.0,
    b_std: float | None = None,
    dimension_numbers: tuple[str, str, str] | None = None,
    parameterization: str = "ntk",
    s: Sequence[int] = (1, 1),
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


def ConvLocal(
    out_chan: int,
    filter_shape: Sequence[int],
    strides: Sequence[int] | None = None,
    padding: str = "VALID",
    W_std: float = 1.0,
    b_std: float | None = None,
    dimension_numbers: tuple[str, str, str] | None = None,
    parameterization: str = "ntk",
    s: Sequence[int] = (1, 1),
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


def AvgPool(
    window_shape: Sequence[int],
    strides: Sequence[int] | None = None,
    padding: str = "VALID",
    normalize_edges: bool = False,
    batch_axis: int = 0,
    channel_axis: int = -1,
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


def SumPool(
    window_shape: Sequence[int],
    strides: Sequence[int] | None = None,
    padding: str = "VALID",
    batch_axis: int = 0,
    channel_axis: int = -1,
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


def GlobalAvgPool(batch_axis: int = 0, channel_axis: int = -1) -> Architecture:
    """Mean over all positions: (N, *spatial, C) -> (N, C)."""
    channels_last(batch_axis, channel_axis)
    return single(global_avg_pool=pb.GlobalAvgPool())


def GlobalSumPool(batch_axis: int = 0, channel_axis: int = -1) -> Architecture:
    """Sum over all positions: (N, *spatial, C) -> (N, C)."""
    channels_last(batch_axis, channel_axis)
    return single(global_sum_pool=pb.GlobalSumPool())


def Flatten(batch_axis: int = 0, batch_axis_out: int = 0) -> Architecture:
    """(N, *spatial, C) -> (N, prod(spatial) * C)."""
    channels_last(batch_axis)
    channels_last(batch_axis_out)
    return single(flatten=pb.Flatten())
