"""Symmetry, positive semi-definiteness and finite gradients for every registered layer.

One example network per row of the layer table (and per combinator); a test fails when a
layer is added to the table without an example here.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from ntkserve import stax
from ntkserve.v1 import architecture_pb2 as pb
from ntkserve_engine.kernels import kernel_fn
from ntkserve_engine.kernels.table import COMBINATORS, LAYERS

CONV = stax.Conv(4, (2, 2), padding="SAME", W_std=1.2, b_std=0.1)


def _fc(layer: stax.Architecture) -> stax.Architecture:
    return stax.serial(stax.Dense(8, W_std=1.2, b_std=0.1), layer, stax.Dense(2))


def _image(*layers: stax.Architecture) -> stax.Architecture:
    return stax.serial(CONV, stax.Relu(), *layers, stax.Flatten(), stax.Dense(2))


EXAMPLES: dict[str, stax.Architecture] = {
    "dense": _fc(stax.Identity()),
    "relu": _fc(stax.Relu()),
    "ab_relu": _fc(stax.ABRelu(-0.3, 1.2)),
    "leaky_relu": _fc(stax.LeakyRelu(0.1)),
    "abs": _fc(stax.Abs()),
    "erf": _fc(stax.Erf(1.1, 0.8, 0.1)),
    "sigmoid_like": _fc(stax.Sigmoid_like()),
    "gelu": _fc(stax.Gelu()),
    "sign": _fc(stax.Sign()),
    "sin": _fc(stax.Sin(1.0, 1.3, 0.2)),
    "cos": _fc(stax.Cos(0.9, 0.8, -0.3)),
    "rbf": _fc(stax.Rbf(0.4)),
    "exp": _fc(stax.Exp(0.7, 0.5)),
    "gaussian": _fc(stax.Gaussian(1.0, -0.5)),
    "monomial": _fc(stax.Monomial(3)),
    "rectified_monomial": _fc(stax.RectifiedMonomial(2)),
    "polynomial": _fc(stax.Polynomial([0.1, 1.0, 0.0, -0.2])),
    "hermite": _fc(stax.Hermite(4)),
    "elementwise_numerical": _fc(stax.ElementwiseNumerical("elu", deg=8)),
    "gabor": _fc(stax.Gabor()),
    "exp_normalized": _fc(stax.ExpNormalized(0.7, -0.8)),
    "layer_norm": _fc(stax.LayerNorm()),
    "dropout": _fc(stax.serial(stax.Relu(), stax.Dropout(0.8))),
    "conv": _image(),
    "conv_transpose": _image(
        stax.ConvTranspose(4, (3, 2), strides=(2, 1), padding="SAME", W_std=1.1, b_std=0.1),
        stax.Relu(),
        stax.AvgPool((2, 2)),
    ),
    "conv_local": stax.serial(
        CONV,
        stax.Relu(),
        stax.ConvLocal(4, (2, 2), padding="CIRCULAR", W_std=1.3, b_std=0.2),
        stax.Erf(),
        stax.GlobalAvgPool(),
        stax.Dense(2),
    ),
    "avg_pool": _image(stax.AvgPool((2, 2), padding="SAME")),
    "sum_pool": _image(stax.SumPool((2, 2), strides=(1, 1))),
    "global_avg_pool": stax.serial(CONV, stax.Relu(), stax.GlobalAvgPool(), stax.Dense(2)),
    "global_sum_pool": stax.serial(CONV, stax.Erf(), stax.GlobalSumPool(), stax.Dense(2)),
    "flatten": _image(),
    "global_self_attention": _image(
        stax.GlobalSelfAttention(4, 3, 3, 2, W_key_std=1.3, b_std=0.1, pos_emb_type="SUM")
    ),
    "aggregate": stax.serial(
        stax.Dense(4, W_std=1.2, b_std=0.1),
        stax.Aggregate(),
        stax.Relu(),
        stax.Dense(4),
        stax.Aggregate(),
        stax.GlobalAvgPool(),
        stax.Dense(2),
    ),
    # stax.serial splices its layers in; a Serial message is what other clients may send.
    "serial": stax.Architecture([pb.Layer(serial=pb.Serial(layers=_fc(stax.Relu()).layers))]),
    "identity": _fc(stax.Identity()),
    "repeat": _fc(stax.repeat(stax.serial(stax.Relu(), stax.Dense(8, b_std=0.1)), 3)),
    "fan_out": _fc(
        stax.serial(stax.FanOut(2), stax.parallel(stax.Relu(), stax.Gelu()), stax.FanInConcat())
    ),
    "parallel": _fc(
        stax.serial(stax.FanOut(2), stax.parallel(stax.Identity(), stax.Dense(8)), stax.FanInSum())
    ),
    "fan_in_sum": _fc(
        stax.serial(stax.FanOut(2), stax.parallel(stax.Identity(), stax.Dense(8)), stax.FanInSum())
    ),
    "fan_in_prod": _fc(
        stax.serial(stax.FanOut(2), stax.parallel(stax.Identity(), stax.Dense(8)), stax.FanInProd())
    ),
    "fan_in_concat": _fc(
        stax.serial(stax.FanOut(2), stax.parallel(stax.Relu(), stax.Erf()), stax.FanInConcat())
    ),
}
SPATIAL = {
    "conv",
    "conv_transpose",
    "conv_local",
    "avg_pool",
    "sum_pool",
    "global_avg_pool",
    "global_sum_pool",
    "flatten",
    "global_self_attention",
    "aggregate",
}


def test_every_layer_has_an_example() -> None:
    assert set(EXAMPLES) == set(LAYERS) | set(COMBINATORS)


def _kinds(layers: Any) -> set[str]:
    """Every layer type in a spec, nested ones included."""
    found: set[str] = set()
    for layer in layers:
        kind = str(layer.WhichOneof("layer"))
        found.add(kind)
        if kind == "serial":
            found |= _kinds(layer.serial.layers)
        elif kind == "parallel":
            found |= _kinds(layer.parallel.branches)
        elif kind == "repeat":
            found |= _kinds([layer.repeat.layer])
    return found


def _x(kind: str) -> np.ndarray:
    rng = np.random.RandomState(11)
    x = rng.randn(6, 3, 3, 2) if kind in SPATIAL else rng.randn(6, 5)
    x[2] = 0  # a zero row
    x[4] = -1.5 * x[1]  # an anti-parallel row
    return x


def _patterns(kind: str, n1: int, n2: int | None) -> dict[str, Any]:
    """Aggregate's graphs (3 x 3 grids as 9 nodes, random weights), else no argument."""
    if kind != "aggregate":
        return {}
    rng = np.random.RandomState(12)
    p1, p2 = rng.rand(n1, 3, 3, 3, 3), None if n2 is None else rng.rand(n2, 3, 3, 3, 3)
    return {"pattern": (p1, p2)}


