"""serial, parallel, repeat and the branching layers (FanOut, FanIn*, Identity)."""

from __future__ import annotations

from ntkserve.builders.arguments import Axis, Count, Spec, builder
from ntkserve.builders.common import single
from ntkserve.spec import Architecture
from ntkserve.v1 import architecture_pb2 as pb


@builder
def serial(*layers: Spec) -> Architecture:
    """Layers applied one after another (NT's `stax.serial`)."""
    return Architecture(layer for arch in layers for layer in arch.layers)


def _as_layer(arch: Architecture) -> pb.Layer:
    if len(arch.layers) == 1:
        return arch.layers[0]
    return pb.Layer(serial=pb.Serial(layers=arch.layers))


@builder
def parallel(*layers: Spec) -> Architecture:
    """Branch i of a multi-branch input goes through layers[i] (NT's `stax.parallel`)."""
    return single(parallel=pb.Parallel(branches=[_as_layer(a) for a in layers]))


@builder
def repeat(layer: Spec, n: Count) -> Architecture:
    """`layer` applied n times with shared parameters, compiled as one loop."""
    return single(repeat=pb.Repeat(layer=_as_layer(layer), n=int(n)))


@builder
def FanOut(num: Count) -> Architecture:
    """One input becomes `num` identical branches."""
    return single(fan_out=pb.FanOut(num=int(num)))


@builder
def FanInSum() -> Architecture:
    """Branches summed (with Identity: a residual connection)."""
    return single(fan_in_sum=pb.FanInSum())


@builder
def FanInProd() -> Architecture:
    """Branches multiplied elementwise."""
    return single(fan_in_prod=pb.FanInProd())


@builder
def FanInConcat(axis: Axis = -1) -> Architecture:
    """Branches concatenated along the channel axis (the only axis supported)."""
    return single(fan_in_concat=pb.FanInConcat(axis=int(axis)))


@builder
def Identity() -> Architecture:
    """The identity layer."""
    return single(identity=pb.Identity())
