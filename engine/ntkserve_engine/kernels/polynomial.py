"""Polynomials of Gaussians: Polynomial(coef), Monomial(degree) and Hermite(degree).

For phi(x) = sum_i c_i x^i and (u, v) ~ N(0, [[q11, q12], [q12, q22]]), Isserlis' theorem
(pair the factors; k pairs join a u with a v) gives
    E[u^i v^j] = sum_k C(i, k) C(j, k) k! (i - k - 1)!! (j - k - 1)!! q12^k
                 q11^((i - k) / 2) q22^((j - k) / 2)        (i - k, j - k even),
so the double sum over (i, j) factorises by k:
    E[phi(u) phi(v)] = sum_k k! q12^k A_k(q11) A_k(q22),
    A_k(q) = sum_m c_(k + 2m) C(k + 2m, k) (2m - 1)!! q^m.
(This is the Hermite expansion of phi at variance q, as in neural-tangents' Polynomial.)
tdot is the same sum for phi' (coefficients i c_i). Only sums and products: exact, smooth,
no singular point; the diagonal is the pair formula at q11 = q22 = q12.

Hermite(degree) is He_degree(x) / sqrt(degree!). neural-tangents assumes unit-variance
inputs and returns q12^degree; the expansion above is exact for any variance and equals
q12^degree when q11 = q22 = 1.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import jax.numpy as jnp
from jax import Array
from ntkserve.v1 import architecture_pb2 as pb

from ntkserve_engine.kernels.elementwise import (
    DiagMoments,
    PairMoments,
    diagonal_of,
    elementwise,
)
from ntkserve_engine.kernels.rows import LayerRow, Role, Violations

MAX_DEGREE = 16
Coefficients = Sequence[Array | float]


def _double_factorial(n: int) -> int:
    return math.prod(range(n, 0, -2)) if n > 0 else 1


def _expected_product(coef: Coefficients, q11: Array, q22: Array, q12: Array) -> Array | float:
    """E[phi(u) phi(v)] for phi = sum_i coef[i] x^i, by the factorised Isserlis sum."""
    n = len(coef)
    total: Array | float = 0.0
    for k in range(n):
        a = [
            coef[k + 2 * m] * float(math.comb(k + 2 * m, k) * _double_factorial(2 * m - 1))
            for m in range((n - 1 - k) // 2 + 1)
        ]
        total = total + float(math.factorial(k)) * q12**k * _horner(a, q11) * _horner(a, q22)
    return total


def _horner(a: Coefficients, q: Array) -> Array | float:
    value: Array | float = 0.0
    for coefficient in reversed(a):
        value = value * q + coefficient
    return value


def polynomial_moments(coef: Coefficients) -> tuple[PairMoments, DiagMoments]:
    slope = [coef[i] * float(i) for i in range(1, len(coef))]

    def pair(q11: Array, q22: Array, q12: Array, want_tdot: bool) -> tuple[Array, Array | None]:
        nngp = _shaped(_expected_product(coef, q11, q22, q12), q12)
        if not want_tdot:
            return nngp, None
        return nngp, _shaped(_expected_product(slope, q11, q22, q12), q12)

    return pair, diagonal_of(pair)


def _shaped(value: Array | float, like: Array) -> Array:
    """Low degrees give constants (degree 0) or broadcastable rows: give them q12's shape."""
    return jnp.broadcast_to(jnp.asarray(value, like.dtype), like.shape)


def monomial_coefficients(degree: int) -> list[float]:
    return [0.0] * degree + [1.0]


def hermite_coefficients(degree: int) -> list[float]:
    """He_degree(x) / sqrt(degree!): probabilists' Hermite, unit norm under N(0, 1)."""
    coef = [0.0] * (degree + 1)
    for m in range(degree // 2 + 1):
        term = math.factorial(degree) // (math.factorial(m) * math.factorial(degree - 2 * m) * 2**m)
        coef[degree - 2 * m] = (-1) ** m * term / math.sqrt(math.factorial(degree))
    return coef


def check_degree(layer: pb.Monomial | pb.Hermite | pb.RectifiedMonomial) -> Violations:
    if layer.HasField("degree") and layer.degree > MAX_DEGREE:
        return [("degree", f"must be between 0 and {MAX_DEGREE}, got {layer.degree}")]
    return []


def _check_polynomial(layer: pb.Polynomial) -> Violations:
    if not layer.coef:
        return [("coef", "needs at least one coefficient (coef[i] multiplies x^i)")]
    if len(layer.coef) > MAX_DEGREE + 1:
        return [("coef", f"at most {MAX_DEGREE + 1} coefficients, got {len(layer.coef)}")]
    bad = [i for i, c in enumerate(layer.coef) if not math.isfinite(c)]
    return [(f"coef[{i}]", f"must be finite, got {layer.coef[i]}") for i in bad]


POLYNOMIAL = LayerRow(
    message=pb.Polynomial,
    role=Role.NONLINEAR,
    build=lambda layer: elementwise(lambda hp: polynomial_moments(tuple(hp["coef"]))),
    hyper=("coef",),
    check=_check_polynomial,
)


def _fixed_row(
    message: type[pb.Monomial] | type[pb.Hermite], coefficients: Callable[[int], list[float]]
) -> LayerRow:
    """A polynomial fixed by its degree: no hyper-parameters."""
    return LayerRow(
        message=message,
        role=Role.NONLINEAR,
        build=lambda layer: elementwise(lambda hp: polynomial_moments(coefficients(layer.degree))),
        required=("degree",),
        check=check_degree,
    )


MONOMIAL = _fixed_row(pb.Monomial, monomial_coefficients)
HERMITE = _fixed_row(pb.Hermite, hermite_coefficients)
