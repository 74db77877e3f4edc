"""Square root and arctan2 whose *derivatives* are guarded where they are singular.

Forward values are `sqrt(max(x, 0))` and `arctan2(y, x)`, each to rounding: nothing is clipped
or offset (neural-tangents' issue #123 came from a guard that also moved the forward value).
Where the derivative does not exist (sqrt at 0, arctan2 at the origin) the tangent is 0,
JAX's convention for a subgradient, so gradients at all-zero inputs, zero rows and
parallel rows are finite.

arctan2 is computed from +, *, one division and selects (a polynomial for atan after the
usual reductions), not by `jnp.arctan2`, which XLA-CPU evaluates one element at a time
(~0.1 G entries/s); this vectorises (0.6-2 G/s in float32, memory-bound in float64). Its
error is below 1.5 units in the last place in either precision (jnp.arctan2: 1.4 in float32,
0.5 in float64), with IEEE's signed zeros and infinities: atan2(+-0, -0) = +-pi, as before.
"""

from __future__ import annotations

from decimal import Decimal, localcontext

import jax
import jax.numpy as jnp
import numpy as np
from jax import Array


@jax.custom_jvp
def sqrt(x: Array) -> Array:
    """sqrt(max(x, 0)); the clamp only removes round-off below 0 (x is a determinant)."""
    return jnp.sqrt(jnp.maximum(x, 0))


@sqrt.defjvp
def _sqrt_jvp(primals: tuple[Array], tangents: tuple[Array]) -> tuple[Array, Array]:
    (x,), (dx,) = primals, tangents
    y = sqrt(x)
    # Decide on y, not x: XLA-CPU flushes subnormals to zero, so a subnormal x > 0 can
    # have sqrt(x) == 0 inside a compiled program, and dx / 0 would poison the gradient.
    positive = y > 0
    return y, jnp.where(positive, dx / (2 * jnp.where(positive, y, 1)), 0)


def _multiples_of_quarter_pi(dtype: type) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """k pi / 4 for k = 0..4 as a rounded head and the rest (hi_k + lo_k = k pi / 4)."""
    with localcontext() as ctx:
        ctx.prec = 50
        pi = Decimal("3.14159265358979323846264338327950288419716939937510582097494459")
        exact = [k * pi / 4 for k in range(5)]
        hi = [dtype(float(v)) for v in exact]
        lo = [dtype(float(v - Decimal(float(h)))) for v, h in zip(exact, hi, strict=True)]
    return tuple(float(h) for h in hi), tuple(float(v) for v in lo)


_QUARTER_PI = {
    np.dtype(np.float32): _multiples_of_quarter_pi(np.float32),
    np.dtype(np.float64): _multiples_of_quarter_pi(np.float64),
}
# atan(u) = u + u z P(z), z = u^2, |u| <= 0.66: Chebyshev-economised Taylor series (exact
# rational arithmetic), relative error 6e-9 (float32) and 1e-17 (float64) before rounding;
# evaluated in either precision, below 0.8 units in the last place.
_P = {
    np.dtype(np.float32): (
        0.015195311638363776,
        -0.043902597635071504,
        0.0697461973749487,
        -0.08957281816449313,
        0.11097158059236677,
        -0.14284985700556446,
        0.19999985344373028,
        -0.33333333284613614,
    ),
    np.dtype(np.float64): (
        0.001071373164779258,
        -0.005334881433297677,
        0.01321414800067994,
        -0.022319092154313082,
        0.029973834646533273,
        -0.03544741882779642,
        0.039565183048028106,
        -0.04338627225849233,
        0.0476040951253884,
        -0.0526297324497892,
        0.058823359156255,
        -0.06666665524056262,
        0.07692307638524717,
        -0.0909090908922822,
        0.11111111111079071,
        -0.14285714285713963,
        0.19999999999999998,
        -0.3333333333333333,
    ),
}


def _horner(z: Array, coefficients: tuple[float, ...]) -> Array:
    acc = jnp.full_like(z, coefficients[0])
    for c in coefficients[1:]:
        acc = acc * z + c
    return acc


def _atan2(y: Array, x: Array) -> Array:
    """atan2(y, x) = k pi / 4 +- atan(u) with |u| <= 0.66; the sign follows y's sign bit.
    One division and no transcendental call, so XLA fuses it into few passes."""
    dtype = np.dtype(y.dtype)
    ax, ay = jnp.abs(x), jnp.abs(y)
    small, large = jnp.minimum(ax, ay), jnp.maximum(ax, ay)
    both_infinite = jnp.isinf(small)  # atan2(+-inf, +-inf): the angle of (1, 1)
    small = jnp.where(both_infinite, 1, small)
    large = jnp.where(both_infinite, 1, large)
    # atan(small / large) in [0, pi / 4]; above 0.66 it is pi / 4 + atan(u) with
    # u = (small - large) / (small + large) in (-0.21, 0], small - large exact (Sterbenz)
    reduce = small > 0.66 * large
    numerator = jnp.where(reduce, small - large, small)
    denominator = jnp.where(reduce, small + large, large)
    u = numerator / jnp.where(denominator > 0, denominator, 1)
    z = u * u
    atan_u = u + u * (z * _horner(z, _P[dtype]))
    swap = ay > ax  # atan(ay / ax) = pi / 2 - atan(small / large)
    negative_x = jnp.signbit(x)  # angle = pi - angle
    k = reduce.astype(jnp.int32)
    k = jnp.where(swap, 2 - k, k)
    k = jnp.where(negative_x, 4 - k, k)
    hi, lo = _QUARTER_PI[dtype]
    head = jnp.zeros_like(u)
    tail = jnp.zeros_like(u)
    for i in range(1, 5):
        head = jnp.where(k == i, hi[i], head)
        tail = jnp.where(k == i, lo[i], tail)
    angle = head + (tail + jnp.where(swap ^ negative_x, -atan_u, atan_u))
    return jnp.where(jnp.signbit(y), -angle, angle)


@jax.custom_jvp
def arctan2(y: Array, x: Array) -> Array:
    return _atan2(y, x)


@arctan2.defjvp
def _arctan2_jvp(
    primals: tuple[Array, Array], tangents: tuple[Array, Array]
) -> tuple[Array, Array]:
    (y, x), (dy, dx) = primals, tangents
    r2 = x * x + y * y
    nonzero = r2 >= np.finfo(r2.dtype).tiny  # normal numbers only (see sqrt's rule)
    slope = jnp.where(nonzero, 1 / jnp.where(nonzero, r2, 1), 0)
    return arctan2(y, x), (x * dy - y * dx) * slope  # itself: higher orders use this rule
