"""Dense and the ABRelu and Erf families: the layers of fully connected networks."""

from __future__ import annotations

from ntkserve.builders.arguments import Axis, Count, Real, Scales, builder
from ntkserve.builders.common import channels_last, parameterization, single
from ntkserve.spec import Architecture
from ntkserve.v1 import architecture_pb2 as pb


@builder
def Dense(
    out_dim: Count,
    W_std: Real = 1.0,
    b_std: Real | None = None,
    batch_axis: Axis = 0,
    channel_axis: Axis = -1,
    parameterization: str = "ntk",
    s: Scales = (1, 1),
) -> Architecture:
    """Fully connected layer. `b_std=None` means no bias (different from `b_std=0.0` in the
    standard parameterization, where a zero-variance bias is still trained)."""
    channels_last(batch_axis, channel_axis)
    s_in, s_out = s
    dense = pb.Dense(
        out_dim=int(out_dim),
        w_std=float(W_std),
        parameterization=_param(parameterization),  # type: ignore[arg-type]
        s_in=int(s_in),
        s_out=int(s_out),
    )
    if b_std is not None:
        dense.b_std = float(b_std)
    return single(dense=dense)


_param = parameterization


@builder
def ABRelu(a: Real, b: Real) -> Architecture:
    """`a * min(x, 0) + b * max(x, 0)`: the family of Relu, LeakyRelu and Abs."""
    return single(ab_relu=pb.ABRelu(a=float(a), b=float(b)))


@builder
def Relu() -> Architecture:
    """`max(x, 0)`."""
    return single(relu=pb.Relu())


@builder
def LeakyRelu(alpha: Real) -> Architecture:
    """`alpha * min(x, 0) + max(x, 0)`."""
    return single(leaky_relu=pb.LeakyRelu(alpha=float(alpha)))


@builder
def Abs() -> Architecture:
    """`|x|`."""
    return single(abs=pb.Abs())


@builder
def Erf(a: Real = 1.0, b: Real = 1.0, c: Real = 0.0) -> Architecture:
    """`a * erf(b * x) + c`."""
    return single(erf=pb.Erf(a=float(a), b=float(b), c=float(c)))
