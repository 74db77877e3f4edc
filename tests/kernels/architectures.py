"""Architectures used across the engine tests: one per layer type and parameterization."""

from __future__ import annotations

import pytest
from ntkserve import stax

NONLINEARITIES = {
    "relu": stax.Relu(),
    "abs": stax.Abs(),
    "leaky_relu": stax.LeakyRelu(0.1),
    "ab_relu": stax.ABRelu(0.4, -1.2),
    "erf": stax.Erf(),
    "erf_abc": stax.Erf(a=1.3, b=0.6, c=-0.2),
}


def fc(
    nonlinearity: stax.Architecture,
    parameterization: str = "ntk",
    depth: int = 3,
    b_std: float | None = 0.1,
) -> stax.Architecture:
    layers = []
    for i in range(depth):
        layers += [
            stax.Dense(64 * (i + 1), W_std=1.3, b_std=b_std, parameterization=parameterization),
            nonlinearity,
        ]
    return stax.serial(
        *layers, stax.Dense(3, W_std=0.9, b_std=b_std, parameterization=parameterization)
    )


ALL = [
    pytest.param(fc(layer, param, b_std=b_std), id=f"{name}-{param}-b{b_std}")
    for name, layer in NONLINEARITIES.items()
    for param in ("ntk", "standard")
    for b_std in (None, 0.1)
]
