"""A bad argument to any stax builder is a TypeError or ValueError naming the builder, the
parameter and the fix, before any message is built (never protobuf's or Python's raw error)."""

from __future__ import annotations

import inspect
from collections.abc import Callable

import numpy as np
import pytest
from ntkserve import Architecture, stax

Call = Callable[[], Architecture]
RELU = stax.Relu()

# (the call, the error type, what the message must say: "Builder: parameter must ...").
BAD_CALLS: list[tuple[str, Call, type[Exception], str]] = [
    ("Dense(-1)", lambda: stax.Dense(-1), ValueError, "Dense: out_dim must be an int >= 0"),
    ("Dense(2.5)", lambda: stax.Dense(2.5), TypeError, "Dense: out_dim must be an int"),
    ("Dense(True)", lambda: stax.Dense(True), TypeError, "Dense: out_dim must be an int"),
    ("Dense W_std", lambda: stax.Dense(3, W_std="1.5"), TypeError, "Dense: W_std must be a real"),
    ("Dense b_std", lambda: stax.Dense(3, b_std=[0.1]), TypeError, "Dense: b_std must be a real"),
    ("Dense s", lambda: stax.Dense(3, s=(1,)), TypeError, "Dense: s must be a pair of ints"),
    (
        "Dense axis",
        lambda: stax.Dense(3, channel_axis=1),
        ValueError,
        "Dense: batch_axis and channel_axis must be 0 and -1",
    ),
    (
        "Dense param",
        lambda: stax.Dense(3, parameterization="mup"),
        ValueError,
        "Dense: parameterization must be 'ntk' or 'standard'",
    ),
    ("ABRelu", lambda: stax.ABRelu("a", 1.0), TypeError, "ABRelu: a must be a real"),
    ("LeakyRelu", lambda: stax.LeakyRelu(None), TypeError, "LeakyRelu: alpha must be a real"),
    ("Erf", lambda: stax.Erf(c="0"), TypeError, "Erf: c must be a real"),
    (
        "Conv(8, 3)",
        lambda: stax.Conv(8, 3),
        TypeError,
        "Conv: filter_shape must be a tuple of ints like (3, 3), got 3",
    ),
    (
        "Conv out_chan",
        lambda: stax.Conv(-8, (3, 3)),
        ValueError,
        "Conv: out_chan must be an int >= 0",
    ),
    (
        "Conv negative filter",
        lambda: stax.Conv(8, (3, -3)),
        ValueError,
        "Conv: filter_shape must be a tuple of ints",
    ),
    (
        "Conv strides",
        lambda: stax.Conv(8, (3, 3), strides=2),
        TypeError,
        "Conv: strides must be a tuple of ints",
    ),
    (
        "Conv padding",
        lambda: stax.Conv(8, (3, 3), padding="FULL"),
        ValueError,
        "Conv: padding must be 'VALID', 'SAME' or 'CIRCULAR'",
    ),
    (
        "Conv layout",
        lambda: stax.Conv(8, (3, 3), dimension_numbers=("NCHW", "OIHW", "NCHW")),
        ValueError,
        "Conv: dimension_numbers must be channels-last",
    ),
    (
        "ConvTranspose",
        lambda: stax.ConvTranspose(8, (2.0, 2.0)),
        TypeError,
        "ConvTranspose: filter_shape must be a tuple of ints",
    ),
    (
        "ConvLocal",
        lambda: stax.ConvLocal(8, (3, 3), W_std=None),
        TypeError,
        "ConvLocal: W_std must be a real",
    ),
    (
        "AvgPool",
        lambda: stax.AvgPool(2),
        TypeError,
        "AvgPool: window_shape must be a tuple of ints",
    ),
    (
        "AvgPool edges",
        lambda: stax.AvgPool((2, 2), normalize_edges="yes"),
        TypeError,
        "AvgPool: normalize_edges must be True or False",
    ),
    (
        "SumPool",
        lambda: stax.SumPool((2, 2), strides=(-1, 1)),
        ValueError,
        "SumPool: strides must be a tuple of ints",
    ),
    (
        "GlobalAvgPool",
        lambda: stax.GlobalAvgPool(batch_axis=1),
        ValueError,
        "GlobalAvgPool: batch_axis and channel_axis",
    ),
    (
        "GlobalSumPool",
        lambda: stax.GlobalSumPool(channel_axis="C"),
        TypeError,
        "GlobalSumPool: channel_axis must be an int",
    ),
    (
        "Flatten",
        lambda: stax.Flatten(batch_axis_out=1),
        ValueError,
        "Flatten: batch_axis and channel_axis",
    ),
    (
        "serial([...])",
        lambda: stax.serial([stax.Dense(1), RELU]),
        TypeError,
        "serial: layers[0] must be a layer or network of ntkserve.stax",
    ),
    (
        "serial(Relu)",
        lambda: stax.serial(RELU, stax.Relu),
        TypeError,
        "serial: layers[1] must be a layer",
    ),
    (
        "parallel",
        lambda: stax.parallel(RELU, "relu"),
        TypeError,
        "parallel: layers[1] must be a layer",
    ),
    ("repeat layer", lambda: stax.repeat([RELU], 2), TypeError, "repeat: layer must be a layer"),
    ("repeat n", lambda: stax.repeat(RELU, -2), ValueError, "repeat: n must be an int >= 0"),
    ("FanOut", lambda: stax.FanOut(-1), ValueError, "FanOut: num must be an int >= 0"),
    (
        "FanInConcat",
        lambda: stax.FanInConcat(axis=1.0),
        TypeError,
        "FanInConcat: axis must be an int",
    ),
    (
        "Gelu",
        lambda: stax.Gelu(approximate="no"),
        TypeError,
        "Gelu: approximate must be True or False",
    ),
    ("Sin", lambda: stax.Sin(b="1"), TypeError, "Sin: b must be a real"),
    ("Cos", lambda: stax.Cos(a=None), TypeError, "Cos: a must be a real"),
    ("Rbf", lambda: stax.Rbf(gamma="1"), TypeError, "Rbf: gamma must be a real"),
    ("Exp", lambda: stax.Exp(b=[1]), TypeError, "Exp: b must be a real"),
    ("Gaussian", lambda: stax.Gaussian(b="-1"), TypeError, "Gaussian: b must be a real"),
    ("Monomial", lambda: stax.Monomial(-1), ValueError, "Monomial: degree must be an int from 0"),
    (
        "RectifiedMonomial",
        lambda: stax.RectifiedMonomial(2**32),
        ValueError,
        "RectifiedMonomial: degree must be an int from 0",
    ),
    ("Hermite", lambda: stax.Hermite(1.5), TypeError, "Hermite: degree must be an int"),
    (
        "Polynomial",
        lambda: stax.Polynomial(1.0),
        TypeError,
        "Polynomial: coef must be a sequence of real numbers",
    ),
    (
        "ExpNormalized",
        lambda: stax.ExpNormalized(do_clip=1),
        TypeError,
        "ExpNormalized: do_clip must be True or False",
    ),
    (
        "ElementwiseNumerical",
        lambda: stax.ElementwiseNumerical(np.tanh),
        ValueError,
        "ElementwiseNumerical: activation must name one of",
    ),
    (
        "ElementwiseNumerical deg",
        lambda: stax.ElementwiseNumerical("tanh", deg=-5),
        ValueError,
        "ElementwiseNumerical: deg must be an int from 0",
    ),
    (
        "LayerNorm",
        lambda: stax.LayerNorm(axis="C"),
        TypeError,
        "LayerNorm: axis must be an int or a tuple of ints",
    ),
    (
        "LayerNorm eps",
        lambda: stax.LayerNorm(eps="tiny"),
        TypeError,
        "LayerNorm: eps must be a real",
    ),
    ("Dropout", lambda: stax.Dropout("0.5"), TypeError, "Dropout: rate must be a real"),
    (
        "Dropout mode",
        lambda: stax.Dropout(0.5, mode="eval"),
        ValueError,
        "Dropout: mode must be 'train' or 'test'",
    ),
    (
        "Aggregate",
        lambda: stax.Aggregate(aggregate_axis=1),
        ValueError,
        "Aggregate: aggregate_axis must be None",
    ),
    (
        "Aggregate dense",
        lambda: stax.Aggregate(implementation="SPARSE"),
        ValueError,
        "Aggregate: to_dense and implementation",
    ),
    (
        "GlobalSelfAttention",
        lambda: stax.GlobalSelfAttention(4, 4, 4, -1),
        ValueError,
        "GlobalSelfAttention: n_heads must be an int >= 0",
    ),
    (
        "GlobalSelfAttention mechanism",
        lambda: stax.GlobalSelfAttention(4, 4, 4, 1, attention_mechanism="TANH"),
        ValueError,
        "GlobalSelfAttention: attention_mechanism must be one of",
    ),
    (
        "GlobalSelfAttention decay",
        lambda: stax.GlobalSelfAttention(4, 4, 4, 1, pos_emb_decay_fn=abs),
        ValueError,
        "GlobalSelfAttention: pos_emb_decay_fn must be None",
    ),
    (
        "GlobalSelfAttention pos",
        lambda: stax.GlobalSelfAttention(4, 4, 4, 1, n_chan_pos_emb=2.0),
        TypeError,
        "GlobalSelfAttention: n_chan_pos_emb must be an int",
    ),
    (
        "missing argument",
        lambda: stax.Dense(),
        TypeError,
        "Dense: missing a required argument: 'out_dim'",
    ),
]


