"""The Gaussian-CDF family: Erf(a, b, c), Sigmoid_like and Gelu.

Erf (Williams 1997, "Computing with infinite networks"): for centred Gaussians (u, v),
    E[erf(bu) erf(bv)] = (2/pi) arcsin(2 b^2 q12 / sqrt((1 + 2 b^2 q11)(1 + 2 b^2 q22))),
and E[erf] = 0, so c only adds c^2. The derivative moment is a Gaussian integral:
    E[phi'(u) phi'(v)] = (4 a^2 b^2 / pi) / sqrt((1 + 2 b^2 q11)(1 + 2 b^2 q22) - 4 b^4 q12^2).
The arcsin is taken as arctan2(2 b^2 q12, root) with the same root, expanded as
1 + 2 b^2 (q11 + q22) + 4 b^4 (q11 q22 - q12^2) >= 1: no cancellation, no singular
derivative (|argument| < 1 always). arctan2 is safe_math's vectorised one (no libm call per entry).

Sigmoid_like is neural-tangents' Erf(a=1/2, b=1/2.4020563531719796, c=1/2).

Gelu(x) = x Phi(x) (Hendrycks & Gimpel 2016), with Phi the standard normal CDF. Its
moments (Tsuchida et al. 2021, arXiv:2002.08517) with S = (1 + q11)(1 + q22),
P = q11 q22, delta^2 = S - q12^2 >= 1 and theta = arctan2(q12, delta):
    E[phi(u) phi(v)]   = q12 / 4 + ((q12^2 + P delta^2) / (S delta) + q12 theta) / (2 pi)
    E[phi'(u) phi'(v)] = 1/4 + theta / (2 pi)
                         + q12 / (2 pi delta) (1 / delta^2 + (1 - P) / S + 1).
delta >= 1, so nothing is singular and the diagonal is the pair formula at q11 = q22 = q12.
"""

from __future__ import annotations

import math

import jax.numpy as jnp
from jax import Array
from ntkserve.v1 import architecture_pb2 as pb

from ntkserve_engine.kernels import safe_math
from ntkserve_engine.kernels.elementwise import (
    DiagMoments,
    PairMoments,
    diagonal_of,
    elementwise,
)
from ntkserve_engine.kernels.rows import LayerRow, Role, finite

SIGMOID_LIKE_B = 1 / 2.4020563531719796  # neural-tangents' constant: a least-squares fit


def erf_moments(
    a: Array | float, b: Array | float, c: Array | float
) -> tuple[PairMoments, DiagMoments]:
    b2 = b * b
    scale = a * a * (2 / math.pi)  # no division by constants: see kernel.py
    tdot_scale = a * a * b2 * (4 / math.pi)

    def pair(q11: Array, q22: Array, q12: Array, want_tdot: bool) -> tuple[Array, Array | None]:
        det = jnp.maximum(q11 * q22 - q12 * q12, 0)
        root = jnp.sqrt(1 + 2 * b2 * (q11 + q22) + 4 * b2 * b2 * det)
        nngp = scale * safe_math.arctan2(2 * b2 * q12, root) + c * c
        return nngp, (tdot_scale / root) if want_tdot else None

    def diag(q: Array, want_tdot: bool) -> tuple[Array, Array | None]:
        root = jnp.sqrt(1 + 4 * b2 * q)
        var = scale * safe_math.arctan2(2 * b2 * q, root) + c * c
        return var, (tdot_scale / root) if want_tdot else None

    return pair, diag


def gelu_moments() -> tuple[PairMoments, DiagMoments]:
    inv_2pi = 0.5 / math.pi

    def pair(q11: Array, q22: Array, q12: Array, want_tdot: bool) -> tuple[Array, Array | None]:
        prod = q11 * q22
        s = 1 + q11 + q22 + prod
        delta2 = 1 + q11 + q22 + jnp.maximum(prod - q12 * q12, 0)  # S - q12^2, no cancellation
        delta = jnp.sqrt(delta2)
        theta = safe_math.arctan2(q12, delta)
        nngp = q12 * 0.25 + ((q12 * q12 + prod * delta2) / (s * delta) + q12 * theta) * inv_2pi
        if not want_tdot:
            return nngp, None
        tdot = 0.25 + theta * inv_2pi + q12 * inv_2pi / delta * (1 / delta2 + (1 - prod) / s + 1)
        return nngp, tdot

    return pair, diagonal_of(pair)


ERF = LayerRow(
    message=pb.Erf,
    role=Role.NONLINEAR,
    build=lambda layer: elementwise(lambda hp: erf_moments(hp["a"], hp["b"], hp["c"])),
    defaults={"a": 1.0, "b": 1.0, "c": 0.0},
    hyper=("a", "b", "c"),
    check=lambda layer: finite(layer, "a", "b", "c"),
)
SIGMOID_LIKE = LayerRow(
    message=pb.SigmoidLike,
    role=Role.NONLINEAR,
    build=lambda layer: elementwise(lambda hp: erf_moments(0.5, SIGMOID_LIKE_B, 0.5)),
)
GELU = LayerRow(
    message=pb.Gelu, role=Role.NONLINEAR, build=lambda layer: elementwise(lambda hp: gelu_moments())
)
