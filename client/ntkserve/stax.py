"""Layer builders with neural-tangents' `stax` names, parameters and defaults.

An NT user moves a network over by changing one import:

    from ntkserve import stax
    arch = stax.serial(stax.Dense(512, W_std=1.5, b_std=0.05), stax.Relu(), stax.Dense(1))

Each builder returns an `Architecture` spec (a protobuf message underneath); nothing is
computed here. Parameters are checked by the server when the network is registered, so every
client language gets the same answers. Layout is fixed: batch first, channels last; NT's
`batch_axis`/`channel_axis` are accepted only at those defaults.
"""

from __future__ import annotations

from collections.abc import Sequence

from ntkserve.spec import Architecture
from ntkserve.v1 import architecture_pb2 as pb

__all__ = [
    "ABRelu",
    "Abs",
    "Architecture",
    "Dense",
    "Erf",
    "LeakyRelu",
    "Relu",
    "serial",
]

_PARAMETERIZATIONS = {
    "ntk": pb.PARAMETERIZATION_NTK,
    "standard": pb.PARAMETERIZATION_STANDARD,
}


def _single(**layer: object) -> Architecture:
    return Architecture([pb.Layer(**layer)])  # type: ignore[arg-type]


def _parameterization(value: str) -> int:
    try:
        return _PARAMETERIZATIONS[value.lower()]
    except (KeyError, AttributeError):
        raise ValueError(f"parameterization must be 'ntk' or 'standard', got {value!r}") from None


def _layout(batch_axis: int, channel_axis: int) -> None:
    if batch_axis != 0 or channel_axis != -1:
        raise ValueError(
            "ntkserve inputs are batch-first and channels-last: only batch_axis=0 and "
            f"channel_axis=-1 are supported, got batch_axis={batch_axis}, "
            f"channel_axis={channel_axis}; transpose the inputs instead"
        )


def serial(*layers: Architecture) -> Architecture:
    """Layers applied one after another (NT's `stax.serial`)."""
    return Architecture(layer for arch in layers for layer in arch.layers)


def Dense(
    out_dim: int,
    W_std: float = 1.0,
    b_std: float | None = None,
    batch_axis: int = 0,
    channel_axis: int = -1,
    parameterization: str = "ntk",
    s: Sequence[int] = (1, 1),
) -> Architecture:
    """Fully connected layer. `b_std=None` means no bias (different from `b_std=0.0` in the
    standard parameterization, where a zero-variance bias is still trained)."""
    _layout(batch_axis, channel_axis)
    s_in, s_out = s
    dense = pb.Dense(
        out_dim=int(out_dim),
        w_std=float(W_std),
        parameterization=_parameterization(parameterization),  # type: ignore[arg-type]
        s_in=int(s_in),
        s_out=int(s_out),
    )
    if b_std is not None:
        dense.b_std = float(b_std)
    return _single(dense=dense)


def ABRelu(a: float, b: float) -> Architecture:
    """`a * min(x, 0) + b * max(x, 0)`: the family of Relu, LeakyRelu and Abs."""
    return _single(ab_relu=pb.ABRelu(a=float(a), b=float(b)))


def Relu() -> Architecture:
    """`max(x, 0)`."""
    return _single(relu=pb.Relu())


def LeakyRelu(alpha: float) -> Architecture:
    """`alpha * min(x, 0) + max(x, 0)`."""
    return _single(leaky_relu=pb.LeakyRelu(alpha=float(alpha)))


def Abs() -> Architecture:
    """`|x|`."""
    return _single(abs=pb.Abs())


def Erf(a: float = 1.0, b: float = 1.0, c: float = 0.0) -> Architecture:
    """`a * erf(b * x) + c`."""
    return _single(erf=pb.Erf(a=float(a), b=float(b), c=float(c)))
