"""Layer builders with neural-tangents' `stax` names, parameters and defaults.

An NT user moves a network over by changing one import:

    from ntkserve import stax
    arch = stax.serial(stax.Dense(512, W_std=1.5, b_std=0.05), stax.Relu(), stax.Dense(1))

Each builder returns an `Architecture` spec (a protobuf message underneath); nothing is
computed here. A builder checks the types of its arguments and what the message can hold
(`builders.arguments`: "Conv: filter_shape must be a tuple of ints like (3, 3), got 3"); the
network's rules (a width >= 1, a degree <= 16) are checked by the server when the network is
registered, so every client language gets the same answers. Layout is fixed: batch first,
channels last; NT's `batch_axis`/`channel_axis` are accepted only at those defaults.
"""

from ntkserve.builders.attention import GlobalSelfAttention
from ntkserve.builders.combinators import (
    FanInConcat,
    FanInProd,
    FanInSum,
    FanOut,
    Identity,
    parallel,
    repeat,
    serial,
)
from ntkserve.builders.dense import ABRelu, Abs, Dense, Erf, LeakyRelu, Relu
from ntkserve.builders.elementwise import (
    Cos,
    ElementwiseNumerical,
    Exp,
    ExpNormalized,
    Gabor,
    Gaussian,
    Gelu,
    Hermite,
    Monomial,
    Polynomial,
    Rbf,
    RectifiedMonomial,
    Sigmoid_like,
    Sign,
    Sin,
)
from ntkserve.builders.graph import Aggregate
from ntkserve.builders.normalization import Dropout, LayerNorm
from ntkserve.builders.spatial import (
    AvgPool,
    Conv,
    ConvLocal,
    ConvTranspose,
    Flatten,
    GlobalAvgPool,
    GlobalSumPool,
    SumPool,
)
from ntkserve.spec import Architecture

__all__ = [
    "ABRelu",
    "Abs",
    "Aggregate",
    "Architecture",
    "AvgPool",
    "Conv",
    "ConvLocal",
    "ConvTranspose",
    "Cos",
    "Dense",
    "Dropout",
    "ElementwiseNumerical",
    "Erf",
    "Exp",
    "ExpNormalized",
    "FanInConcat",
    "FanInProd",
    "FanInSum",
    "FanOut",
    "Flatten",
    "Gabor",
    "Gaussian",
    "Gelu",
    "GlobalAvgPool",
    "GlobalSelfAttention",
    "GlobalSumPool",
    "Hermite",
    "Identity",
    "LayerNorm",
    "LeakyRelu",
    "Monomial",
    "Polynomial",
    "Rbf",
    "RectifiedMonomial",
    "Relu",
    "Sigmoid_like",
    "Sign",
    "Sin",
    "SumPool",
    "parallel",
    "repeat",
    "serial",
]
