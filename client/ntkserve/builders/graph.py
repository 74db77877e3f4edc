"""Aggregate: message passing over each example's graph (graph neural networks)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ntkserve.builders.common import channels_last, single
from ntkserve.spec import Architecture
from ntkserve.v1 import architecture_pb2 as pb


def Aggregate(
    aggregate_axis: int | tuple[int, ...] | None = None,
    batch_axis: int = 0,
    channel_axis: int = -1,
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
        raise ValueError(
            "aggregate_axis: only None (aggregate over every spatial axis) is supported"
        )
    if to_dense is not None or implementation != "DENSE":
        raise ValueError(
            "to_dense and implementation: only dense patterns are supported (to_dense=None, "
            "implementation='DENSE'); convert sparse patterns to dense arrays before sending"
        )
    return single(aggregate=pb.Aggregate())
