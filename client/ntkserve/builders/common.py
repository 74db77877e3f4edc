"""Shared helpers of the builders: one layer message in a spec, parameter spellings.

A spelling that does not exist raises `ArgumentError`, which `arguments.builder` names after
the builder that was called."""

from __future__ import annotations

from collections.abc import Sequence

from ntkserve.builders.arguments import ArgumentError
from ntkserve.spec import Architecture
from ntkserve.v1 import architecture_pb2 as pb

_PARAMETERIZATIONS = {
    "ntk": pb.PARAMETERIZATION_NTK,
    "standard": pb.PARAMETERIZATION_STANDARD,
}
_PADDINGS = {
    "VALID": pb.PADDING_VALID,
    "SAME": pb.PADDING_SAME,
    "CIRCULAR": pb.PADDING_CIRCULAR,
}


def single(**layer: object) -> Architecture:
    """A spec of exactly one layer, e.g. single(relu=pb.Relu())."""
    return Architecture([pb.Layer(**layer)])  # type: ignore[arg-type]


def parameterization(value: str) -> int:
    try:
        return _PARAMETERIZATIONS[value.lower()]
    except (KeyError, AttributeError):
        raise ArgumentError(
            "parameterization", f"must be 'ntk' or 'standard', got {value!r}"
        ) from None


def padding(value: str) -> int:
    name = getattr(value, "name", value)  # NT's stax.Padding enum or a string
    try:
        return _PADDINGS[str(name).upper()]
    except KeyError:
        raise ArgumentError(
            "padding", f"must be 'VALID', 'SAME' or 'CIRCULAR', got {value!r}"
        ) from None


def channels_last(batch_axis: int = 0, channel_axis: int = -1) -> None:
    if batch_axis != 0 or channel_axis != -1:
        raise ArgumentError(
            "batch_axis and channel_axis",
            "must be 0 and -1: ntkserve inputs are batch-first and channels-last, got "
            f"batch_axis={batch_axis}, channel_axis={channel_axis}; transpose the inputs instead",
        )


def ints(values: Sequence[int] | None) -> list[int]:
    return [] if values is None else [int(v) for v in values]
