"""Finite-width networks built from the same specs, for Monte Carlo checks of the engine.

Written independently of the engine's rules: each layer is its literal definition (weights
drawn, matrices multiplied, activations applied), in the parameterizations of
neural-tangents' stax:
  ntk:      z = W_std / sqrt(n_in) W x + b_std b,     W, b ~ N(0, 1)
  standard: z = W x / sqrt(s_in) + b,  W ~ N(0, W_std^2 s_in / n_in), b ~ N(0, b_std^2)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from jax.scipy.special import erf
from ntkserve.spec import Architecture
from ntkserve.v1 import architecture_pb2 as pb

Init = Callable[[jax.Array, int], tuple[int, Any]]
Apply = Callable[[Any, jax.Array], jax.Array]


def _dense(layer: pb.Dense) -> tuple[Init, Apply]:
    w_std = layer.w_std if layer.HasField("w_std") else 1.0
    has_bias = layer.HasField("b_std")
    b_std = layer.b_std if has_bias else 0.0
    standard = layer.parameterization == pb.PARAMETERIZATION_STANDARD
    s_in = layer.s_in or 1
    s_out = layer.s_out or 1
    out = layer.out_dim * (s_out if standard else 1)

    def init(key: jax.Array, n_in: int) -> tuple[int, Any]:
        kw, kb = jax.random.split(key)
        w = jax.random.normal(kw, (n_in, out))
        b = jax.random.normal(kb, (out,)) if has_bias else None
        if standard:
            w = w * w_std / jnp.sqrt(n_in / s_in)
            b = None if b is None else b * b_std
        return out, (w, b)

    def apply(params: Any, x: jax.Array) -> jax.Array:
        w, b = params
        n_in = x.shape[-1]
        if standard:
            z = x @ w / jnp.sqrt(s_in)
            return z if b is None else z + b
        z = w_std / jnp.sqrt(n_in) * (x @ w)
        return z if b is None else z + b_std * b

    return init, apply


def _elementwise(fn: Callable[[jax.Array], jax.Array]) -> tuple[Init, Apply]:
    return (lambda key, n_in: (n_in, ())), (lambda params, x: fn(x))


def _layer(layer: pb.Layer) -> tuple[Init, Apply]:
    kind = layer.WhichOneof("layer")
    m = getattr(layer, kind)
    if kind == "dense":
        return _dense(m)
    if kind == "relu":
        return _elementwise(lambda x: jnp.maximum(x, 0))
    if kind == "abs":
        return _elementwise(jnp.abs)
    if kind == "ab_relu":
        return _elementwise(lambda x: m.a * jnp.minimum(x, 0) + m.b * jnp.maximum(x, 0))
    if kind == "leaky_relu":
        return _elementwise(lambda x: jnp.where(x > 0, x, m.alpha * x))
    if kind == "erf":
        a = m.a if m.HasField("a") else 1.0
        b = m.b if m.HasField("b") else 1.0
        c = m.c if m.HasField("c") else 0.0
        return _elementwise(lambda x: a * erf(b * x) + c)
    if kind == "serial":
        return _serial(list(m.layers))
    raise NotImplementedError(f"no finite-width version of {kind}")


def _serial(layers: list[pb.Layer]) -> tuple[Init, Apply]:
    parts = [_layer(layer) for layer in layers]

    def init(key: jax.Array, n_in: int) -> tuple[int, Any]:
        params = []
        for (layer_init, _), k in zip(parts, jax.random.split(key, len(parts)), strict=True):
            n_in, p = layer_init(k, n_in)
            params.append(p)
        return n_in, params

    def apply(params: Any, x: jax.Array) -> jax.Array:
        for (_, layer_apply), p in zip(parts, params, strict=True):
            x = layer_apply(p, x)
        return x

    return init, apply


def network(arch: Architecture) -> tuple[Init, Apply]:
    return _serial(list(arch.layers))


def monte_carlo(
    arch: Architecture, x1: jax.Array, x2: jax.Array, n_samples: int, seed: int = 0
) -> tuple[jax.Array, jax.Array]:
    """Sample means of the empirical NNGP (averaged over output units) and of the
    empirical NTK of output unit 0, over `n_samples` independently drawn networks."""
    init, apply = network(arch)
    d = x1.shape[-1]

    def one(key: jax.Array) -> tuple[jax.Array, jax.Array]:
        _, params = init(key, d)
        y1, y2 = apply(params, x1), apply(params, x2)
        nngp = y1 @ y2.T / y1.shape[-1]
        j1 = jax.jacrev(lambda p: apply(p, x1)[:, 0])(params)
        j2 = jax.jacrev(lambda p: apply(p, x2)[:, 0])(params)
        leaves1, leaves2 = jax.tree.leaves(j1), jax.tree.leaves(j2)
        ntk = sum(
            a.reshape(a.shape[0], -1) @ b.reshape(b.shape[0], -1).T
            for a, b in zip(leaves1, leaves2, strict=True)
        )
        return nngp, ntk

    keys = jax.random.split(jax.random.PRNGKey(seed), n_samples)
    nngp, ntk = jax.lax.map(jax.jit(one), keys)
    return nngp.mean(0), ntk.mean(0)
