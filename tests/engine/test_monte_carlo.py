"""Every layer against Monte Carlo estimates from finite-width networks of the same spec.

Width 512, 200 sampled networks, relative Frobenius error <= 0.05 (neural-tangents' own
criterion). The NNGP estimate averages the readout's 512 units; the NTK estimate is that
of one output unit, which concentrates at this width.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from ntkserve import stax
from ntkserve_engine.kernels import kernel_fn

from tests.engine.finite_width import monte_carlo

WIDTH = 512
SAMPLES = 200
TOLERANCE = 0.05


def _rel(a: jax.Array, b: jax.Array) -> float:
    return float(jnp.linalg.norm(a - b) / jnp.linalg.norm(b))


def _nonlinear(name: str, layer: stax.Architecture, param: str = "ntk") -> pytest.ParameterSet:
    b_std = 0.1 if param == "ntk" else 0.3
    arch = stax.serial(
        stax.Dense(WIDTH, W_std=1.4, b_std=b_std, parameterization=param),
        layer,
        stax.Dense(WIDTH, W_std=1.2, b_std=b_std, parameterization=param),
        layer,
        stax.Dense(WIDTH, W_std=1.1, b_std=b_std, parameterization=param),
    )
    return pytest.param(arch, id=f"{name}-{param}")


CASES = [
    _nonlinear("relu", stax.Relu()),
    _nonlinear("abs", stax.Abs()),
    _nonlinear("leaky_relu", stax.LeakyRelu(0.2)),
    _nonlinear("ab_relu", stax.ABRelu(-0.6, 1.3)),
    _nonlinear("erf", stax.Erf()),
    _nonlinear("erf_abc", stax.Erf(a=0.8, b=1.7, c=0.3)),
    _nonlinear("sigmoid_like", stax.Sigmoid_like()),
    _nonlinear("gelu", stax.Gelu()),
    _nonlinear("sign", stax.Sign()),
    _nonlinear("sin", stax.Sin(1.1, 0.9, 0.4)),
    _nonlinear("cos", stax.Cos(0.8, 1.2, 0.3)),
    _nonlinear("rbf", stax.Rbf(0.5)),
    _nonlinear("exp", stax.Exp(0.6, 0.4)),
    _nonlinear("gaussian", stax.Gaussian()),
    _nonlinear("monomial", stax.Monomial(2)),
    _nonlinear("rectified_monomial", stax.RectifiedMonomial(2)),
    _nonlinear("step", stax.RectifiedMonomial(0)),
    _nonlinear("polynomial", stax.Polynomial([0.2, 0.8, -0.3])),
    _nonlinear("hermite", stax.Hermite(2)),
    _nonlinear("numerical_tanh", stax.ElementwiseNumerical("tanh")),
    _nonlinear("numerical_elu", stax.ElementwiseNumerical("elu")),
    _nonlinear("gabor", stax.Gabor()),
    _nonlinear("exp_normalized", stax.ExpNormalized(0.8, -0.5)),
    _nonlinear("relu", stax.Relu(), "standard"),
    _nonlinear("erf", stax.Erf(), "standard"),
    pytest.param(
        stax.serial(
            stax.Dense(WIDTH, W_std=1.5, parameterization="standard"),
            stax.Relu(),
            stax.Dense(WIDTH, W_std=1.2, b_std=0.0, parameterization="standard"),
        ),
        id="standard-b_std-none-then-zero",
    ),
]


@pytest.mark.parametrize("arch", CASES)
def test_matches_finite_width_networks(arch: stax.Architecture) -> None:
    rng = np.random.RandomState(1)
    x1 = jnp.asarray(rng.randn(6, 8), jnp.float32)
    x2 = jnp.asarray(rng.randn(5, 8), jnp.float32)
    nngp, ntk = kernel_fn(arch)(x1, x2, get=("nngp", "ntk"))
    mc_nngp, mc_ntk = monte_carlo(arch, x1, x2, SAMPLES)
    assert _rel(mc_nngp, nngp) <= TOLERANCE
    assert _rel(mc_ntk, ntk) <= TOLERANCE


def _dense(param: str = "ntk") -> stax.Architecture:
    return stax.Dense(WIDTH, W_std=1.3, b_std=0.2, parameterization=param)


BRANCHING = [
    pytest.param(
        stax.serial(
            _dense(),
            stax.FanOut(2),
            stax.parallel(stax.serial(stax.Relu(), _dense()), stax.Identity()),
            stax.FanInSum(),
            stax.Erf(),
            _dense(),
        ),
        id="residual-sum",
    ),
    pytest.param(
        stax.serial(
            stax.FanOut(2),
            stax.parallel(_dense(), _dense()),
            stax.FanInProd(),
            _dense(),
        ),
        id="product",
    ),
    pytest.param(
        stax.serial(
            _dense("standard"),
            stax.FanOut(3),
            stax.parallel(stax.Relu(), stax.Gelu(), stax.Identity()),
            stax.FanInConcat(),
            _dense("standard"),
        ),
        id="concat-standard",
    ),
]


@pytest.mark.parametrize("arch", BRANCHING)
def test_branches_match_finite_width_networks(arch: stax.Architecture) -> None:
    test_matches_finite_width_networks(arch)
