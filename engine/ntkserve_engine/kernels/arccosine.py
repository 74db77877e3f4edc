"""Arc-cosine kernels of higher degree: RectifiedMonomial(degree) and Sign.

RectifiedMonomial(n) = (x >= 0) x^n (Cho & Saul 2009, "Kernel methods for deep learning").
With rho = q12 / sqrt(q11 q22), s = sqrt(1 - rho^2) and phi = pi - arccos(rho) in [0, pi],
    E[phi_n(u) phi_n(v)] = (q11 q22)^(n/2) F_n(rho),  F_n = (P_n(rho) s + Q_n(rho) phi) / (2 pi)
with polynomials P_n, Q_n (Cho & Saul's J_n(theta) = P_n s + Q_n phi). They are derived here
exactly, in rationals, from Price's theorem dF_n/drho = n^2 F_(n-1) with F_n(-1) = 0 for
n >= 1 and F_0 = phi / (2 pi): every antiderivative needed is of rho^k phi or rho^k s, and
    int rho^k / s = -rho^(k-1) s / k + (k-1)/k int rho^(k-2) / s,   int 1/s = phi,  int rho/s = -s
all vanish at rho = -1 (s = phi = 0). Multiplied out, (q11 q22)^(n/2) rho^k s and
(q11 q22)^(n/2) rho^k phi are monomials in q12, q11 q22 and sqrt(q11 q22 - q12^2): no
division, so zero-variance inputs are no special case. tdot is n^2 times the degree n-1
kernel (Price again); degree 0 (a step) has tdot 0, as in neural-tangents. The angle is
arctan2(sqrt(det), q12) and its square root guards only derivatives (safe_math); the
diagonal is exact: (2n - 1)!! q^n / 2 (neural-tangents' RectifiedMonomial is NaN there).
Degree 0 is the step (x >= 0): an input of zero variance is exactly 0, where the step is 1.

Sign(x): E[sign(u) sign(v)] = (2 / pi) arcsin(rho), taken as (2/pi) arctan2(q12, sqrt(det)),
which is 0 when either input has zero variance (sign(0) = 0); tdot = 0 (the derivative is
0 almost everywhere), as in neural-tangents.
"""

from __future__ import annotations

import functools
import math
from fractions import Fraction

import jax.numpy as jnp
from jax import Array
from ntkserve.v1 import architecture_pb2 as pb

from ntkserve_engine.kernels import safe_math
from ntkserve_engine.kernels.elementwise import DiagMoments, PairMoments, elementwise
from ntkserve_engine.kernels.polynomial import check_degree
from ntkserve_engine.kernels.rows import LayerRow, Role

Poly = dict[int, Fraction]  # power of rho -> coefficient
Form = tuple[Poly, Poly]  # (P, Q): P(rho) s + Q(rho) phi


def _add(into: Poly, poly: Poly, scale: Fraction) -> None:
    for k, c in poly.items():
        into[k] = into.get(k, Fraction(0)) + scale * c


@functools.cache
def _inverse_root_integral(k: int) -> Form:
    """int rho^k / s drho, as P s + Q phi vanishing at rho = -1."""
    if k == 0:
        return {}, {0: Fraction(1)}
    if k == 1:
        return {0: Fraction(-1)}, {}
    p, q = (dict(part) for part in _inverse_root_integral(k - 2))
    scale = Fraction(k - 1, k)
    p = {i: c * scale for i, c in p.items()}
    q = {i: c * scale for i, c in q.items()}
    _add(p, {k - 1: Fraction(-1, k)}, Fraction(1))
    return p, q


