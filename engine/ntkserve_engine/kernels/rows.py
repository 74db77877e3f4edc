"""The rows of the layer table: what the engine knows about each `Layer` message type.

`LayerRow`, one per layer message (see `table.py`): its defaults, which parameters are
required, which floats are hyper-parameters (inputs of the compiled function, so a sweep
over W_std reuses one compilation), range checks, and its rule, a function
(Kernel, Hyper) -> Kernel that maps the layer's input kernel to its output kernel.

`CombinatorRow`, one per combinator message (Serial, Parallel, Repeat, FanOut, FanIn*,
Identity; see `combinators.py`): which field holds its sub-layers, its checks and defaults,
the `Node` it compiles to from its children's nodes, and how the static walk passes it.
"""

from __future__ import annotations

import dataclasses
import enum
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from google.protobuf.message import Message
from jax import Array
from ntkserve.v1 import architecture_pb2 as pb

from ntkserve_engine.kernels.kernel import Kernel

Hyper = Mapping[str, Array]
Rule = Callable[[Kernel, Hyper], Kernel]
Violations = list[tuple[str, str]]


class Role(enum.Enum):
    """How a layer changes Gaussianity: nonlinearities need Gaussian inputs."""

    AFFINE = "affine"  # outputs are Gaussian (Dense, Conv)
    NONLINEAR = "nonlinear"  # needs Gaussian inputs; outputs are not Gaussian
    LINEAR = "linear"  # keeps whatever its inputs were (pooling)
    # needs Gaussian inputs and keeps them Gaussian: a rescaling that is deterministic in
    # the infinite-width limit (LayerNorm divides by a variance that concentrates)
    RESCALING = "rescaling"
    # multiplies by random masks (Dropout in 'train' mode): takes any inputs, and its
    # outputs are not Gaussian
    MASKING = "masking"
    FLATTEN = "flatten"  # outputs mix positions into one vector: not one Gaussian kernel


Spatial = tuple[int, ...]


def same_spatial(message: Any, spatial: Spatial) -> Spatial:
    return spatial


def no_canonical(message: Any) -> None:
    return None


def no_checks(message: Any) -> Violations:
    return []


@dataclasses.dataclass(frozen=True)
class LayerRow:
    message: type[Message]
    role: Role
    build: Callable[[Any], Rule]
    defaults: Mapping[str, float | int] = dataclasses.field(default_factory=dict)
    required: tuple[str, ...] = ()
    hyper: tuple[str, ...] = ()
    check: Callable[[Any], Violations] = no_checks
    # Fills what `defaults` cannot express (enums' zero values, empty strides).
    canonical: Callable[[Any], None] = no_canonical
    # The positions after this layer; raises windows.ShapeProblem when it cannot apply.
    out_spatial: Callable[[Any, Spatial], Spatial] = same_spatial
    # Pooling over positions needs the covariance of every pair of positions.
    needs_position_pairs: bool = False
    # The role when it depends on the message (Dropout: identity in 'test' mode, not
    # Gaussian-preserving in 'train' mode); `role` otherwise.
    role_of: Callable[[Any], Role] | None = None
    # Masked inputs: which output positions are present, from the input's keep (n, *S)
    # (see masking.py). None: the layer keeps its positions (and so the mask); a layer
    # that changes positions without one refuses masked inputs.
    keep_after: Callable[[Any, Array], Array | None] | None = None

    def role_for(self, message: Message) -> Role:
        return self.role if self.role_of is None else self.role_of(message)

    def hyper_values(self, message: Message) -> dict[str, float | tuple[float, ...]]:
        """The hyper-parameters set on a canonical message, by name (a repeated field, such
        as Polynomial's coef, gives a tuple)."""
        out: dict[str, float | tuple[float, ...]] = {}
        for name in self.hyper:
            value = getattr(message, name)
            if not isinstance(value, float):
                out[name] = tuple(float(v) for v in value)
            elif message.HasField(name):
                out[name] = value
        return out


def finite(message: Message, *names: str, nonnegative: bool = False) -> Violations:
    """Range checks shared by the rows: each named float present must be finite (and >= 0)."""
    out: Violations = []
    for name in names:
        if not message.HasField(name):
            continue
        value = getattr(message, name)
        if not math.isfinite(value):
            out.append((name, f"must be finite, got {value}"))
        elif nonnegative and value < 0:
            out.append((name, f"must be >= 0, got {value}"))
    return out


# -- what rows compile to, and what the static walk passes through them -------------------

State = Any  # Kernel | tuple[Kernel, ...]: one kernel, or one per branch (FanOut to a FanIn)
Shapes = Any  # Spatial | tuple[Spatial, ...], likewise
Abstract = bool | tuple[bool, ...]  # the static walk's state: is_gaussian, of each branch
# What the shape walk of a node gives for its input positions: the positions it leaves, and
# how many layer applications the compiled program traces for them (a loop's body once,
# a repeat unrolled because its layer changes shapes once per application).
Walked = tuple[Shapes, int]


@dataclasses.dataclass(frozen=True)
class Node:
    """What a layer or a combinator compiles to (see `tree.py`): `apply(state, params)`, its
    hyper-parameters, the positions it leaves and the applications traced for them
    (`spatial`, see `Walked`: O(structure), never O(applications)), and whether it needs the
    covariance of every pair of positions (`needs_position_pairs`: pooling does)."""

    apply: Callable[[State, Any], State]
    params: Any
    spatial: Callable[[Shapes], Walked]
    needs_position_pairs: bool
    # `params` with each float replaced by its path in the architecture (same tree structure),
    # e.g. "architecture.layers[0].dense.w_std": how gradients are named on the wire.
    names: Any = dataclasses.field(default_factory=dict)


Step = Callable[[Abstract], Abstract]  # the static walk through one child of a combinator


@dataclasses.dataclass(frozen=True)
class CombinatorRow:
    message: type[Message]
    # (message, its path, its children's nodes) -> its node: a fold over the children.
    build: Callable[[Any, str, list[Node]], Node]
    # (message, its path, input, the walk through each child, violations) -> output.
    walk: Callable[[Any, str, Abstract, list[Step], Violations], Abstract]
    # The field that holds its sub-layers (repeated, or a single Layer); None: it has none.
    children: str | None = None
    defaults: Mapping[str, float | int] = dataclasses.field(default_factory=dict)
    check: Callable[[Any], Violations] = no_checks
    # Its sub-layers take its place in the canonical sequence (Serial: flattened away).
    inline: bool = False
    # How many times its sub-layers apply per application of it (Repeat: n), for the count
    # of layer applications (`canonical.applications`).
    times: Callable[[Any], int] = lambda message: 1

    def children_of(self, message: Message) -> list[tuple[str, pb.Layer]]:
        """Its sub-layers, each with its field path relative to the message ("layer",
        "branches[0]")."""
        if self.children is None:
            return []
        value = getattr(message, self.children)
        if isinstance(value, pb.Layer):
            return [(self.children, value)] if message.HasField(self.children) else []
        return [(f"{self.children}[{i}]", layer) for i, layer in enumerate(value)]

    def with_children(self, message: Message, layers: Sequence[pb.Layer]) -> None:
        """Puts `layers` (its sub-layers' canonical forms) in place of its sub-layers."""
        if self.children is None:
            return
        if isinstance(getattr(message, self.children), pb.Layer):
            message.ClearField(self.children)
            if layers:
                getattr(message, self.children).CopyFrom(layers[0])
            return
        value = getattr(message, self.children)
        del value[:]
        value.extend(layers)
