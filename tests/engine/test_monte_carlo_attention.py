"""GlobalSelfAttention against finite-width attention networks (Hron et al. 2020).

Linear scaling (1/n_chan_key, tied keys and queries), same criterion as the other Monte Carlo
checks: 512 channels, 200 sampled networks, relative Frobenius error <= 0.05 for the NNGP and
the NTK. The dot products concentrate as n_chan_key grows; the kernel is their limit, so
the finite key width biases the estimate by O(1/n_chan_key) where the mechanism is smooth
(softmax: 128 keys suffice) and by O(1/sqrt(n_chan_key)) where ReLU's or |.|'s kink meets
dot products near 0 (512 keys). Heads and value channels only add variance.

1/sqrt(n_chan_key) scaling with IDENTITY attention does not meet that criterion at this cost:
each head's output is a product of four Gaussian factors (queries, keys, values, output
weights), and one sampled network's NNGP has a relative standard deviation of ~0.35 on the
largest entry whatever the split into heads and channels (measured: 64 heads x 8, 256 x 2,
256 x 8), so 200 networks land anywhere from 0.02 to 0.09. Its second moments are exact at
every width, though: with the attention as the first layer (inputs' covariance exact) and a
linear readout, the empirical NNGP and NTK are unbiased estimators of the analytic kernel.
So that case is checked entry by entry against the estimator's own standard error.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from ntkserve import stax
from ntkserve_engine.kernels import kernel_fn

from tests.engine.finite_width import monte_carlo, network
from tests.engine.test_monte_carlo import SAMPLES, TOLERANCE, WIDTH, _rel

CASES = [
    pytest.param(
        stax.serial(
            stax.Dense(WIDTH, W_std=1.3, b_std=0.1),
            stax.GlobalSelfAttention(WIDTH, 128, 128, 2, W_key_std=1.5, W_value_std=1.2, b_std=0.1),
            stax.Relu(),
            stax.GlobalAvgPool(),
            stax.Dense(WIDTH),
        ),
        (3, 5),
        id="softmax-bias-relu-after",
    ),
    pytest.param(
        stax.serial(
            stax.Dense(WIDTH, W_std=1.3),
            stax.GlobalSelfAttention(
                WIDTH,
                WIDTH,
                128,
                2,
                attention_mechanism="RELU",
                pos_emb_type="SUM",
                W_pos_emb_std=0.7,
                b_std=0.2,
            ),
            stax.GlobalAvgPool(),
            stax.Dense(WIDTH),
        ),
        (2, 2, 4),
        id="relu-sum-2d-positions",
    ),
    pytest.param(
        stax.serial(
            stax.Dense(WIDTH, W_std=1.3, b_std=0.1),
            stax.GlobalSelfAttention(
                WIDTH,
                WIDTH,
                128,
                2,
                attention_mechanism="ABS",
                pos_emb_type="CONCAT",
                n_chan_pos_emb=256,
                W_pos_emb_std=1.2,
                val_pos_emb=True,
            ),
            stax.GlobalAvgPool(),
            stax.Dense(WIDTH),
        ),
        (3, 4),
        id="abs-concat-values",
    ),
]


@pytest.mark.parametrize(("arch", "feature_shape"), CASES)
def test_matches_finite_width_networks(
    arch: stax.Architecture, feature_shape: tuple[int, ...]
) -> None:
    rng = np.random.RandomState(3)
    x1 = jnp.asarray(rng.randn(3, *feature_shape), jnp.float32)
    x2 = jnp.asarray(rng.randn(2, *feature_shape), jnp.float32)
    nngp, ntk = kernel_fn(arch)(x1, x2, get=("nngp", "ntk"))
    assert nngp.shape == (3, 2)
    mc_nngp, mc_ntk = monte_carlo(arch, x1, x2, SAMPLES)
    assert _rel(mc_nngp, nngp) <= TOLERANCE
    assert _rel(mc_ntk, ntk) <= TOLERANCE


# |mean - K| <= 5 standard errors per entry: P(|N(0, 1)| > 5) = 6e-7 per entry, and with
# 2000 samples the standard error's own estimate is good to ~2% (heavier tails than a
# Gaussian's widen that a little, not to a factor of 5 / 4).
Z = 5.0
UNBIASED_SAMPLES = 2000

SQRT_CASES = [
    pytest.param(
        stax.GlobalSelfAttention(
            64,
            8,
            8,
            16,
            linear_scaling=False,
            attention_mechanism="IDENTITY",
            W_query_std=0.8,
            W_out_std=1.2,
            b_std=0.1,
        ),
        8,
        id="identity-sqrt",
    ),
    pytest.param(
        stax.GlobalSelfAttention(
            64,
            8,
            8,
            16,
            linear_scaling=False,
            attention_mechanism="IDENTITY",
            pos_emb_type="SUM",
            W_pos_emb_std=0.8,
        ),
        # the embeddings' covariance concentrates with the inputs' channel count: a bias
        # of O(1/256) ~ 0.4%, far below 5 standard errors
        256,
        id="identity-sqrt-sum",
    ),
]


def _samples(
    arch: stax.Architecture, x1: jax.Array, x2: jax.Array, n: int
) -> tuple[np.ndarray, np.ndarray]:
    """Per network: the empirical NNGP (over the readout's units) and NTK (of unit 0), as
    `monte_carlo` computes them, kept apart to measure their spread."""
    init, apply = network(arch)

    def one(key: jax.Array) -> tuple[jax.Array, jax.Array]:
        _, params = init(key, x1.shape[-1], x1[:1])
        y1, y2 = apply(params, x1), apply(params, x2)

        def gradients(x: jax.Array) -> jax.Array:
            g = jax.vmap(jax.grad(lambda p, row: apply(p, row[None])[0, 0]), (None, 0))(params, x)
            return jnp.concatenate([leaf.reshape(x.shape[0], -1) for leaf in jax.tree.leaves(g)], 1)

        return y1 @ y2.T / y1.shape[-1], gradients(x1) @ gradients(x2).T

    nngp, ntk = jax.lax.map(jax.jit(one), jax.random.split(jax.random.PRNGKey(5), n))
    return np.asarray(nngp, np.float64), np.asarray(ntk, np.float64)


@pytest.mark.parametrize(("attention", "channels"), SQRT_CASES)
def test_sqrt_scaling_is_unbiased(attention: stax.Architecture, channels: int) -> None:
    arch = stax.serial(attention, stax.Flatten(), stax.Dense(64))
    rng = np.random.RandomState(4)
    x1 = rng.randn(3, 3, channels)
    # x2 near x1's first rows: independent inputs' cross-covariances are ~0, and this
    # kernel, quartic in them, would be too small to see an error in
    x2 = 0.8 * x1[:2] + 0.6 * rng.randn(2, 3, channels)
    x1, x2 = jnp.asarray(x1, jnp.float32), jnp.asarray(x2, jnp.float32)
    analytic = kernel_fn(arch)(x1, x2, get=("nngp", "ntk"))
    for samples, kernel in zip(_samples(arch, x1, x2, UNBIASED_SAMPLES), analytic, strict=True):
        kernel = np.asarray(kernel)
        standard_error = samples.std(0, ddof=1) / np.sqrt(len(samples))
        z = np.abs(samples.mean(0) - kernel) / standard_error
        assert z.max() <= Z
        # and it can see a 10% error in the largest entries: the standard errors are small
        assert np.all(Z * standard_error < 0.1 * np.abs(kernel).max())
