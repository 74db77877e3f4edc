"""Compiles a canonical architecture tree into one function: folds over layers and branches.

A `Node` is what a layer becomes: `apply(state, params)` (state: a Kernel, or a tuple of
Kernels between FanOut and a FanIn), its hyper-parameters, the positions it leaves
(`spatial`), and whether it pools over positions. `serial` is a fold, `parallel` a map over
branches, `repeat` a `lax.scan` when the layer maps the kernel's structure to itself.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

import jax
from jax import lax
from ntkserve.v1 import architecture_pb2 as pb

from ntkserve_engine.kernels import branching, masking
from ntkserve_engine.kernels.kernel import Kernel
from ntkserve_engine.kernels.rows import Role, Spatial, Violations
from ntkserve_engine.kernels.table import LAYERS
from ntkserve_engine.kernels.windows import ShapeProblem

State = Any  # Kernel | tuple[Kernel, ...]
Shapes = Any  # Spatial | tuple[Spatial, ...]

# Bounds that keep one registration from taking the server's memory or time (a FanOut of
# 2**32 branches, a million layers traced one by one); far beyond any network in the
# literature. Checked by `canonical.canonicalize`.
MAX_BRANCHES = 256
MAX_REPEAT = 10_000
MAX_LAYERS = 10_000


@dataclasses.dataclass(frozen=True)
class Node:
    apply: Callable[[State, Any], State]
    params: Any
    spatial: Callable[[Shapes], Shapes]
    pools: bool
    # `params` with each float replaced by its path in the architecture (same tree structure),
    # e.g. "architecture.layers[0].dense.w_std": how gradients are named on the wire.
    names: Any = dataclasses.field(default_factory=dict)


def _same(shapes: Shapes, path: str, what: str) -> Spatial:
    if not isinstance(shapes, tuple) or not shapes or not isinstance(shapes[0], tuple):
        raise ShapeProblem(f"{path}: {what} needs branches (FanOut first)")
    if len(set(shapes)) > 1:
        raise ShapeProblem(f"{path}: branches with positions {list(shapes)} cannot be joined")
    return tuple(shapes[0])


def build_sequence(layers: Sequence[pb.Layer], path: str) -> Node:
    nodes = [build(layer, f"{path}[{i}]") for i, layer in enumerate(layers)]

    def apply(state: State, params: Any) -> State:
        for node, p in zip(nodes, params, strict=True):
            state = node.apply(state, p)
        return state

    def spatial(shapes: Shapes) -> Shapes:
        for node in nodes:
            shapes = node.spatial(shapes)
        return shapes

    return Node(
        apply,
        tuple(n.params for n in nodes),
        spatial,
        any(n.pools for n in nodes),
        tuple(n.names for n in nodes),
    )


def _leaf_names(values: dict[str, Any], here: str) -> dict[str, Any]:
    return {
        name: tuple(f"{here}.{name}[{i}]" for i in range(len(v)))
        if isinstance(v, tuple)
        else f"{here}.{name}"
        for name, v in values.items()
    }


def build(layer: pb.Layer, path: str) -> Node:
    kind = str(layer.WhichOneof("layer"))
    message = getattr(layer, kind)
    here = f"{path}.{kind}"
    if kind in LAYERS:
        row = LAYERS[kind]
        rule = row.build(message)

        def leaf_spatial(shapes: Shapes) -> Shapes:
            try:
                return row.out_spatial(message, shapes)
            except ShapeProblem as e:
                raise ShapeProblem(f"{here}: {e}") from None

        def leaf_apply(state: State, params: Any) -> State:
            out = rule(state, params)
            if isinstance(state, Kernel) and state.keep1 is not None:
                out = masking.carry(row.keep_after, message, state, out, here)
            return out

        values = row.hyper_values(message)
        return Node(
            leaf_apply, values, leaf_spatial, row.needs_full_spatial, _leaf_names(values, here)
        )
    if kind == "serial":
        return build_sequence(message.layers, f"{here}.layers")
    if kind == "parallel":
        return _parallel(
            [build(b, f"{here}.branches[{i}]") for i, b in enumerate(message.branches)]
        )
    if kind == "repeat":
        return _repeat(build(message.layer, f"{here}.layer"), message.n)
    if kind == "identity":
        return Node(lambda s, p: s, {}, lambda s: s, False)
    if kind == "fan_out":
        n = message.num
        return Node(lambda s, p: (s,) * n, {}, lambda s: (s,) * n, False)
    join = {
        "fan_in_sum": branching.fan_in_sum,
        "fan_in_prod": branching.fan_in_prod,
        "fan_in_concat": branching.fan_in_concat,
    }[kind]
    return Node(lambda s, p: join(s, here), {}, lambda s: _same(s, here, kind), False)


def _parallel(branches: list[Node]) -> Node:
    def apply(state: State, params: Any) -> State:
        return tuple(b.apply(s, p) for b, s, p in zip(branches, state, params, strict=True))

    def spatial(shapes: Shapes) -> Shapes:
        return tuple(b.spatial(s) for b, s in zip(branches, shapes, strict=True))

    return Node(
        apply,
        tuple(b.params for b in branches),
        spatial,
        any(b.pools for b in branches),
        tuple(b.names for b in branches),
    )


def _repeat(inner: Node, n: int) -> Node:
    def apply(state: State, params: Any) -> State:
        state = inner.apply(state, params)
        remaining = n - 1
        if remaining == 0:
            return state
        after = jax.eval_shape(lambda s: inner.apply(s, params), state)
        same_structure = str(jax.tree.structure(after)) == str(jax.tree.structure(state))
        if same_structure and all(
            a.shape == b.shape and a.dtype == b.dtype
            for a, b in zip(jax.tree.leaves(after), jax.tree.leaves(state), strict=True)
        ):
            state, _ = lax.scan(lambda s, _: (inner.apply(s, params), None), state, None, remaining)
            return state
        for _ in range(remaining):  # the layer changes shapes: unrolled
            state = inner.apply(state, params)
        return state

    def spatial(shapes: Shapes) -> Shapes:
        for _ in range(n):
            shapes = inner.spatial(shapes)
        return shapes

    return Node(apply, inner.params, spatial, inner.pools, inner.names)


# -- the static walk: branch counts and Gaussian inputs, before anything is compiled ------

Abstract = bool | tuple[bool, ...]  # is_gaussian of one kernel, or of each branch


def check_tree(layers: Sequence[tuple[str, pb.Layer]], violations: Violations) -> None:
    """Branch counts and Gaussian inputs; `layers` are the top-level (path, layer) pairs."""
    state: Abstract = False  # the inputs are data, not Gaussian pre-activations
    for path, layer in layers:
        state = _walk(layer, path, state, violations)
    if isinstance(state, tuple):
        violations.append(
            (
                "architecture.layers",
                f"the network ends with {len(state)} branches: join them "
                "with FanInSum, FanInProd or FanInConcat",
            )
        )


def _walk_sequence(
    layers: Sequence[pb.Layer], path: str, state: Abstract, v: Violations
) -> Abstract:
    for i, layer in enumerate(layers):
        state = _walk(layer, f"{path}[{i}]", state, v)
    return state


def _walk(layer: pb.Layer, path: str, state: Abstract, v: Violations) -> Abstract:
    if layer.WhichOneof("layer") is None:
        return state  # reported by canonicalize
    kind = str(layer.WhichOneof("layer"))
    message = getattr(layer, kind)
    here = f"{path}.{kind}"
    if kind == "serial":
        return _walk_sequence(message.layers, f"{here}.layers", state, v)
    if kind == "identity":
        return state
    if kind == "repeat":
        for _ in range(min(message.n, 2)):  # twice finds what only a second pass breaks
            state = _walk(message.layer, f"{here}.layer", state, v)
        return state
    if kind == "fan_out":
        if isinstance(state, tuple):
            v.append((here, "needs one input, but there are branches: join them first"))
            return state
        # Past the bound, canonicalize reports it: the walk goes on without allocating them all.
        return (bool(state),) * min(int(message.num), MAX_BRANCHES)
    if kind in ("parallel", "fan_in_sum", "fan_in_prod", "fan_in_concat"):
        if not isinstance(state, tuple):
            v.append((here, "needs branches as input: put FanOut before it"))
            state = (state,)
        if kind == "parallel":
            if len(state) != len(message.branches):
                v.append((here, f"has {len(message.branches)} branches but receives {len(state)}"))
            outs = [
                _walk(b, f"{here}.branches[{i}]", g, v)
                for i, (b, g) in enumerate(zip(message.branches, state, strict=False))
            ]
            return tuple(bool(o) for o in outs)
        if kind == "fan_in_sum":
            if not all(state):
                v.append(
                    (
                        here,
                        "needs Gaussian branches (each ending in an affine layer): the "
                        "sum of non-Gaussian branches has no closed-form kernel here",
                    )
                )
            return True
        return len(state) == 1 and state[0] and kind == "fan_in_prod"
    row = LAYERS[kind]
    if isinstance(state, tuple):
        v.append((here, "receives branches: join them first (FanInSum, FanInProd, FanInConcat)"))
        return False
    role = row.role_for(message)
    if role in (Role.NONLINEAR, Role.RESCALING) and not state:
        needs = (
            "a nonlinearity needs Gaussian inputs: put an affine layer (Dense, "
            "Conv) before it; its kernel is an expectation over Gaussian pre-activations"
            if role is Role.NONLINEAR
            else "needs Gaussian inputs: put an affine layer (Dense, Conv) or a sum of "
            "Gaussian branches before it; its kernel is that of a centred Gaussian, "
            "rescaled by its variance"
        )
        v.append((here, needs))
    if role is Role.LINEAR:
        return state
    return role in (Role.AFFINE, Role.RESCALING)
