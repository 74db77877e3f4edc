"""Erf(a, b, c) = a erf(b x) + c.

Williams 1997 ("Computing with infinite networks"): for centred Gaussians (u, v),
    E[erf(bu) erf(bv)] = (2/pi) arcsin(2 b^2 q12 / sqrt((1 + 2 b^2 q11)(1 + 2 b^2 q22))),
and E[erf] = 0, so c only adds c^2. The derivative moment is a Gaussian integral:
    E[phi'(u) phi'(v)] = (4 a^2 b^2 / pi) / sqrt((1 + 2 b^2 q11)(1 + 2 b^2 q22) - 4 b^4 q12^2).
The arcsin is taken as arctan2(2 b^2 q12, root) with the same root, expanded as
1 + 2 b^2 (q11 + q22) + 4 b^4 (q11 q22 - q12^2) >= 1: no cancellation, no singular
derivative (|argument| < 1 always).
"""

from __future__ import annotations

import math

import jax.numpy as jnp
from jax import Array
from ntkserve.v1 import architecture_pb2 as pb

from ntkserve_server.kernels.elementwise import DiagMoments, PairMoments, elementwise
from ntkserve_server.kernels.rows import Hyper, LayerRow, Role, finite


def erf_moments(hp: Hyper) -> tuple[PairMoments, DiagMoments]:
    a, b, c = hp["a"], hp["b"], hp["c"]
    b2 = b * b
    scale = a * a * (2 / math.pi)  # no division by constants: see kernel.py
    tdot_scale = a * a * b2 * (4 / math.pi)

    def pair(q11: Array, q22: Array, q12: Array, want_tdot: bool) -> tuple[Array, Array | None]:
        det = jnp.maximum(q11 * q22 - q12 * q12, 0)
        root = jnp.sqrt(1 + 2 * b2 * (q11 + q22) + 4 * b2 * b2 * det)
        nngp = scale * jnp.arctan2(2 * b2 * q12, root) + c * c
        return nngp, (tdot_scale / root) if want_tdot else None

    def diag(q: Array, want_tdot: bool) -> tuple[Array, Array | None]:
        root = jnp.sqrt(1 + 4 * b2 * q)
        var = scale * jnp.arctan2(2 * b2 * q, root) + c * c
        return var, (tdot_scale / root) if want_tdot else None

    return pair, diag


ERF = LayerRow(
    message=pb.Erf,
    role=Role.NONLINEAR,
    build=lambda layer: elementwise(erf_moments),
    defaults={"a": 1.0, "b": 1.0, "c": 0.0},
    hyper=("a", "b", "c"),
    check=lambda layer: finite(layer, "a", "b", "c"),
)
