"""LayerNorm and Dropout: layers that rescale their inputs, by a variance or a keep rate."""

from __future__ import annotations

import numpy as np

from ntkserve.builders.arguments import ArgumentError, Axes, Axis, Real, builder
from ntkserve.builders.common import channels_last, single
from ntkserve.spec import Architecture
from ntkserve.v1 import architecture_pb2 as pb

_DROPOUT_MODES = {"train": pb.DROPOUT_MODE_TRAIN, "test": pb.DROPOUT_MODE_TEST}


@builder
def LayerNorm(
    axis: Axes = -1,
    eps: Real = 1e-12,
    batch_axis: Axis = 0,
    channel_axis: Axis = -1,
) -> Architecture:
    """`(x - mean) / sqrt(var + eps)` over `axis` of (N, *spatial, C) inputs. The axes must
    include the channels (-1) and may include spatial axes; the batch axis is refused (the
    kernel would depend on the rest of the batch). Needs Gaussian inputs, as in
    neural-tangents: put it after an affine layer or a sum of Gaussian branches."""
    channels_last(batch_axis, channel_axis)
    axes = [int(a) for a in np.ravel(axis)]  # an int or a sequence of them
    return single(layer_norm=pb.LayerNorm(axis=axes, eps=float(eps)))


@builder
def Dropout(rate: Real, mode: str = "train") -> Architecture:
    """Dropout with keep probability `rate` (neural-tangents' and jax stax's convention:
    `rate` is the probability of keeping a unit). In 'train' mode the kernel of an example
    with itself (x2=None's diagonal) is divided by rate; 'test' mode is the identity."""
    if mode not in _DROPOUT_MODES:
        raise ArgumentError("mode", f"must be 'train' or 'test', got {mode!r}")
    return single(dropout=pb.Dropout(rate=float(rate), mode=_DROPOUT_MODES[mode]))
