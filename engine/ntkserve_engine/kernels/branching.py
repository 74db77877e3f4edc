"""The kernel math of branches: FanOut, FanInSum, FanInProd, FanInConcat.

Branches come from the same inputs through independent weights; a branch ending in an
affine layer is a centred Gaussian independent of the others, so (Novak et al. 2019, App. C;
neural-tangents' stax.FanIn*):
    sum:     nngp = sum_i nngp_i,  ntk = sum_i ntk_i                 (branches Gaussian)
    product: nngp = prod_i nngp_i, ntk = sum_i ntk_i prod_{j != i} nngp_j
    concat:  the width-weighted mean of the branches (channels side by side).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence

import jax.numpy as jnp
from jax import Array

from ntkserve_engine.kernels.errors import InputError
from ntkserve_engine.kernels.kernel import Kernel


def _fields(ks: Sequence[Kernel], name: str) -> list[Array] | None:
    values = [getattr(k, name) for k in ks]
    return None if any(v is None for v in values) else values


def _joined_keep(ks: Sequence[Kernel]) -> dict[str, Array | None]:
    """With masked inputs: a position is present where any branch has it present."""
    joined: dict[str, Array | None] = {}
    for name in ("keep1", "keep2"):
        values = _fields(ks, name)
        joined[name] = None if values is None else functools.reduce(jnp.maximum, values)
    return joined


def fan_in_sum(ks: Sequence[Kernel], path: str) -> Kernel:
    widths = {k.width for k in ks}
    if len(widths) > 1:
        raise InputError(
            "x1.shape", f"{path}: branches of widths {sorted(widths)} cannot be summed"
        )
    summed = {
        n: None if (v := _fields(ks, n)) is None else sum(v[1:], v[0])
        for n in ("nngp", "cov1", "cov2", "ntk")
    }
    return ks[0].replace(**summed, **_joined_keep(ks), is_gaussian=True)


def fan_in_prod(ks: Sequence[Kernel], path: str) -> Kernel:
    products = {
        n: None if (v := _fields(ks, n)) is None else math.prod(v[1:], start=v[0])
        for n in ("nngp", "cov1", "cov2")
    }
    ntks = _fields(ks, "ntk")
    ntk = None
    if ntks is not None:
        nngps = [k.nngp for k in ks]
        for i, t in enumerate(ntks):
            term = math.prod((g for j, g in enumerate(nngps) if j != i), start=t)
            ntk = term if ntk is None else ntk + term
    return ks[0].replace(
        **products,
        **_joined_keep(ks),
        ntk=ntk,
        is_gaussian=len(ks) == 1 and ks[0].is_gaussian,
    )


def fan_in_concat(ks: Sequence[Kernel], path: str) -> Kernel:
    total = sum(k.width for k in ks)

    def mean(name: str) -> Array | None:
        values = _fields(ks, name)
        if values is None:
            return None
        weighted = [v * (k.width / total) for v, k in zip(values, ks, strict=True)]
        return sum(weighted[1:], weighted[0])

    return ks[0].replace(
        nngp=mean("nngp"),
        cov1=mean("cov1"),
        cov2=mean("cov2"),
        ntk=mean("ntk"),
        width=total,
        is_gaussian=False,
        **_joined_keep(ks),
    )
