"""Exponentials of Gaussians: Sin, Cos, Rbf, Exp and Gaussian.

All follow from the Gaussian moment generating function E[exp(t.w)] = exp(t'Qt / 2) for
w = (u, v) ~ N(0, Q) (Pearce et al. 2019 and neural-tangents for the same closed forms):
- Sin(a, b, c) = a sin(bx + c): sin(s) sin(t) = (cos(s - t) - cos(s + t)) / 2 gives
      E[phi(u) phi(v)]   = a^2 / 2 (e_minus - cos(2c) e_plus),
      E[phi'(u) phi'(v)] = a^2 b^2 / 2 (e_minus + cos(2c) e_plus),
  with e_minus = exp(-b^2 (q11 + q22 - 2 q12) / 2), e_plus = exp(-b^2 (q11 + q22 + 2 q12) / 2).
  Cos(a, b, c) is Sin(a, b, c + pi/2): cos(2c) changes sign, computed exactly as -cos(2c).
- Rbf(gamma) = sqrt(2) sin(sqrt(2 gamma) x + pi/4), the Sin case with cos(2c) = 0:
      K = exp(-gamma (q11 + q22 - 2 q12)),  tdot = 2 gamma K.
- Exp(a, b) = a exp(bx):  K = a^2 exp(b^2 (q11 + q22 + 2 q12) / 2),  tdot = b^2 K.
- Gaussian(a, b) = a exp(b x^2) (b <= 0): with D = det(I - 2bQ)
      = 1 - 2b (q11 + q22) + 4 b^2 (q11 q22 - q12^2),
      K = a^2 / sqrt(D),  tdot = 4 a^2 b^2 q12 / D^(3/2).
  For b > 0, E[phi(u)^2] is infinite once 4bq >= 1, so b > 0 is refused at registration.
- Gabor = exp(-x^2) sin(x): sin(u) sin(v) = (cos(u - v) - cos(u + v)) / 2 and
      E[exp(-w'w + i t.w)] = exp(-t' M t / 2) / sqrt(D),  M = Q (I + 2Q)^-1,
  with D = det(I + 2Q) = 1 + 2 (q11 + q22) + 4 (q11 q22 - q12^2) and, by Cayley-Hamilton,
  M = [[q11 + 2 det Q, q12], [q12, q22 + 2 det Q]] / D, give
      K = (exp(-(s + 4 det Q - 2 q12) / 2D) - exp(-(s + 4 det Q + 2 q12) / 2D)) / (2 sqrt(D)),
  s = q11 + q22; tdot = dK / dq12 at fixed q11, q22 (Price's theorem), by forward-mode
  differentiation of that formula.
None has a singular point, so the diagonal is the pair formula at q11 = q22 = q12.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import Array
from ntkserve.v1 import architecture_pb2 as pb

from ntkserve_engine.kernels.elementwise import (
    DiagMoments,
    PairMoments,
    diagonal_of,
    elementwise,
)
from ntkserve_engine.kernels.rows import Hyper, LayerRow, Role, Violations, finite


def sin_moments(
    a: Array | float, b: Array | float, cos_2c: Array | float
) -> tuple[PairMoments, DiagMoments]:
    half_a2 = a * a * 0.5
    b2_half = b * b * 0.5

    def pair(q11: Array, q22: Array, q12: Array, want_tdot: bool) -> tuple[Array, Array | None]:
        e_minus = jnp.exp(-b2_half * (q11 + q22 - 2 * q12))
        e_plus = jnp.exp(-b2_half * (q11 + q22 + 2 * q12)) * cos_2c
        nngp = half_a2 * (e_minus - e_plus)
        return nngp, (half_a2 * b * b * (e_minus + e_plus)) if want_tdot else None

    return pair, diagonal_of(pair)


def rbf_moments(gamma: Array | float) -> tuple[PairMoments, DiagMoments]:
    def pair(q11: Array, q22: Array, q12: Array, want_tdot: bool) -> tuple[Array, Array | None]:
        nngp = jnp.exp(-gamma * (q11 + q22 - 2 * q12))
        return nngp, (2 * gamma * nngp) if want_tdot else None

    return pair, diagonal_of(pair)


def exp_moments(a: Array | float, b: Array | float) -> tuple[PairMoments, DiagMoments]:
    def pair(q11: Array, q22: Array, q12: Array, want_tdot: bool) -> tuple[Array, Array | None]:
        nngp = a * a * jnp.exp(b * b * 0.5 * (q11 + q22 + 2 * q12))
        return nngp, (b * b * nngp) if want_tdot else None

    return pair, diagonal_of(pair)


def gaussian_moments(a: Array | float, b: Array | float) -> tuple[PairMoments, DiagMoments]:
    def pair(q11: Array, q22: Array, q12: Array, want_tdot: bool) -> tuple[Array, Array | None]:
        det = 1 - 2 * b * (q11 + q22) + 4 * b * b * jnp.maximum(q11 * q22 - q12 * q12, 0)
        inv_root = 1 / jnp.sqrt(det)
        nngp = a * a * inv_root
        return nngp, (4 * b * b * q12 * nngp * inv_root * inv_root) if want_tdot else None

    return pair, diagonal_of(pair)


def gabor_moments() -> tuple[PairMoments, DiagMoments]:
    def nngp(q11: Array, q22: Array, q12: Array) -> Array:
        # No clamp: D >= 1 whatever the round-off in det Q, and a clamp's derivative
        # would halve d(det Q)/dq12 where det Q = 0 (the diagonal).
        det_q = q11 * q22 - q12 * q12
        total = q11 + q22 + 4 * det_q
        d = 1 + 2 * (q11 + q22) + 4 * det_q
        half_inv_d = 0.5 / d
        e_minus = jnp.exp(-(total - 2 * q12) * half_inv_d)
        e_plus = jnp.exp(-(total + 2 * q12) * half_inv_d)
        return (e_minus - e_plus) * (0.5 * jax.lax.rsqrt(d))

    def pair(q11: Array, q22: Array, q12: Array, want_tdot: bool) -> tuple[Array, Array | None]:
        if not want_tdot:
            return nngp(q11, q22, q12), None
        value, tdot = jax.jvp(lambda c: nngp(q11, q22, c), (q12,), (jnp.ones_like(q12),))
        return value, tdot

    return pair, diagonal_of(pair)


def _sin(hp: Hyper, sign: float) -> tuple[PairMoments, DiagMoments]:
    return sin_moments(hp["a"], hp["b"], sign * jnp.cos(2 * hp["c"]))


def _gaussian_check(layer: pb.Gaussian) -> Violations:
    problems = finite(layer, "a", "b")
    if not problems and layer.b > 0:
        problems.append(
            ("b", f"must be <= 0: for b > 0 the kernel is infinite once 4 b q >= 1, got {layer.b}")
        )
    return problems


def _sin_row(message: type[pb.Sin] | type[pb.Cos], sign: float) -> LayerRow:
    return LayerRow(
        message=message,
        role=Role.NONLINEAR,
        build=lambda layer: elementwise(lambda hp: _sin(hp, sign)),
        defaults={"a": 1.0, "b": 1.0, "c": 0.0},
        hyper=("a", "b", "c"),
        check=lambda layer: finite(layer, "a", "b", "c"),
    )


SIN = _sin_row(pb.Sin, 1.0)
COS = _sin_row(pb.Cos, -1.0)  # cos(bx + c) = sin(bx + c + pi/2): cos(2c) changes sign
RBF = LayerRow(
    message=pb.Rbf,
    role=Role.NONLINEAR,
    build=lambda layer: elementwise(lambda hp: rbf_moments(hp["gamma"])),
    defaults={"gamma": 1.0},
    hyper=("gamma",),
    check=lambda layer: finite(layer, "gamma", nonnegative=True),
)
EXP = LayerRow(
    message=pb.Exp,
    role=Role.NONLINEAR,
    build=lambda layer: elementwise(lambda hp: exp_moments(hp["a"], hp["b"])),
    defaults={"a": 1.0, "b": 1.0},
    hyper=("a", "b"),
    check=lambda layer: finite(layer, "a", "b"),
)
GAUSSIAN = LayerRow(
    message=pb.Gaussian,
    role=Role.NONLINEAR,
    build=lambda layer: elementwise(lambda hp: gaussian_moments(hp["a"], hp["b"])),
    defaults={"a": 1.0, "b": -1.0},
    hyper=("a", "b"),
    check=_gaussian_check,
)
GABOR = LayerRow(
    message=pb.Gabor,
    role=Role.NONLINEAR,
    build=lambda layer: elementwise(lambda hp: gabor_moments()),
)
