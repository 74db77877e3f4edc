"""Validation and the canonical form of an `Architecture`, and the id that hashes it.

Canonical: nested serials flattened, absent parameters filled with neural-tangents'
defaults (a fold over the rows of `table.py`: a layer's row, or a combinator's row and its
sub-layers). Two specs of the same network (one spelling out defaults, one nesting
serials) get the same canonical form and so the same id. Every violation is reported
with its field path, all at once.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from typing import Any

from google.protobuf import json_format, unknown_fields
from google.protobuf.message import Message
from ntkserve.v1 import architecture_pb2 as pb

from ntkserve_engine.kernels.errors import ArchitectureError
from ntkserve_engine.kernels.rows import CombinatorRow, LayerRow, Violations
from ntkserve_engine.kernels.table import COMBINATORS, LAYERS
from ntkserve_engine.kernels.walk import check_tree

# Layers in all, nested ones included: a bound that keeps one registration from taking the
# server's time (a million layers traced one by one); far beyond any network in the
# literature. The combinators' own bounds are in combinators.py.
MAX_LAYERS = 10_000
# Layer applications per kernel entry (`applications`: repeats multiply, nested repeats
# multiply again): what a kernel's compute grows with, whatever the registration's size (a
# 79-byte spec of three nested repeats of 10,000 asks for 2e12). Measured on the 2-core dev
# machine (CPU): a 4-input NTK through repeat(serial(Dense(8), Relu()), n) takes 0.4 ms per
# 1,000 applications (20,000 in 8.7 ms, 100,000 in 36 ms, once compiled), so this bound
# keeps a small kernel within ~40 ms, and a larger one within the cost admission's reach
# (its compute is this times its entries and positions). The deepest flat network allowed
# (MAX_LAYERS) and a 10,000-times repeat of a 10-layer block are within it.
MAX_APPLICATIONS = 100_000


def _unknown(message: Message, path: str, violations: Violations) -> None:
    found = unknown_fields.UnknownFieldSet(message)
    numbers = sorted({found[i].field_number for i in range(len(found))})
    if numbers:
        violations.append(
            (
                path,
                f"unknown field numbers {numbers} (sent by a newer client? this server "
                "does not know them)",
            )
        )


def _fill_defaults(message: Message, defaults: dict[str, Any] | Any) -> None:
    for name, value in defaults.items():
        if not message.HasField(name):
            setattr(message, name, value)


def _layer_of(kind: str, message: Message) -> pb.Layer:
    layer = pb.Layer()
    getattr(layer, kind).CopyFrom(message)
    return layer


def _single(layers: list[tuple[str, pb.Layer]]) -> pb.Layer:
    """A canonical sequence as one layer: itself when it has one layer, else a Serial."""
    if len(layers) == 1:
        return layers[0][1]
    return pb.Layer(serial=pb.Serial(layers=[layer for _, layer in layers]))


def _canonical_layer(row: LayerRow, message: Message, here: str, violations: Violations) -> Any:
    """A layer's message with its defaults filled, once its checks pass."""
    out = message.__deepcopy__()
    for name in row.required:
        if not out.HasField(name):
            violations.append((f"{here}.{name}", "is required"))
    _fill_defaults(out, row.defaults)
    problems = row.check(out)
    violations.extend((f"{here}.{field}", problem) for field, problem in problems)
    if not problems:
        row.canonical(out)
    return out


def _flatten(layers: Any, path: str, violations: Violations) -> Iterator[tuple[str, pb.Layer]]:
    for i, layer in enumerate(layers):
        yield from _flatten_one(layer, f"{path}[{i}]", violations)


def _flatten_one(
    layer: pb.Layer, here: str, violations: Violations
) -> Iterator[tuple[str, pb.Layer]]:
    """The canonical form of one layer, as (path, layer) pairs: the layer itself, or the
    layers of a serial (flattened away); a combinator's sub-layers canonical too."""
    _unknown(layer, here, violations)
    kind = layer.WhichOneof("layer")
    if kind is None:
        violations.append((here, "no layer type is set (a layer this server does not know?)"))
        return
    at = f"{here}.{kind}"
    message = getattr(layer, kind)
    _unknown(message, at, violations)
    if kind in LAYERS:
        yield at, _layer_of(kind, _canonical_layer(LAYERS[kind], message, at, violations))
    else:
        yield from _canonical_combinator(COMBINATORS[kind], kind, message, at, violations)


def _canonical_combinator(
    row: CombinatorRow, kind: str, message: Message, here: str, violations: Violations
) -> Iterator[tuple[str, pb.Layer]]:
    """A combinator with its defaults filled and its sub-layers canonical; for a serial, its
    sub-layers in its place."""
    out = message.__deepcopy__()
    _fill_defaults(out, row.defaults)
    violations.extend((f"{here}.{field}", problem) for field, problem in row.check(out))
    children = [
        list(_flatten_one(child, f"{here}.{field}", violations))
        for field, child in row.children_of(out)
    ]
    if row.inline:
        for sequence in children:
            yield from sequence
        return
    row.with_children(out, [_single(sequence) for sequence in children if sequence])
    yield here, _layer_of(kind, out)