@functools.cache
def arc_cosine_form(n: int) -> Form:
    """(P_n, Q_n) with 2 pi F_n = P_n(rho) s + Q_n(rho) phi."""
    if n == 0:
        return {}, {0: Fraction(1)}
    prev_p, prev_q = arc_cosine_form(n - 1)
    p: Poly = {}
    q: Poly = {}
    for k, c in prev_p.items():  # rho^k s = rho^k / s - rho^(k+2) / s
        for j, sign in ((k, 1), (k + 2, -1)):
            ip, iq = _inverse_root_integral(j)
            _add(p, ip, c * sign)
            _add(q, iq, c * sign)
    for k, c in prev_q.items():  # by parts: rho^(k+1) phi / (k+1) - int rho^(k+1) / s / (k+1)
        _add(q, {k + 1: Fraction(1, k + 1)}, c)
        ip, iq = _inverse_root_integral(k + 1)
        _add(p, ip, -c / (k + 1))
        _add(q, iq, -c / (k + 1))
    scale = Fraction(n * n)
    return (
        {k: c * scale for k, c in p.items() if c},
        {k: c * scale for k, c in q.items() if c},
    )


def _homogeneous(n: int, q12: Array, prod: Array, root: Array, phi: Array) -> Array:
    """2 pi (q11 q22)^(n/2) F_n(rho) as a polynomial in q12, q11 q22, sqrt(det) and phi."""
    p, q = arc_cosine_form(n)
    total = jnp.zeros_like(q12)
    for k, c in p.items():  # (q11 q22)^(n/2) rho^k s = q12^k root (q11 q22)^((n-1-k)/2)
        assert (n - 1 - k) % 2 == 0 and k <= n - 1
        total = total + float(c) * q12**k * prod ** ((n - 1 - k) // 2) * root
    for k, c in q.items():
        assert (n - k) % 2 == 0 and k <= n
        total = total + float(c) * q12**k * prod ** ((n - k) // 2) * phi
    return total


def rectified_monomial_moments(n: int) -> tuple[PairMoments, DiagMoments]:
    inv_2pi = 0.5 / math.pi
    variance = float(math.prod(range(2 * n - 1, 0, -2))) * 0.5  # (2n - 1)!! / 2
    slope_variance = float(n * n * math.prod(range(2 * n - 3, 0, -2))) * 0.5

    def pair(q11: Array, q22: Array, q12: Array, want_tdot: bool) -> tuple[Array, Array | None]:
        prod = q11 * q22
        root = safe_math.sqrt(prod - q12 * q12)
        phi = math.pi - safe_math.arctan2(root, q12)
        nngp = _homogeneous(n, q12, prod, root, phi) * inv_2pi
        if n == 0:  # step(0) = 1: two zero-variance inputs are both exactly 0, so 1
            nngp = jnp.where((q11 == 0) & (q22 == 0), 1.0, nngp)
        if not want_tdot:
            return nngp, None
        if n == 0:
            return nngp, jnp.zeros_like(nngp)
        return nngp, float(n * n) * _homogeneous(n - 1, q12, prod, root, phi) * inv_2pi

    def diag(q: Array, want_tdot: bool) -> tuple[Array, Array | None]:
        var = variance * q**n if n else jnp.where(q == 0, 1.0, variance).astype(q.dtype)
        if not want_tdot:
            return var, None
        return var, (slope_variance * q ** (n - 1)) if n else jnp.zeros_like(q)

    return pair, diag


def sign_moments() -> tuple[PairMoments, DiagMoments]:
    two_over_pi = 2 / math.pi

    def pair(q11: Array, q22: Array, q12: Array, want_tdot: bool) -> tuple[Array, Array | None]:
        root = safe_math.sqrt(q11 * q22 - q12 * q12)
        nngp = two_over_pi * safe_math.arctan2(q12, root)
        return nngp, jnp.zeros_like(nngp) if want_tdot else None

    def diag(q: Array, want_tdot: bool) -> tuple[Array, Array | None]:
        var = jnp.where(q > 0, 1.0, 0.0).astype(q.dtype)
        return var, jnp.zeros_like(q) if want_tdot else None

    return pair, diag


RECTIFIED_MONOMIAL = LayerRow(
    message=pb.RectifiedMonomial,
    role=Role.NONLINEAR,
    build=lambda layer: elementwise(lambda hp: rectified_monomial_moments(layer.degree)),
    required=("degree",),
    check=check_degree,
)
SIGN = LayerRow(
    message=pb.Sign, role=Role.NONLINEAR, build=lambda layer: elementwise(lambda hp: sign_moments())
)
