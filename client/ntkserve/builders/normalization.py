"""LayerNorm and Dropout: layers that rescale their inputs, by a variance or a keep rate."""

from __future__ import annotations

from collections.abc import Sequence

from ntkserve.builders.common import channels_last, single
from ntkserve.spec import Architecture
from ntkserve.v1 import architecture_pb2 as pb

_DROPOUT_MODES = {"train": pb.DROPOUT_MODE_TRAIN, "test": pb.DROPOUT_MODE_TEST}


def LayerNorm(
    axis: int | Sequence[int] = -1,
    eps: float = 1e-12,
    batch_axis: int = 0,
    channel_axis: int = -1,
) -> Architecture:
    """`(x - mean) / sqrt(var + eps)` over `axis` of (N, *spatial, C) inputs. The axes must
    include the channels (-1) and may include spatial axes; the batch axis is refused (the
    kernel would depend on the rest of the batch). Needs Gaussian inputs, as in
    neural-tangents: put it after an affine layer or a sum of Gaussian branches."""
    channels_last(batch_axis, channel_axis)
    axes = [int(axis)] if isinstance(axis, int) else [int(a) for a in axis]
    return single(layer_norm=pb.LayerNorm(axis=axes, eps=float(eps)))


def Dropout(rate: float, mode: str = "train") -> Architecture:
    """Dropout with keep probability `rate` (neural-tangents' and jax stax's convention:
    `rate` is the probability of keeping a unit). In 'train' mode the kernel of an example
    with itself (x2=None's diagonal) is divided by rate; 'test' mode is the identity."""
    if mode not in _DROPOUT_MODES:
        raise ValueError(f"mode must be 'train' or 'test', got {mode!r}")
    return single(dropout=pb.Dropout(rate=float(rate), mode=_DROPOUT_MODES[mode]))
