"""Aggregate: message passing over each example's graph (graph neural networks)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ntkserve.builders.arguments import ArgumentError, Axis, builder
from ntkserve.builders.common import channels_last, single
from ntkserve.spec import Architecture
from ntkserve.v1 import architecture_pb2 as pb


@builder
def Aggregate(
    aggregate_axis: int | tuple[int, ...] | None = None,
    batch_axis: Axis = 0,
    channel_axis: Axis = -1,
    to_dense: Callable[[Any], Any] | None = None,
    implementation: str = "DENSE",
) -> Architecture:
    """`y[n, s] = sum_t pattern[n, s, t] x[n, t]` over all positions (the graph's nodes) of
    (N, *spatial, C) inputs. The patterns, (N, *spatial, *spatial), are sent with the inputs
    (`Client.kernel(..., pattern=(pattern1, pattern2))`). neural-tangents' other options
    need Python functions or sparse formats that do not travel: only their defaults are
    accepted (send dense patterns)."""
    channels_last(batch_axis, channel_axis)
    if aggregate_axis is not None:
        raise ArgumentError(
            "aggregate_axis", "must be None (aggregate over every spatial axis), the only one"
        )
    if to_dense is not None or implementation != "DENSE":
        raise ArgumentError(
            "to_dense and implementation",
            "must be None and 'DENSE': only dense patterns are supported; convert sparse "
            "patterns to dense arrays before sending",
        )
    return single(aggregate=pb.Aggregate())
