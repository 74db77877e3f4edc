"""Aggregate (graph message passing) against its closed form, a finite-width graph network,
and finite differences.

The finite-width network is written out here: y[n, s] = sum_t P[n, s, t] x[n, t] between
Dense layers of the NTK parameterization, global average pooling over the nodes, then a
readout; its NNGP (over 512 readout units) and NTK (one unit, by the Jacobian of the
batch) are averaged over 200 draws, with the Monte Carlo criterion of the other layers
(relative Frobenius error <= 0.05).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from ntkserve import stax
from ntkserve_engine.kernels import kernel_fn

from tests.engine.gradient_helpers import central_difference
from tests.engine.test_monte_carlo import SAMPLES, TOLERANCE, WIDTH, _rel

GET = ("nngp", "ntk")
W1, B1, W2, B2, W3 = 1.4, 0.2, 1.3, 0.1, 1.1


def _graphs(n: int, nodes: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Node features and weighted adjacency with self-loops, row-normalised."""
    rng = np.random.RandomState(seed)
    edges = (rng.rand(n, nodes, nodes) < 0.5) * rng.rand(n, nodes, nodes)
    adjacency = edges + edges.transpose(0, 2, 1) + np.eye(nodes)
    return rng.randn(n, nodes, 3), adjacency / adjacency.sum(-1, keepdims=True)


ARCH = stax.serial(
    stax.Dense(WIDTH, W_std=W1, b_std=B1),
    stax.Aggregate(),
    stax.Relu(),
    stax.Dense(WIDTH, W_std=W2, b_std=B2),
    stax.Aggregate(),
    stax.GlobalAvgPool(),
    stax.Dense(WIDTH, W_std=W3),
)


def _finite_width(params: dict, x: jax.Array, p: jax.Array) -> jax.Array:
    def dense(z: jax.Array, w: jax.Array, b: jax.Array | None, w_std: float, b_std: float):  # type: ignore[no-untyped-def]
        out = w_std / jnp.sqrt(z.shape[-1]) * (z @ w)
        return out if b is None else out + b_std * b

    def aggregate(z: jax.Array) -> jax.Array:
        return jnp.einsum("nst,ntc->nsc", p, z)

    h = aggregate(dense(x, params["w1"], params["b1"], W1, B1))
    h = aggregate(dense(jnp.maximum(h, 0), params["w2"], params["b2"], W2, B2))
    return dense(h.mean(axis=1), params["w3"], None, W3, 0.0)


def _monte_carlo(x: jax.Array, p: jax.Array) -> tuple[jax.Array, jax.Array]:
    def one(key: jax.Array) -> tuple[jax.Array, jax.Array]:
        k = jax.random.split(key, 5)
        c = x.shape[-1]
        params = {
            "w1": jax.random.normal(k[0], (c, WIDTH)),
            "b1": jax.random.normal(k[1], (WIDTH,)),
            "w2": jax.random.normal(k[2], (WIDTH, WIDTH)),
            "b2": jax.random.normal(k[3], (WIDTH,)),
            "w3": jax.random.normal(k[4], (WIDTH, WIDTH)),
        }
        y = _finite_width(params, x, p)
        jacobian = jax.jacrev(lambda q: _finite_width(q, x, p)[:, 0])(params)
        flat = jnp.concatenate([j.reshape(x.shape[0], -1) for j in jax.tree.leaves(jacobian)], 1)
        return y @ y.T / WIDTH, flat @ flat.T

    keys = jax.random.split(jax.random.PRNGKey(0), SAMPLES)
    nngp, ntk = jax.lax.map(jax.jit(one), keys)
    return nngp.mean(0), ntk.mean(0)


def test_matches_a_finite_width_graph_network() -> None:
    x, p = _graphs(5, 4, 0)
    x32, p32 = jnp.asarray(x, jnp.float32), jnp.asarray(p, jnp.float32)
    nngp, ntk = kernel_fn(ARCH)(x32, get=GET, pattern=(p32, None))
    mc_nngp, mc_ntk = _monte_carlo(x32, p32)
    assert _rel(mc_nngp, nngp) <= TOLERANCE
    assert _rel(mc_ntk, ntk) <= TOLERANCE


def test_one_aggregation_is_the_pattern_around_the_kernel() -> None:
    x1, p1 = _graphs(3, 4, 1)
    x2, p2 = _graphs(2, 4, 2)
    arch = stax.serial(stax.Dense(8, W_std=1.5, b_std=0.3), stax.Aggregate())
    nngp, ntk = kernel_fn(arch)(x1, x2, get=GET, pattern=(p1, p2))
    before = 2.25 * np.einsum("nsc,mtc->nmst", x1, x2) / 3 + 0.09
    want = np.einsum("nsa,nmab,mtb->nmst", p1, before, p2)
    np.testing.assert_allclose(nngp, want, rtol=1e-13)
    np.testing.assert_allclose(ntk, want, rtol=1e-13)  # one Dense layer: NTK = NNGP


def test_identity_patterns_change_nothing() -> None:
    x, _ = _graphs(4, 5, 3)
    eye = np.broadcast_to(np.eye(5), (4, 5, 5))
    plain = stax.serial(stax.Dense(8, b_std=0.1), stax.Erf(), stax.GlobalAvgPool(), stax.Dense(1))
    graph = stax.serial(
        stax.Dense(8, b_std=0.1), stax.Aggregate(), stax.Erf(), stax.GlobalAvgPool(), stax.Dense(1)
    )
    for a, b in zip(
        kernel_fn(graph)(x, get=GET, pattern=(eye, None)), kernel_fn(plain)(x, get=GET), strict=True
    ):
        np.testing.assert_allclose(a, b, rtol=1e-13)


@pytest.mark.parametrize("with_x2", [False, True])
def test_gradients_match_finite_differences(with_x2: bool) -> None:
    x1, p1 = _graphs(3, 4, 4)
    x2, p2 = _graphs(2, 4, 5)
    arch = stax.serial(
        stax.Dense(8, b_std=0.2), stax.Aggregate(), stax.Gelu(), stax.GlobalSumPool(), stax.Dense(1)
    )
    kfn = kernel_fn(arch)
    b, pattern = (x2, (p1, p2)) if with_x2 else (None, (p1, None))
    loss = lambda a: jnp.sum(kfn(a, b, get="ntk", pattern=pattern) ** 2)  # noqa: E731
    np.testing.assert_allclose(
        jax.jit(jax.grad(loss))(x1), central_difference(loss, x1), rtol=1e-5, atol=1e-7
    )
    assert np.all(np.isfinite(jax.jit(jax.grad(loss))(np.zeros_like(x1))))
