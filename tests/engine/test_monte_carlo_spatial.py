"""Convolutions, pooling and Flatten against finite-width networks (Novak et al. 2019).

Same criterion as the fully connected checks: 512 channels, 200 sampled networks,
relative Frobenius error <= 0.05 for the NNGP and the NTK.
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
            stax.Conv(WIDTH, (3, 3), padding="SAME", W_std=1.5, b_std=0.1),
            stax.Relu(),
            stax.Conv(WIDTH, (2, 2), W_std=1.3, b_std=0.1),
            stax.Erf(),
            stax.Flatten(),
            stax.Dense(WIDTH, W_std=1.2, b_std=0.1),
        ),
        (4, 4, 3),
        id="cnn-same-valid-flatten",
    ),
    pytest.param(
        stax.serial(
            stax.Conv(WIDTH, (3, 3), padding="CIRCULAR", W_std=1.4),
            stax.Relu(),
            stax.AvgPool((2, 2), strides=(2, 2), padding="SAME", normalize_edges=True),
            stax.Conv(WIDTH, (2, 2), padding="SAME", W_std=1.3, b_std=0.2),
            stax.Relu(),
            stax.GlobalAvgPool(),
            stax.Dense(WIDTH, W_std=1.1),
        ),
        (5, 5, 2),
        id="cnn-circular-avgpool-gap",
    ),
    pytest.param(
        stax.serial(
            stax.Conv(
                WIDTH,
                (3,),
                strides=(2,),
                padding="SAME",
                W_std=1.5,
                b_std=0.3,
                parameterization="standard",
            ),
            stax.Relu(),
            stax.SumPool((2,), padding="SAME"),
            stax.Conv(WIDTH, (2,), W_std=1.2, b_std=0.0, parameterization="standard"),
            stax.Abs(),
            stax.GlobalSumPool(),
            stax.Dense(WIDTH, W_std=1.0, b_std=0.1, parameterization="standard"),
        ),
        (7, 3),
        id="cnn1d-standard-strides-sumpool-gsp",
    ),
    pytest.param(
        stax.serial(
            stax.Conv(WIDTH, (2, 2, 2), padding="SAME", W_std=1.4, b_std=0.1),
            stax.Relu(),
            stax.AvgPool((2, 1, 2)),
            stax.Flatten(),
            stax.Dense(WIDTH, W_std=1.3, parameterization="standard"),
        ),
        (3, 2, 3, 2),
        id="cnn3d-avgpool-flatten-standard",
    ),
]


@pytest.mark.parametrize(("arch", "feature_shape"), CASES)
def test_matches_finite_width_networks(arch: stax.Architecture, feature_shape: tuple) -> None:
    rng = np.random.RandomState(2)
    x1 = jnp.asarray(rng.randn(4, *feature_shape), jnp.float32)
    x2 = jnp.asarray(rng.randn(3, *feature_shape), jnp.float32)
    nngp, ntk = kernel_fn(arch)(x1, x2, get=("nngp", "ntk"))
    assert nngp.shape == (4, 3)
    mc_nngp, mc_ntk = monte_carlo(arch, x1, x2, SAMPLES)
    assert _rel(mc_nngp, nngp) <= TOLERANCE
    assert _rel(mc_ntk, ntk) <= TOLERANCE
