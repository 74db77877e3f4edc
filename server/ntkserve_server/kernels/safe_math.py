"""Square root and arctan2 whose *derivatives* are guarded where they are singular.

Forward values are exactly `sqrt(max(x, 0))` and `arctan2(y, x)`: nothing is clipped or
offset (neural-tangents' issue #123 came from a guard that also moved the forward value).
Where the derivative does not exist (sqrt at 0, arctan2 at the origin) the tangent is 0,
JAX's convention for a subgradient, so gradients at all-zero inputs, zero rows and
parallel rows are finite.
"""

from __future__ import annotations

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


@jax.custom_jvp
def arctan2(y: Array, x: Array) -> Array:
    return jnp.arctan2(y, x)


@arctan2.defjvp
def _arctan2_jvp(
    primals: tuple[Array, Array], tangents: tuple[Array, Array]
) -> tuple[Array, Array]:
    (y, x), (dy, dx) = primals, tangents
    r2 = x * x + y * y
    nonzero = r2 >= np.finfo(r2.dtype).tiny  # normal numbers only (see sqrt's rule)
    slope = jnp.where(nonzero, 1 / jnp.where(nonzero, r2, 1), 0)
    return jnp.arctan2(y, x), (x * dy - y * dx) * slope
