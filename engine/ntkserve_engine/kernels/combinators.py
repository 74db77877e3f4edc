"""The combinator rows: Serial, Parallel, Repeat, FanOut, FanInSum/Prod/Concat, Identity.

Each `CombinatorRow` holds all the engine knows of one combinator message: the field of its
sub-layers, its checks (with the bounds below) and defaults, the `Node` it compiles to from
its children's nodes (`serial` a fold, `parallel` a map over branches, `repeat` a `lax.scan`
once the layer maps the kernel's structure to itself), and how the static walk of Gaussian
inputs passes through it. The folds over a tree (`tree.build`, `walk.check_tree`,
`canonical.canonicalize`, `canonical.every_layer`) read these rows and nothing else of
combinators. The kernel math of the joins is in `branching.py`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import jax
from jax import lax
from ntkserve.v1 import architecture_pb2 as pb

from ntkserve_engine.kernels import branching
from ntkserve_engine.kernels.errors import InputError
from ntkserve_engine.kernels.kernel import Kernel
from ntkserve_engine.kernels.rows import (
    Abstract,
    CombinatorRow,
    Node,
    Shapes,
    Spatial,
    State,
    Step,
    Violations,
    Walked,
    no_checks,
)
from ntkserve_engine.kernels.windows import ShapeProblem

# Bounds that keep one registration from taking the server's memory or time (a FanOut of
# 2**32 branches, a loop of a million layers traced one by one); far beyond any network in
# the literature. What repeats multiply is bounded by canonical.MAX_APPLICATIONS.
MAX_BRANCHES = 256
MAX_REPEAT = 10_000
# A repeat whose layer changes the shapes on each application cannot be one loop: it is
# unrolled, one traced copy of the layer per application, and its compile time grows with
# them (issue 17: 500 traced layers compiled in 35 s). The layer applications one repeat
# unrolls (nested unrolls included, so they multiply) are bounded by this: enough to
# downsample or upsample a grid step by step (a 3-layer block halving 2**20 positions 20
# times is 60), far below a compile of minutes.
MAX_UNROLLED = 100
# Input shapes whose walk through one repeat is remembered (per repeat node), so a walk
# through nested repeats costs O(structure): an inner repeat's second walk (the check that
# its outer one loops) finds the first one's.
_WALKS_REMEMBERED = 16


def _between(value: int, field: str, low: int, high: int) -> Violations:
    if low <= value <= high:
        return []
    return [(field, f"is required and must be between {low} and {high}, got {value}")]


def _over(
    apply: Callable[[State, Any], State],
    spatial: Callable[[Shapes], Shapes],
    children: list[Node],
) -> Node:
    """A node made of `children` (a sequence or branches): their hyper-parameters and names
    in order, needing every pair of positions when any child does."""
    return Node(
        apply,
        tuple(c.params for c in children),
        spatial,
        any(c.needs_position_pairs for c in children),
        tuple(c.names for c in children),
    )


# -- Serial: a fold over its layers -------------------------------------------------------


def sequence(nodes: list[Node]) -> Node:
    """The nodes one after the other."""

    def apply(state: State, params: Any) -> State:
        for node, p in zip(nodes, params, strict=True):
            state = node.apply(state, p)
        return state

    def spatial(shapes: Shapes) -> Walked:
        traced = 0
        for node in nodes:
            shapes, applications = node.spatial(shapes)
            traced += applications
        return shapes, traced

    return _over(apply, spatial, nodes)


def _walk_sequence(
    message: Any, here: str, state: Abstract, children: list[Step], v: Violations
) -> Abstract:
    for step in children:
        state = step(state)
    return state


SERIAL = CombinatorRow(
    message=pb.Serial,
    build=lambda message, here, nodes: sequence(nodes),
    walk=_walk_sequence,
    children="layers",
    check=lambda m: [] if m.layers else [("layers", "is empty: a serial needs layers")],
    inline=True,
)


# -- Parallel: a map over branches --------------------------------------------------------


def _parallel(message: pb.Parallel, here: str, branches: list[Node]) -> Node:
    def apply(state: State, params: Any) -> State:
        return tuple(b.apply(s, p) for b, s, p in zip(branches, state, params, strict=True))

    def spatial(shapes: Shapes) -> Walked:
        walked = [b.spatial(s) for b, s in zip(branches, shapes, strict=True)]
        return tuple(out for out, _ in walked), sum(traced for _, traced in walked)

    return _over(apply, spatial, branches)


def _check_parallel(message: pb.Parallel) -> Violations:
    if not message.branches:
        return [("branches", "is empty: parallel needs branches")]
    if len(message.branches) > MAX_BRANCHES:
        return [("branches", f"at most {MAX_BRANCHES}, got {len(message.branches)}")]
    return []


def _needs_branches(here: str, state: Abstract, v: Violations) -> tuple[bool, ...]:
    if isinstance(state, tuple):
        return state
    v.append((here, "needs branches as input: put FanOut before it"))
    return (state,)


def _walk_parallel(
    message: pb.Parallel, here: str, state: Abstract, children: list[Step], v: Violations
) -> Abstract:
    branches = _needs_branches(here, state, v)
    if len(branches) != len(message.branches):
        v.append((here, f"has {len(message.branches)} branches but receives {len(branches)}"))
    return tuple(bool(step(g)) for step, g in zip(children, branches, strict=False))


PARALLEL = CombinatorRow(
    message=pb.Parallel,
    build=_parallel,
    walk=_walk_parallel,
    children="branches",
    check=_check_parallel,
)


# -- Repeat: n times one layer, a lax.scan when it can -------------------------------------


def _same_structure(after: Any, before: Any) -> bool:
    """Whether a layer mapped `before` to `after` of the same structure, shapes and dtypes:
    then the rest of a repeat is one loop (the rules are deterministic in the shapes)."""
    if str(jax.tree.structure(after)) != str(jax.tree.structure(before)):
        return False
    return all(
        a.shape == b.shape and a.dtype == b.dtype
        for a, b in zip(jax.tree.leaves(after), jax.tree.leaves(before), strict=True)
    )


def _unrolled_too_far(here: str, first: Shapes, now: Shapes, done: int) -> str:
    return (
        f"{here}: its layer changes the positions on each application ({list(first)} "
        f"became {list(now)} after {done} applications), so the repeat is unrolled, and it "
        f"would trace more than {MAX_UNROLLED} layer applications: repeat fewer times, or "
        "write out the layers that change shapes and repeat only a block that keeps them"
    )


def _repeat(message: pb.Repeat, here: str, children: list[Node]) -> Node:
    (inner,) = children
    n = message.n
    walks: dict[Shapes, Walked | ShapeProblem] = {}

    def apply(state: State, params: Any) -> State:
        def step(s: State) -> State:
            return inner.apply(s, params)

        state = step(state)
        for done in range(1, n):
            if _same_structure(jax.eval_shape(step, state), state):
                state, _ = lax.scan(lambda s, _: (step(s), None), state, None, n - done)
                return state
            if done > MAX_UNROLLED:  # `spatial` refuses these first: a second guard
                raise InputError("x1.shape", f"{here}: unrolled past {MAX_UNROLLED} times")
            state = step(state)  # the layer changes shapes: unrolled
        return state

    def walk(shapes: Shapes) -> Walked:
        """As `apply` goes: once, then once more per application that changes the
        positions; at the first that keeps them, the rest is a loop of that body."""
        out, traced = inner.spatial(shapes)
        unrolled = 0
        for done in range(1, n):
            following, body = inner.spatial(out)
            traced += body
            if following == out:
                break
            unrolled += body
            if unrolled > MAX_UNROLLED:
                raise ShapeProblem(_unrolled_too_far(here, shapes, following, done + 1))
            out = following
        return out, traced

    def spatial(shapes: Shapes) -> Walked:
        found = walks.get(shapes)
        if found is None:
            try:
                found = walk(shapes)
            except ShapeProblem as e:
                found = e
            if len(walks) >= _WALKS_REMEMBERED:
                walks.clear()
            walks[shapes] = found
        if isinstance(found, ShapeProblem):
            raise ShapeProblem(str(found))
        return found

    return Node(apply, inner.params, spatial, inner.needs_position_pairs, inner.names)


def _check_repeat(message: pb.Repeat) -> Violations:
    required = [] if message.HasField("layer") else [("layer", "is required")]
    return required + _between(message.n, "n", 1, MAX_REPEAT)


def _walk_repeat(
    message: pb.Repeat, here: str, state: Abstract, children: list[Step], v: Violations
) -> Abstract:
    for _ in range(min(message.n, 2)):  # twice finds what only a second pass breaks
        state = _walk_sequence(message, here, state, children, v)
    return state


REPEAT = CombinatorRow(
    message=pb.Repeat,
    build=_repeat,
    walk=_walk_repeat,
    children="layer",
    check=_check_repeat,
    times=lambda message: int(message.n),
)


# -- Identity and FanOut ------------------------------------------------------------------

IDENTITY = CombinatorRow(
    message=pb.Identity,
    build=lambda message, here, nodes: Node(lambda s, p: s, {}, lambda s: (s, 1), False),
    walk=_walk_sequence,
)


def _fan_out(message: pb.FanOut, here: str, nodes: list[Node]) -> Node:
    n = message.num
    return Node(lambda s, p: (s,) * n, {}, lambda s: ((s,) * n, 1), False)


def _walk_fan_out(
    message: pb.FanOut, here: str, state: Abstract, children: list[Step], v: Violations
) -> Abstract:
    if isinstance(state, tuple):
        v.append((here, "needs one input, but there are branches: join them first"))
        return state
    # Past the bound, the check reports it: the walk goes on without allocating them all.
    return (bool(state),) * min(int(message.num), MAX_BRANCHES)


FAN_OUT = CombinatorRow(
    message=pb.FanOut,
    build=_fan_out,
    walk=_walk_fan_out,
    check=lambda m: _between(m.num, "num", 1, MAX_BRANCHES),
)


# -- the joins: FanInSum, FanInProd, FanInConcat ------------------------------------------


def _same(shapes: Shapes, path: str, what: str) -> Spatial:
    if not isinstance(shapes, tuple) or not shapes or not isinstance(shapes[0], tuple):
        raise ShapeProblem(f"{path}: {what} needs branches (FanOut first)")
    if len(set(shapes)) > 1:
        raise ShapeProblem(f"{path}: branches with positions {list(shapes)} cannot be joined")
    return tuple(shapes[0])


def _join_row(
    message: type[pb.FanInSum] | type[pb.FanInProd] | type[pb.FanInConcat],
    kind: str,
    join: Callable[[tuple[Kernel, ...], str], Kernel],
    is_gaussian: Callable[[tuple[bool, ...], str, Violations], bool],
    defaults: Mapping[str, float | int] | None = None,
    check: Callable[[Any], Violations] = no_checks,
) -> CombinatorRow:
    """A row that joins the branches into one kernel; `is_gaussian` of the joined outputs,
    from the branches' (reporting branches it cannot join)."""

    def build(message: Any, here: str, nodes: list[Node]) -> Node:
        return Node(lambda s, p: join(s, here), {}, lambda s: (_same(s, here, kind), 1), False)

    def walk(
        message: Any, here: str, state: Abstract, children: list[Step], v: Violations
    ) -> Abstract:
        return is_gaussian(_needs_branches(here, state, v), here, v)

    return CombinatorRow(
        message=message,
        build=build,
        walk=walk,
        defaults=defaults or {},
        check=check,
    )


def _sum_is_gaussian(branches: tuple[bool, ...], here: str, v: Violations) -> bool:
    if not all(branches):
        v.append(
            (
                here,
                "needs Gaussian branches (each ending in an affine layer): the "
                "sum of non-Gaussian branches has no closed-form kernel here",
            )
        )
    return True


def _concat_axis(message: pb.FanInConcat) -> Violations:
    if message.axis == -1:
        return []
    return [("axis", f"only -1 (channels) is supported, got {message.axis}")]


FAN_IN_SUM = _join_row(pb.FanInSum, "fan_in_sum", branching.fan_in_sum, _sum_is_gaussian)
FAN_IN_PROD = _join_row(
    pb.FanInProd,
    "fan_in_prod",
    branching.fan_in_prod,
    lambda branches, here, v: len(branches) == 1 and branches[0],
)
FAN_IN_CONCAT = _join_row(
    pb.FanInConcat,
    "fan_in_concat",
    branching.fan_in_concat,
    lambda branches, here, v: False,
    defaults={"axis": -1},
    check=_concat_axis,
)
