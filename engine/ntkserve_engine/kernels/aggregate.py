"""Aggregate: the message passing of graph networks, over a pattern sent with the inputs.

neural-tangents' `stax.Aggregate` (Du et al. 2019, "Graph neural tangent kernel"): with the
positions of (N, *S, C) inputs as a graph's nodes and pattern[n] (|S| x |S|, any real
weights) the adjacency of example n's graph, the layer computes y[n, s] = sum_t
pattern[n, s, t] x[n, t], linear in x and with no weights of its own, so
    K'(x1 s, x2 v) = sum_{t, u} P1[s, t] K(x1 t, x2 u) P2[v, u],     NTK likewise,
over the covariance of every pair of positions (the row asks for position pairs). Each
example brings its own graph: the patterns travel with the inputs as request tensors
(`pattern1` for x1, `pattern2` for x2), shaped (N, *S, *S) with S the positions the layer
sees. Every Aggregate layer of a network uses the same patterns, as in neural-tangents.
"""

from __future__ import annotations

import math

import jax.numpy as jnp
from jax import Array, lax
from ntkserve.v1 import architecture_pb2 as pb

from ntkserve_engine.kernels.errors import InputError
from ntkserve_engine.kernels.kernel import Kernel
from ntkserve_engine.kernels.rows import Hyper, LayerRow, Role, Rule, Spatial
from ntkserve_engine.kernels.windows import ShapeProblem


def _flat(pattern: Array, spatial: Spatial, name: str) -> Array:
    if tuple(pattern.shape[1:]) != spatial * 2:
        raise InputError(
            f"{name}.shape",
            f"an Aggregate layer sees positions {list(spatial)}, so the pattern must be "
            f"(N, *{list(spatial)}, *{list(spatial)}); got {list(pattern.shape)}",
        )
    size = math.prod(spatial)
    return pattern.reshape(pattern.shape[0], size, size)


def aggregate_rule(layer: pb.Aggregate) -> Rule:
    def rule(k: Kernel, hp: Hyper) -> Kernel:
        if k.pattern1 is None:
            raise InputError(
                "pattern1",
                "is required: the network has an Aggregate layer, which needs each "
                "example's graph, (N, *spatial, *spatial)",
            )
        size = math.prod(k.spatial)
        p1 = _flat(k.pattern1, k.spatial, "pattern1")
        p2 = p1 if k.pattern2 is None else _flat(k.pattern2, k.spatial, "pattern2")
        highest = lax.Precision.HIGHEST

        def pair(a: Array) -> Array:
            flat = a.reshape(a.shape[0], a.shape[1], size, size)
            out = jnp.einsum("nst,nmtu,mvu->nmsv", p1, flat, p2, precision=highest)
            return out.reshape(a.shape)

        def self_block(a: Array | None, p: Array) -> Array | None:
            if a is None:
                return None
            flat = a.reshape(a.shape[0], size, size)
            return jnp.einsum("nst,ntu,nvu->nsv", p, flat, p, precision=highest).reshape(a.shape)

        return k.replace(
            nngp=pair(k.nngp),
            cov1=self_block(k.cov1, p1),
            cov2=self_block(k.cov2, p2),
            ntk=None if k.ntk is None else pair(k.ntk),
        )

    return rule


def _needs_positions(layer: pb.Aggregate, spatial: Spatial) -> Spatial:
    if not spatial:
        raise ShapeProblem("needs inputs with positions (graph nodes): (N, *spatial, C)")
    return spatial


AGGREGATE = LayerRow(
    message=pb.Aggregate,
    role=Role.LINEAR,
    build=aggregate_rule,
    needs_position_pairs=True,
    out_spatial=_needs_positions,
)
