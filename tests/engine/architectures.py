"""Architectures used across the engine tests: one per layer type and parameterization."""

from __future__ import annotations

import pytest
from ntkserve import stax

# Checked against the independent recursion of reference.py as well.
CLOSED_FORM = {
    "relu": stax.Relu(),
    "abs": stax.Abs(),
    "leaky_relu": stax.LeakyRelu(0.1),
    "ab_relu": stax.ABRelu(0.4, -1.2),
    "erf": stax.Erf(),
    "erf_abc": stax.Erf(a=1.3, b=0.6, c=-0.2),
}
# Moments checked one layer at a time by test_elementwise_moments.py. Growing functions
# (exp, powers) compound over layers, so they get fewer layers: the kernel stays O(1-1e3)
# and finite differences in float64 stay meaningful.
MORE: dict[str, tuple[stax.Architecture, int]] = {
    "sigmoid_like": (stax.Sigmoid_like(), 3),
    "gelu": (stax.Gelu(), 3),
    "sign": (stax.Sign(), 3),
    "sin": (stax.Sin(1.1, 0.9, 0.4), 3),
    "cos": (stax.Cos(), 3),
    "rbf": (stax.Rbf(0.7), 3),
    "exp": (stax.Exp(0.6, 0.4), 1),
    "gaussian": (stax.Gaussian(1.2, -0.6), 3),
    "monomial": (stax.Monomial(2), 1),
    "step": (stax.RectifiedMonomial(0), 3),
    "rectified_monomial": (stax.RectifiedMonomial(3), 1),
    "polynomial": (stax.Polynomial([0.2, 0.8, -0.3]), 2),
    "hermite": (stax.Hermite(2), 2),
    "gabor": (stax.Gabor(), 3),
    "exp_normalized": (stax.ExpNormalized(0.8, -0.5), 3),
}
# Kernels that are not Lipschitz where inputs coincide (rho = 1): arcsin-like, so round-off
# of order eps in rho becomes sqrt(eps) in the kernel, and compounds over layers.
NOT_LIPSCHITZ = ("sign", "step")


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


REFERENCE = [
    pytest.param(fc(layer, param, b_std=b_std), id=f"{name}-{param}-b{b_std}")
    for name, layer in CLOSED_FORM.items()
    for param in ("ntk", "standard")
    for b_std in (None, 0.1)
]
# Every nonlinearity; the later ones in one setting each, the two settings alternating, to
# keep the suite short (each layer's moments are checked alone in test_elementwise_moments).
SETTINGS = (("ntk", 0.1), ("standard", None))
ALL = (
    REFERENCE
    + [
        pytest.param(fc(layer, param, depth, b_std), id=f"{name}-{param}-b{b_std}")
        for i, (name, (layer, depth)) in enumerate(MORE.items())
        for param, b_std in (SETTINGS[i % 2],)
    ]
    + [
        # LayerNorm after each affine layer (Dropout's Gram diagonal differs from x2 = x1 by
        # design: its exact checks are in test_rescaling.py).
        pytest.param(
            fc(stax.serial(stax.LayerNorm(eps=0.01), stax.Gelu()), param, 2, b_std),
            id=f"layer_norm-{param}-b{b_std}",
        )
        for param, b_std in SETTINGS
    ]
)
