"""Finite-width LayerNorm, Dropout and ExpNormalized, from their definitions, and a Monte
Carlo harness for networks whose random masks are drawn per batch (Dropout).

- LayerNorm: (x - mean) / sqrt(var + eps) over the named axes (population variance).
- Dropout (keep probability `rate`): where(m, x / rate, 0), m ~ Bernoulli(rate) per element
  of the batch. The mask depends on the whole batch, so the per-example gradients of
  `finite_width.monte_carlo` would see other masks than the forward pass:
  `monte_carlo_gram` differentiates the batch output instead, with one mask per draw.
- ExpNormalized(gamma, shift): y = r phi(u / r), r the root mean square of u over channels
  at each position, phi = sum_k c_k He_k / sqrt(k!) with c_k^2 = exp(gamma (1 + shift))
  e^-gamma gamma^k / k!, truncated where the remaining mass is below float32's epsilon.
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from ntkserve.spec import Architecture
from ntkserve.v1 import architecture_pb2 as pb

from tests.engine.finite_width import Apply, Init, network

HERMITE_TERMS = 24


def _layer_norm(m: pb.LayerNorm) -> tuple[Init, Apply]:
    axes = list(m.axis) or [-1]
    eps = m.eps if m.HasField("eps") else 1e-12

    def apply(params: Any, x: jax.Array) -> jax.Array:
        over = tuple(a % x.ndim for a in axes)
        mean = x.mean(axis=over, keepdims=True)
        var = ((x - mean) ** 2).mean(axis=over, keepdims=True)
        return (x - mean) / jnp.sqrt(var + eps)

    return (lambda key, n_in: (n_in, ())), apply


def _dropout(m: pb.Dropout) -> tuple[Init, Apply]:
    rate = m.rate
    if m.mode == pb.DROPOUT_MODE_TEST:
        return (lambda key, n_in: (n_in, ())), (lambda params, x: x)

    def apply(key: jax.Array, x: jax.Array) -> jax.Array:
        keep = jax.random.bernoulli(key, rate, x.shape)
        return jnp.where(keep, x / rate, 0.0)

    return (lambda key, n_in: (n_in, key)), apply


def _normalized_hermite_sum(z: jax.Array, coefficients: np.ndarray) -> jax.Array:
    """sum_k c_k He_k(z) / sqrt(k!), by the recurrence of the normalised polynomials
    h_(k+1) = (z h_k - sqrt(k) h_(k-1)) / sqrt(k + 1), as one loop (not unrolled)."""
    ks = np.arange(1, len(coefficients))

    def step(carry: tuple[jax.Array, ...], k_c: tuple[jax.Array, jax.Array]) -> Any:
        previous, current, total = carry
        k, c = k_c
        previous, current = current, (z * current - jnp.sqrt(k - 1.0) * previous) / jnp.sqrt(k)
        return (previous, current, total + c * current), None

    start = (jnp.zeros_like(z), jnp.ones_like(z), coefficients[0] * jnp.ones_like(z))
    steps = (jnp.asarray(ks, z.dtype), jnp.asarray(coefficients[1:], z.dtype))
    (_, _, total), _ = jax.lax.scan(step, start, steps)
    return total


def _exp_normalized(m: pb.ExpNormalized) -> tuple[Init, Apply]:
    gamma = m.gamma if m.HasField("gamma") else 1.0
    shift = m.shift if m.HasField("shift") else -1.0
    scale = math.exp(gamma * (1 + shift) - gamma)
    coefficients = np.sqrt([scale * gamma**k / math.factorial(k) for k in range(HERMITE_TERMS)])

    def apply(params: Any, u: jax.Array) -> jax.Array:
        r = jnp.sqrt(jnp.mean(u * u, axis=-1, keepdims=True))
        return r * _normalized_hermite_sum(u / r, coefficients)

    return (lambda key, n_in: (n_in, ())), apply


def rescaling_layer(kind: str, m: Any) -> tuple[Init, Apply]:
    if kind == "layer_norm":
        return _layer_norm(m)
    if kind == "dropout":
        return _dropout(m)
    return _exp_normalized(m)


def monte_carlo_gram(
    arch: Architecture, x: jax.Array, n_samples: int, seed: int = 0
) -> tuple[jax.Array, jax.Array]:
    """Sample means of the empirical NNGP (over output units) and NTK (output unit 0) of
    the rows of x with each other, the masks drawn once per network and batch: the
    diagonal is each example with itself under one mask, every other entry two examples
    under independent masks."""
    init, apply = network(arch)

    def one(key: jax.Array) -> tuple[jax.Array, jax.Array]:
        _, params = init(key, x.shape[-1], x[:1])
        leaves, treedef = jax.tree.flatten(params)
        trained = [i for i, leaf in enumerate(leaves) if jnp.issubdtype(leaf.dtype, jnp.floating)]

        def output(weights: list[jax.Array]) -> jax.Array:
            full = list(leaves)
            for i, w in zip(trained, weights, strict=True):
                full[i] = w
            return apply(jax.tree.unflatten(treedef, full), x)

        y = output([leaves[i] for i in trained])
        jacobian = jax.jacrev(lambda w: output(w)[:, 0])([leaves[i] for i in trained])
        # J J^T as the sum of each parameter's block: the same inner products as those of
        # the concatenated rows, without copying them (much of the cost on XLA-CPU)
        rows = [j.reshape(x.shape[0], -1) for j in jacobian]
        return y @ y.T / y.shape[-1], sum(r @ r.T for r in rows)

    keys = jax.random.split(jax.random.PRNGKey(seed), n_samples)
    nngp, ntk = jax.lax.map(jax.jit(one), keys)
    return nngp.mean(0), ntk.mean(0)
