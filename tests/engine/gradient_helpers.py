"""Helpers of the gradient tests: a scalar loss of a kernel function (each kernel weighted
by its own fixed random cotangent, so every entry's gradient counts), central differences,
and the hyper-parameter gradient check against them."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np


def cotangent_loss(kfn, get, x2=None, cotangent_seed=7):  # type: ignore[no-untyped-def]
    def loss(x1, x2=x2):  # type: ignore[no-untyped-def]
        out = kfn(x1, x2, get=get)
        rng = np.random.RandomState(cotangent_seed)
        return sum(jnp.sum(jnp.asarray(rng.randn(*k.shape), k.dtype) * k) for k in out)

    return loss


def central_difference(f, x: np.ndarray, eps: float = 1e-6) -> np.ndarray:  # type: ignore[no-untyped-def]
    """Central differences along every coordinate, evaluated as one batched call."""
    steps = np.eye(x.size).reshape(x.size, *x.shape) * eps
    values = jax.jit(jax.vmap(f))(np.concatenate([x + steps, x - steps]))
    return np.asarray((values[: x.size] - values[x.size :]) / (2 * eps)).reshape(x.shape)


def assert_hyper_gradients_match(loss: Callable[[Any], Any], params: Any) -> None:
    """jax.grad of `loss` with respect to each hyper-parameter matches a central difference
    in float64 (rtol 1e-5: the difference's truncation and rounding at step 1e-6)."""
    grads, _ = jax.tree.flatten(jax.jit(jax.grad(loss))(params))
    values, tree = jax.tree.flatten(params)
    for i, (grad, value) in enumerate(zip(grads, values, strict=True)):

        def shifted(delta: float, i: int = i, value: float = value) -> float:
            moved = list(values)
            moved[i] = value + delta
            return float(loss(jax.tree.unflatten(tree, moved)))

        fd = (shifted(1e-6) - shifted(-1e-6)) / 2e-6
        np.testing.assert_allclose(float(grad), fd, rtol=1e-5, atol=1e-7)
