"""LayerNorm and Dropout against finite-width networks (tests/engine/finite_width*.py).

Same criterion as the other Monte Carlo checks: width 512, 200 sampled networks, relative
Frobenius error <= 0.05 for the NNGP and the NTK. Dropout's kernels are checked as Gram
matrices (x2=None), where an example meets itself under one mask; a row repeated as a
second example meets the first under an independent mask, so only the true diagonal is
divided by the keep rate.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest
from ntkserve import stax
from ntkserve_engine.kernels import kernel_fn

from tests.engine.finite_width import monte_carlo
from tests.engine.finite_width_rescaling import monte_carlo_gram
from tests.engine.test_monte_carlo import SAMPLES, TOLERANCE, WIDTH, _rel


def _dense(param: str = "ntk") -> stax.Architecture:
    return stax.Dense(WIDTH, W_std=1.3, b_std=0.2, parameterization=param)


def _conv(padding: str = "SAME") -> stax.Architecture:
    return stax.Conv(WIDTH, (2, 2), padding=padding, W_std=1.4, b_std=0.1)


LAYER_NORM = [
    pytest.param(
        stax.serial(
            _dense(),
            stax.LayerNorm(),
            stax.Relu(),
            _dense(),
            stax.LayerNorm(),
            stax.Erf(),
            _dense(),
        ),
        (8,),
        id="fc",
    ),
    pytest.param(
        stax.serial(
            _dense("standard"),
            stax.FanOut(2),
            stax.parallel(stax.serial(stax.Relu(), _dense("standard")), stax.Identity()),
            stax.FanInSum(),
            stax.LayerNorm(eps=0.1),
            stax.Gelu(),
            _dense("standard"),
        ),
        (8,),
        id="residual-standard-eps",
    ),
    pytest.param(
        stax.serial(_conv(), stax.LayerNorm(axis=(1, 2, 3)), stax.Relu(), stax.Flatten(), _dense()),
        (2, 3, 2),
        id="cnn-spatial-axes-flatten",
    ),
    pytest.param(
        stax.serial(_conv(), stax.LayerNorm(), stax.Relu(), stax.GlobalAvgPool(), _dense()),
        (2, 3, 2),
        id="cnn-channels-gap",
    ),
]


@pytest.mark.parametrize(("arch", "features"), LAYER_NORM)
def test_layer_norm_matches_finite_width(arch: stax.Architecture, features: tuple) -> None:
    rng = np.random.RandomState(3)
    x1 = jnp.asarray(rng.randn(4, *features), jnp.float32)
    x2 = jnp.asarray(rng.randn(3, *features), jnp.float32)
    nngp, ntk = kernel_fn(arch)(x1, x2, get=("nngp", "ntk"))
    mc_nngp, mc_ntk = monte_carlo(arch, x1, x2, SAMPLES)
    assert _rel(mc_nngp, nngp) <= TOLERANCE
    assert _rel(mc_ntk, ntk) <= TOLERANCE


DROPOUT = [
    pytest.param(
        stax.serial(_dense(), stax.Relu(), stax.Dropout(0.6), _dense(), stax.Relu(), _dense()),
        (8,),
        id="fc",
    ),
    pytest.param(
        stax.serial(
            _conv(),
            stax.Relu(),
            stax.Dropout(0.7),
            _conv("VALID"),
            stax.Erf(),
            stax.GlobalAvgPool(),
            _dense(),
        ),
        (2, 3, 2),
        id="cnn-gap",
    ),
]


@pytest.mark.parametrize(("arch", "features"), DROPOUT)
def test_dropout_matches_finite_width(arch: stax.Architecture, features: tuple) -> None:
    rng = np.random.RandomState(4)
    x = rng.randn(5, *features)
    x[3] = x[0]  # the same values as another example: a different draw of the mask
    x = jnp.asarray(x, jnp.float32)
    nngp, ntk = kernel_fn(arch)(x, None, get=("nngp", "ntk"))
    mc_nngp, mc_ntk = monte_carlo_gram(arch, x, SAMPLES)
    assert _rel(mc_nngp, nngp) <= TOLERANCE
    assert _rel(mc_ntk, ntk) <= TOLERANCE
    # The masks matter: the diagonal is well above the entry of the repeated row.
    assert float(nngp[0, 0]) > 1.1 * float(nngp[0, 3])
