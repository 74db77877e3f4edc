"""`Kernel`: the state every layer rule maps to a new state (NT's `Kernel`, pared down).

A rule is a function Kernel -> Kernel (the contract of jax's `example_libraries/stax`).
Arrays are traced; `width`, `is_gaussian` and `symmetric` are static, decided when the
network is compiled.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
from jax import Array, lax


@dataclasses.dataclass(frozen=True)
class Kernel:
    """Second moments of one layer's outputs over the inputs x1 (N1 rows) and x2 (N2 rows).

    nngp:  (N1, N2) covariance E[f(x1) f(x2)] per unit of width.
    cov1:  (N1,) variances E[f(x1)^2]; cov2: (N2,). Both None when x2 is x1: then the
           variances are nngp's diagonal, read from it so they agree with it exactly.
    ntk:   (N1, N2) neural tangent kernel, or None when it was not asked for.
    width: the layer's finite output width (the standard parameterization needs it).
    is_gaussian: the outputs are Gaussian (an affine layer came last), so a
      nonlinearity's expectation can be taken in closed form.
    symmetric: x2 is x1, so nngp's diagonal is cov1, exactly.
    """

    nngp: Array
    cov1: Array | None
    cov2: Array | None
    ntk: Array | None
    width: int
    is_gaussian: bool
    symmetric: bool

    def replace(self, **changes: object) -> Kernel:
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]

    @property
    def var1(self) -> Array:
        """Variances of the x1 rows."""
        return jnp.diagonal(self.nngp) if self.cov1 is None else self.cov1

    @property
    def var2(self) -> Array:
        """Variances of the x2 rows."""
        return jnp.diagonal(self.nngp) if self.cov2 is None else self.cov2


jax.tree_util.register_dataclass(
    Kernel,
    data_fields=["nngp", "cov1", "cov2", "ntk"],
    meta_fields=["width", "is_gaussian", "symmetric"],
)


def _gram(a: Array, b: Array) -> Array:
    """a @ b.T at full precision (no TF32 on GPUs: the CPU and GPU agree)."""
    return jnp.matmul(a, b.T, precision=lax.Precision.HIGHEST)


def input_kernel(x1: Array, x2: Array | None, with_ntk: bool) -> Kernel:
    """The kernel of the inputs themselves: inner products over features / feature count."""
    width = x1.shape[-1]
    # Multiply by the reciprocal, never divide by a constant: XLA rewrites x / c into
    # x * (1 / c) in some programs and not others, and eager, jitted and differentiated
    # calls must return the same bits.
    scale = 1.0 / width
    if x2 is None:
        nngp = _gram(x1, x1) * scale
        cov1 = cov2 = None
    else:
        nngp = _gram(x1, x2) * scale
        cov1 = jnp.sum(x1 * x1, axis=-1) * scale
        cov2 = jnp.sum(x2 * x2, axis=-1) * scale
    return Kernel(
        nngp=nngp,
        cov1=cov1,
        cov2=cov2,
        ntk=jnp.zeros_like(nngp) if with_ntk else None,
        width=width,
        is_gaussian=False,
        symmetric=x2 is None,
    )
