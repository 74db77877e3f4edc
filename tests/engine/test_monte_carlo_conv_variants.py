"""ConvLocal and ConvTranspose against finite-width networks (tests/engine/finite_width_conv.py).

Same criterion as the other Monte Carlo checks: 512 channels, 200 sampled networks, relative
Frobenius error <= 0.05 for the NNGP and the NTK. ConvLocal is checked with a Flatten readout
(same-position covariances only) and with pooling readouts, which sum the covariances of
different positions, zero only if each position really has its own weights and bias.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest
from ntkserve import stax
from ntkserve_engine.kernels import kernel_fn

from tests.engine.finite_width import monte_carlo
from tests.engine.test_monte_carlo import SAMPLES, TOLERANCE, WIDTH, _rel

CASES = [
    pytest.param(
        stax.serial(
            stax.ConvLocal(WIDTH, (2,), padding="SAME", W_std=1.5, b_std=0.2),
            stax.Relu(),
            stax.Flatten(),
            stax.Dense(WIDTH, W_std=1.2, b_std=0.1),
        ),
        (3, 2),
        id="local1d-same-flatten",
    ),
    pytest.param(
        stax.serial(
            stax.ConvLocal(WIDTH, (2, 2), W_std=1.3, b_std=0.3, parameterization="standard"),
            stax.Relu(),
            stax.GlobalAvgPool(),
            stax.Dense(WIDTH, W_std=1.1, parameterization="standard"),
        ),
        (3, 3, 2),
        id="local2d-valid-standard-gap",
    ),
    pytest.param(
        stax.serial(
            stax.ConvTranspose(WIDTH, (3, 2), strides=(2, 2), W_std=1.5, b_std=0.1),
            stax.Relu(),
            stax.GlobalAvgPool(),
            stax.Dense(WIDTH, W_std=1.2, b_std=0.1),
        ),
        (2, 3, 2),
        id="transpose2d-valid-gap",
    ),
    pytest.param(
        stax.serial(
            stax.ConvTranspose(
                WIDTH,
                (4,),
                strides=(2,),
                padding="SAME",
                W_std=1.3,
                b_std=0.2,
                parameterization="standard",
            ),
            stax.Relu(),
            stax.GlobalSumPool(),
            stax.Dense(WIDTH, W_std=1.0, b_std=0.1, parameterization="standard"),
        ),
        (4, 3),
        id="transpose1d-same-standard-gsp",
    ),
    pytest.param(
        stax.serial(
            stax.ConvTranspose(WIDTH, (5,), strides=(2,), padding="CIRCULAR", W_std=1.5),
            stax.Relu(),
            stax.GlobalAvgPool(),
            stax.Dense(WIDTH, W_std=1.1),
        ),
        (3, 3),
        id="transpose1d-circular-gap",
    ),
]


@pytest.mark.parametrize(("arch", "feature_shape"), CASES)
def test_matches_finite_width_networks(arch: stax.Architecture, feature_shape: tuple) -> None:
    rng = np.random.RandomState(3)
    x1 = jnp.asarray(rng.randn(4, *feature_shape), jnp.float32)
    x2 = jnp.asarray(rng.randn(3, *feature_shape), jnp.float32)
    nngp, ntk = kernel_fn(arch)(x1, x2, get=("nngp", "ntk"))
    assert nngp.shape == (4, 3)
    mc_nngp, mc_ntk = monte_carlo(arch, x1, x2, SAMPLES)
    assert _rel(mc_nngp, nngp) <= TOLERANCE
    assert _rel(mc_ntk, ntk) <= TOLERANCE
