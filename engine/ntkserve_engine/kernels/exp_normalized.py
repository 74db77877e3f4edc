"""ExpNormalized(gamma, shift, do_clip): the "Gaussian normalized kernel" of Shankar et al.
2020 ("Neural kernels without tangents", arXiv:2003.02237, p. 6), as neural-tangents has it.

With rho = q12 / sqrt(q11 q22), the cosine of the angle between two pre-activations,
    K = sqrt(q11 q22) exp(gamma (rho + shift)),     tdot = gamma exp(gamma (rho + shift)),
so ntk' = ntk * tdot. It is the kernel of the finite-width layer y = r phi(u / r), r the
root mean square of u over channels, for the phi whose normalised Hermite coefficients c_k
satisfy c_k^2 = exp(gamma (1 + shift)) e^-gamma gamma^k / k!: then E[phi(u/r) phi(v/r')]
= exp(gamma (1 + shift)) sum_k e^-gamma (gamma rho)^k / k! = exp(gamma (rho + shift)), and
tdot = sum_k k c_k^2 rho^(k-1) = dK/dq12 (the derivative through r is O(1/width)).

Where a pre-activation has zero variance, rho is taken as 0 with every other row (a zero
vector is orthogonal to everything) and 1 with itself, so the kernel stays a Gram matrix:
K = 0 there, and tdot is that of unit vectors, positive semi-definite.
"""

from __future__ import annotations

import jax.numpy as jnp
from jax import Array
from ntkserve.v1 import architecture_pb2 as pb

from ntkserve_engine.kernels import safe_math
from ntkserve_engine.kernels.elementwise import DiagMoments, PairMoments, elementwise
from ntkserve_engine.kernels.rows import Hyper, LayerRow, Role, Violations, finite


def exp_normalized_moments(hp: Hyper, do_clip: bool) -> tuple[PairMoments, DiagMoments]:
    gamma, shift = hp["gamma"], hp["shift"]

    def pair(q11: Array, q22: Array, q12: Array, want_tdot: bool) -> tuple[Array, Array | None]:
        norms = safe_math.sqrt(q11 * q22)
        positive = norms > 0
        rho = jnp.where(positive, q12 / jnp.where(positive, norms, 1), 0)
        if do_clip:
            rho = jnp.clip(rho, -1, 1)
        exp_term = jnp.exp(gamma * (rho + shift))
        return norms * exp_term, gamma * exp_term if want_tdot else None

    def diag(q: Array, want_tdot: bool) -> tuple[Array, Array | None]:
        exp_term = jnp.exp(gamma * (1 + shift))  # rho = 1
        tdot = jnp.broadcast_to(gamma * exp_term, q.shape) if want_tdot else None
        return q * exp_term, tdot

    return pair, diag


def _check(layer: pb.ExpNormalized) -> Violations:
    return finite(layer, "gamma", nonnegative=True) + finite(layer, "shift")


EXP_NORMALIZED = LayerRow(
    message=pb.ExpNormalized,
    role=Role.NONLINEAR,
    build=lambda layer: elementwise(lambda hp: exp_normalized_moments(hp, layer.do_clip)),
    defaults={"gamma": 1.0, "shift": -1.0},
    hyper=("gamma", "shift"),
    check=_check,
)