def canonicalize(architecture: pb.Architecture) -> pb.Architecture:
    """The canonical form; raises ArchitectureError listing every violation."""
    count = sum(1 for _ in every_layer(architecture.layers))
    if count > MAX_LAYERS:
        raise ArchitectureError(
            [("architecture.layers", f"at most {MAX_LAYERS} layers in all, got {count}")]
        )
    violations: Violations = []
    _unknown(architecture, "architecture", violations)
    layers = list(_flatten(architecture.layers, "architecture.layers", violations))
    if not architecture.layers:
        violations.append(("architecture.layers", "is empty: a network needs at least one layer"))
    too_many = _too_many_applications(layers)
    if too_many:  # before the walk below, which passes each repeat twice
        raise ArchitectureError(violations + too_many)
    check_tree([(path.rsplit(".", 1)[0], layer) for path, layer in layers], violations)
    if violations:  # once each: the walk passes a repeat twice, nested ones 2**depth times
        raise ArchitectureError(list(dict.fromkeys(violations)))
    return pb.Architecture(layers=[layer for _, layer in layers])


def applications(layers: Any) -> int:
    """Layer applications per kernel entry of a sequence: each layer (a join, an Identity, a
    FanOut too) once, a combinator's sub-layers as often as its row's `times` says (Repeat:
    n), so nested repeats multiply. Exact Python ints: no overflow, whatever the nesting."""
    return sum(_applications_of(layer) for layer in layers)


def _applications_of(layer: pb.Layer) -> int:
    kind = layer.WhichOneof("layer")
    if kind not in COMBINATORS:
        return 1
    row = COMBINATORS[kind]
    message = getattr(layer, kind)
    children = row.children_of(message)
    if row.children is None:
        return 1
    inner = sum(_applications_of(child) for _, child in children)
    return max(row.times(message), 0) * inner


def repeat_factor(layers: Any) -> int:
    """The most times any one layer runs per kernel entry: nested repeats multiply. A
    compiler's cost analysis counts a loop's body once; its count times this bounds the
    call's. Exact Python ints, like `applications`."""
    most = 1
    for layer in layers:
        kind = layer.WhichOneof("layer")
        if kind not in COMBINATORS or COMBINATORS[kind].children is None:
            continue
        row = COMBINATORS[kind]
        inner = repeat_factor(child for _, child in row.children_of(getattr(layer, kind)))
        most = max(most, max(row.times(getattr(layer, kind)), 1) * inner)
    return most


def _too_many_applications(layers: list[tuple[str, pb.Layer]]) -> Violations:
    """The top-level layer that applies its layers most often, when the network passes
    MAX_APPLICATIONS."""
    counts = [(_applications_of(layer), path) for path, layer in layers]
    total = sum(count for count, _ in counts)
    if total <= MAX_APPLICATIONS:
        return []
    count, path = max(counts)
    return [
        (
            path,
            f"applies layers {count:,} times per kernel entry (a repeat applies its layer n "
            f"times, nested repeats multiply); the network {total:,} in all, at most "
            f"{MAX_APPLICATIONS:,}: repeat fewer times or nest fewer repeats",
        )
    ]


ID_LENGTH = 32
ID_FORM = f"{ID_LENGTH} lowercase hex digits"  # what every `architecture_id` is
_ID_DIGITS = frozenset("0123456789abcdef")


def architecture_id(canonical: pb.Architecture) -> str:
    """A hash of the canonical form (its protobuf JSON with sorted keys): ID_FORM."""
    as_dict = json_format.MessageToDict(canonical, preserving_proto_field_name=True)
    text = json.dumps(as_dict, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:ID_LENGTH]


def is_architecture_id(text: str) -> bool:
    """Whether `text` has the form of an `architecture_id` (ID_FORM); O(ID_LENGTH) at most."""
    return len(text) == ID_LENGTH and _ID_DIGITS.issuperset(text)


def topology_id(canonical: pb.Architecture) -> str:
    """The id of the network with its float hyper-parameters blanked (kept present, so
    b_std=None and b_std=0 stay different): networks that differ only in W_std, b_std, a,
    ... share it, and with it one compiled function, their values being its inputs."""
    blank = pb.Architecture()
    blank.CopyFrom(canonical)
    for layer in every_layer(blank.layers):
        kind = str(layer.WhichOneof("layer"))
        if kind not in LAYERS:
            continue
        message = getattr(layer, kind)
        for name in LAYERS[kind].hyper:
            value = getattr(message, name)
            if isinstance(value, float):
                if message.HasField(name):
                    setattr(message, name, 0.0)
            else:
                value[:] = [0.0] * len(value)
    return architecture_id(blank)


def every_layer(layers: Any) -> Iterator[pb.Layer]:
    """Every Layer message of a sequence, nested ones (in serial, parallel, repeat) included."""
    for layer in layers:
        yield layer
        kind = layer.WhichOneof("layer")
        if kind in COMBINATORS:
            children = COMBINATORS[kind].children_of(getattr(layer, kind))
            yield from every_layer(child for _, child in children)