@pytest.mark.parametrize("kind", sorted(EXAMPLES))
def test_symmetric_psd_and_finite_gradients(kind: str) -> None:
    assert kind in _kinds(EXAMPLES[kind].to_proto().layers)
    kfn = kernel_fn(EXAMPLES[kind])
    x = _x(kind)
    for k in kfn(x, get=("nngp", "ntk"), **_patterns(kind, 6, None)):
        k = np.asarray(k)
        assert np.all(np.isfinite(k))
        np.testing.assert_array_equal(k, k.T)
        # float64 round-off in an eigen-decomposition of a matrix of this size
        assert np.linalg.eigvalsh(k).min() >= -1e-12 * np.abs(k).max()
    # Gradients compiled whole (eager differentiation of a CNN takes tens of seconds), one
    # program per form: x2 absent (at x and at all-zero inputs, vmapped), x2 given.
    for x2, inputs in ((None, [x, np.zeros_like(x)]), (x[:3] + 0.5, [x])):
        extra = _patterns(kind, 6, None if x2 is None else 3)
        ntk_sum = lambda a, b=x2, e=extra: jnp.sum(kfn(a, b, get=("nngp", "ntk"), **e)[1])  # noqa: E731
        grads = jax.jit(jax.vmap(jax.grad(ntk_sum)))(np.stack(inputs))
        assert np.all(np.isfinite(grads))
