"""The one rule behind every elementwise nonlinearity phi.

For Gaussian pre-activations (u, v) with covariance [[q11, q12], [q12, q22]], a family
supplies closed forms of
    nngp' = E[phi(u) phi(v)]     and     tdot = E[phi'(u) phi'(v)],
and the NTK follows as ntk' = ntk * tdot (Jacot et al. 2018; Lee et al. 2019, App. C).
`Moments` also gives both on the diagonal (u = v), where they are simpler and exact:
with x2 = x1 the diagonal is set from them, so it never carries the sqrt(eps) error that
round-off in q11 q22 - q12^2 would put into an angle.
"""

from __future__ import annotations

from collections.abc import Callable

import jax.numpy as jnp
from jax import Array

from ntkserve_server.kernels.kernel import Kernel
from ntkserve_server.kernels.rows import Hyper, Rule

# (q11, q22, q12, want_tdot) -> (nngp', tdot or None)
PairMoments = Callable[[Array, Array, Array, bool], tuple[Array, Array | None]]
# (q, want_tdot) -> (variance', tdot on the diagonal or None)
DiagMoments = Callable[[Array, bool], tuple[Array, Array | None]]
Moments = Callable[[Hyper], tuple[PairMoments, DiagMoments]]


def elementwise(moments: Moments) -> Rule:
    """Builds the Kernel -> Kernel rule of a nonlinearity from its Gaussian moments."""

    def rule(k: Kernel, hp: Hyper) -> Kernel:
        pair, diag = moments(hp)
        want_tdot = k.ntk is not None
        nngp, tdot = pair(k.var1[:, None], k.var2[None, :], k.nngp, want_tdot)
        cov1 = cov2 = None
        if k.symmetric:
            index = jnp.diag_indices(nngp.shape[0])
            var, tdot_diag = diag(k.var1, want_tdot)
            nngp = nngp.at[index].set(var)
            if tdot is not None:
                tdot = jnp.broadcast_to(tdot, nngp.shape).at[index].set(tdot_diag)
        else:
            cov1 = diag(k.var1, False)[0]
            cov2 = diag(k.var2, False)[0]
        ntk = None
        if k.ntk is not None:
            assert tdot is not None  # asked for whenever the NTK is tracked
            ntk = k.ntk * tdot
        return k.replace(nngp=nngp, cov1=cov1, cov2=cov2, ntk=ntk, is_gaussian=False)

    return rule
