"""ABRelu(a, b) = a min(x, 0) + b max(x, 0), and its specialisations Relu, LeakyRelu, Abs.

Arc-cosine kernels (Cho & Saul 2009), generalised to two slopes. With
theta = arctan2(sqrt(q11 q22 - q12^2), q12) in [0, pi] (arctan2, not arccos: stable
near theta = 0 and with a guarded derivative at the origin):
    E[phi(u) phi(v)]   = (a - b)^2 / (2 pi) (sqrt(det) - theta q12) + (a^2 + b^2) / 2 q12
    E[phi'(u) phi'(v)] = (a^2 + b^2) / 2 - (a - b)^2 / (2 pi) theta
On the diagonal theta = 0: variance (a^2 + b^2) / 2 q, tdot (a^2 + b^2) / 2.
Relu is (a, b) = (0, 1): the familiar (sqrt(det) + (pi - theta) q12) / (2 pi).

A pre-activation of zero variance (a zero input row into a bias-free or zero-initialised
bias layer, whose NTK can still be nonzero) is exactly 0, where phi' is the average slope
(a + b) / 2 (what jnp.maximum's derivative gives at a tie): tdot is (a + b)^2 / 4 with
itself, and (a + b) / 2 E[phi'(v)] = (a + b)^2 / 4 with any other row, which is theta =
pi / 2 in the formula above. Taking atan2(0, 0) = 0 instead gave (a^2 + b^2) / 2 for both,
which no slope gives, and an NTK that was not positive semi-definite.
"""

from __future__ import annotations

import math

import jax.numpy as jnp
from jax import Array
from ntkserve.v1 import architecture_pb2 as pb

from ntkserve_engine.kernels import safe_math
from ntkserve_engine.kernels.elementwise import DiagMoments, PairMoments, elementwise
from ntkserve_engine.kernels.rows import LayerRow, Role, Rule, finite


def ab_relu_moments(a: Array | float, b: Array | float) -> tuple[PairMoments, DiagMoments]:
    odd = (a - b) ** 2 * (0.5 / math.pi)  # no division by constants: see kernel.py
    even = (a * a + b * b) * 0.5

    at_zero = (a + b) * (a + b) * 0.25  # tdot of a zero-variance pre-activation

    def pair(q11: Array, q22: Array, q12: Array, want_tdot: bool) -> tuple[Array, Array | None]:
        root = safe_math.sqrt(q11 * q22 - q12 * q12)
        # Each variance, not q11 * q22 == 0: that product underflows for tiny variances.
        zero = (q11 == 0) | (q22 == 0)
        theta = jnp.where(zero, 0.5 * math.pi, safe_math.arctan2(root, q12))
        nngp = odd * (root - theta * q12) + even * q12
        return nngp, (even - odd * theta) if want_tdot else None

    def diag(q: Array, want_tdot: bool) -> tuple[Array, Array | None]:
        return even * q, jnp.where(q == 0, at_zero, even) if want_tdot else None

    return pair, diag


def _fixed(a: float, b: float) -> Rule:
    return elementwise(lambda hp: ab_relu_moments(a, b))


AB_RELU = LayerRow(
    message=pb.ABRelu,
    role=Role.NONLINEAR,
    build=lambda layer: elementwise(lambda hp: ab_relu_moments(hp["a"], hp["b"])),
    required=("a", "b"),
    hyper=("a", "b"),
    check=lambda layer: finite(layer, "a", "b"),
)
RELU = LayerRow(message=pb.Relu, role=Role.NONLINEAR, build=lambda layer: _fixed(0.0, 1.0))
ABS = LayerRow(message=pb.Abs, role=Role.NONLINEAR, build=lambda layer: _fixed(-1.0, 1.0))
LEAKY_RELU = LayerRow(
    message=pb.LeakyRelu,
    role=Role.NONLINEAR,
    build=lambda layer: elementwise(lambda hp: ab_relu_moments(hp["alpha"], 1.0)),
    required=("alpha",),
    hyper=("alpha",),
    check=lambda layer: finite(layer, "alpha"),
)
