"""The one rule behind every elementwise nonlinearity phi.

For Gaussian pre-activations (u, v) with covariance [[q11, q12], [q12, q22]], a family
supplies closed forms of
    nngp' = E[phi(u) phi(v)]     and     tdot = E[phi'(u) phi'(v)],
and the NTK follows as ntk' = ntk * tdot (Jacot et al. 2018; Lee et al. 2019, App. C).
`Moments` also gives both where u = v (an example with itself at one position), where
they are simpler and exact: those entries are set from them, so they never carry the
sqrt(eps) error that round-off in q11 q22 - q12^2 would put into an angle.
"""

from __future__ import annotations

from collections.abc import Callable

import jax.numpy as jnp
from jax import Array

from ntkserve_engine.kernels.kernel import (
    Kernel,
    as_cols,
    as_rows,
    diagonal_index,
    materialized,
)
from ntkserve_engine.kernels.rows import Hyper, Rule

# (q11, q22, q12, want_tdot) -> (nngp', tdot or None)
PairMoments = Callable[[Array, Array, Array, bool], tuple[Array, Array | None]]
# (q, want_tdot) -> (variance', tdot where u = v, or None)
DiagMoments = Callable[[Array, bool], tuple[Array, Array | None]]
Moments = Callable[[Hyper], tuple[PairMoments, DiagMoments]]


def diagonal_of(pair: PairMoments) -> DiagMoments:
    """The moments where u = v, for families whose pair formula has no singularity there."""

    def diag(q: Array, want_tdot: bool) -> tuple[Array, Array | None]:
        return pair(q, q, q, want_tdot)

    return diag


def elementwise(moments: Moments) -> Rule:
    """Builds the (Kernel, Hyper) -> Kernel rule of a nonlinearity from its Gaussian moments."""

    def rule(k: Kernel, hp: Hyper) -> Kernel:
        pair, diag = moments(hp)
        want_tdot = k.ntk is not None
        d, position_pairs = len(k.spatial), k.position_pairs
        var1, var2 = k.var1, k.var2
        nngp, tdot = pair(
            as_rows(var1, d, position_pairs, True),
            as_cols(var2, d, position_pairs, True),
            k.nngp,
            want_tdot,
        )
        cov1 = cov2 = None
        if k.symmetric:
            index = diagonal_index(nngp.shape[0], k.spatial, position_pairs, True)
            var, tdot_diag = diag(var1, want_tdot)
            nngp = nngp.at[index].set(var)
            if tdot is not None:
                tdot = jnp.broadcast_to(tdot, nngp.shape).at[index].set(tdot_diag)
        else:  # stored, as the symmetric case's diagonal write does (`materialized`)
            nngp = materialized(nngp)
            cov1 = materialized(_self_block(pair, diag, k.cov1, var1, k))
            cov2 = materialized(_self_block(pair, diag, k.cov2, var2, k))
        ntk = None
        if k.ntk is not None:
            assert tdot is not None  # asked for whenever the NTK is tracked
            ntk = k.ntk * tdot if k.symmetric else materialized(k.ntk * tdot)
        return k.replace(nngp=nngp, cov1=cov1, cov2=cov2, ntk=ntk, is_gaussian=False)

    return rule


def _self_block(
    pair: PairMoments, diag: DiagMoments, cov: Array | None, var: Array, k: Kernel
) -> Array:
    """The update of an example's covariance with itself (across positions with position pairs)."""
    assert cov is not None
    if not k.position_pairs:
        return diag(var, False)[0]
    d = len(k.spatial)
    block = pair(as_rows(var, d, True, False), as_cols(var, d, True, False), cov, False)[0]
    return block.at[diagonal_index(cov.shape[0], k.spatial, True, False)].set(diag(var, False)[0])