@pytest.mark.parametrize(
    ("call", "error", "message"), [c[1:] for c in BAD_CALLS], ids=[c[0] for c in BAD_CALLS]
)
def test_a_bad_argument_names_the_builder_the_parameter_and_the_fix(
    call: Call, error: type[Exception], message: str
) -> None:
    with pytest.raises(error) as raised:
        call()
    assert str(raised.value).startswith(message), str(raised.value)
    assert "Value out of range" not in str(raised.value)


def test_every_builder_is_in_the_table() -> None:
    """A new builder gets its row: the check is per builder, so is the test."""
    builders = {name for name in stax.__all__ if callable(getattr(stax, name))} - {"Architecture"}
    no_parameters = {
        name for name in builders if not inspect.signature(getattr(stax, name)).parameters
    }
    tested = {message.split(":")[0] for _, _, _, message in BAD_CALLS}
    assert builders - no_parameters - tested == set()


@pytest.mark.parametrize(
    "call",
    [
        lambda: stax.Dense(np.int64(3), W_std=np.float32(1.5), b_std=np.array(0.1)),
        lambda: stax.Conv(np.int32(4), np.array([3, 3]), strides=[1, 1], padding="same"),
        lambda: stax.LayerNorm(axis=np.int64(-1)),
        lambda: stax.serial(stax.Dense(2), stax.serial(RELU, stax.Dense(1))),
        lambda: stax.GlobalSelfAttention(4, 4, 4, 2, linear_scaling=np.bool_(True)),
    ],
    ids=["numpy-scalars", "numpy-filter", "numpy-axis", "nested-serial", "numpy-bool"],
)
def test_numpy_numbers_and_nested_specs_are_accepted(call: Call) -> None:
    assert isinstance(call(), Architecture)


def test_the_check_keeps_the_signature_neural_tangents_users_see() -> None:
    params = inspect.signature(stax.Conv).parameters
    assert list(params)[:3] == ["out_chan", "filter_shape", "strides"]
    assert stax.Conv.__name__ == "Conv" and "shared weights" in (stax.Conv.__doc__ or "")
