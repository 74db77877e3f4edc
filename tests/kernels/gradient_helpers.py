"""A scalar loss of a kernel function for gradient tests: each kernel weighted by its own
fixed random cotangent, so every entry's gradient counts."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np


def cotangent_loss(kfn, get, x2=None, cotangent_seed=7):  # type: ignore[no-untyped-def]
    def loss(x1, x2=x2):  # type: ignore[no-untyped-def]
        out = kfn(x1, x2, get=get)
        rng = np.random.RandomState(cotangent_seed)
        return sum(jnp.sum(jnp.asarray(rng.randn(*k.shape), k.dtype) * k) for k in out)

    return loss
