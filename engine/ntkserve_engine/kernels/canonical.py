"""Validation and the canonical form of an `Architecture`, and the id that hashes it.

Canonical: nested serials flattened, absent parameters filled with neural-tangents'
defaults. Two specs of the same network (one spelling out defaults, one nesting
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
from ntkserve_engine.kernels.rows import Violations
from ntkserve_engine.kernels.table import COMBINATORS, LAYERS
from ntkserve_engine.kernels.tree import MAX_BRANCHES, MAX_LAYERS, MAX_REPEAT, check_tree


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


def _combinator(kind: str, message: Any, here: str, violations: Violations) -> Any:
    """The canonical form of a combinator message (its sub-layers canonical too)."""
    out = message.__deepcopy__()
    if kind == "parallel":
        if not message.branches:
            violations.append((f"{here}.branches", "is empty: parallel needs branches"))
        elif len(message.branches) > MAX_BRANCHES:
            violations.append(
                (f"{here}.branches", f"at most {MAX_BRANCHES}, got {len(message.branches)}")
            )
        del out.branches[:]
        for i, branch in enumerate(message.branches):
            seq = list(_flatten([branch], f"{here}.branches[{i}]", violations))
            if seq:
                out.branches.append(_single(seq))
    elif kind == "repeat":
        if not message.HasField("layer"):
            violations.append((f"{here}.layer", "is required"))
        if not 1 <= message.n <= MAX_REPEAT:
            violations.append(
                (
                    f"{here}.n",
                    f"is required and must be between 1 and {MAX_REPEAT}, got {message.n}",
                )
            )
        seq = list(_flatten([message.layer], f"{here}.layer", violations))
        if seq:
            out.layer.CopyFrom(_single(seq))
    elif kind == "fan_out" and not 1 <= message.num <= MAX_BRANCHES:
        violations.append(
            (
                f"{here}.num",
                f"is required and must be between 1 and {MAX_BRANCHES}, got {message.num}",
            )
        )
    elif kind == "fan_in_concat":
        if not message.HasField("axis"):
            out.axis = -1
        elif message.axis != -1:
            violations.append(
                (f"{here}.axis", f"only -1 (channels) is supported, got {message.axis}")
            )
    return out


def _flatten(layers: Any, path: str, violations: Violations) -> Iterator[tuple[str, pb.Layer]]:
    for i, layer in enumerate(layers):
        here = f"{path}[{i}]"
        _unknown(layer, here, violations)
        kind = layer.WhichOneof("layer")
        if kind is None:
            violations.append((here, "no layer type is set (a layer this server does not know?)"))
            continue
        _unknown(getattr(layer, kind), f"{here}.{kind}", violations)
        if kind == "serial":
            if not layer.serial.layers:
                violations.append((f"{here}.serial.layers", "is empty: a serial needs layers"))
            yield from _flatten(layer.serial.layers, f"{here}.serial.layers", violations)
            continue
        if kind in COMBINATORS:
            combinator = _combinator(kind, getattr(layer, kind), f"{here}.{kind}", violations)
            yield f"{here}.{kind}", _layer_of(kind, combinator)
            continue
        row = LAYERS[kind]
        message = getattr(layer, kind).__deepcopy__()
        for name in row.required:
            if not message.HasField(name):
                violations.append((f"{here}.{kind}.{name}", "is required"))
        _fill_defaults(message, row.defaults)
        problems = row.check(message)
        violations.extend((f"{here}.{kind}.{f}", problem) for f, problem in problems)
        if not problems:
            row.canonical(message)
        yield f"{here}.{kind}", _layer_of(kind, message)


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
    check_tree([(path.rsplit(".", 1)[0], layer) for path, layer in layers], violations)
    if violations:
        raise ArchitectureError(violations)
    return pb.Architecture(layers=[layer for _, layer in layers])


def architecture_id(canonical: pb.Architecture) -> str:
    """A hash of the canonical form (its protobuf JSON with sorted keys): 32 hex digits."""
    as_dict = json_format.MessageToDict(canonical, preserving_proto_field_name=True)
    text = json.dumps(as_dict, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:32]


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
    """Every Layer message of a sequence, nested ones (serial, parallel, repeat) included."""
    for layer in layers:
        yield layer
        kind = layer.WhichOneof("layer")
        if kind == "serial":
            yield from every_layer(layer.serial.layers)
        elif kind == "parallel":
            yield from every_layer(layer.parallel.branches)
        elif kind == "repeat":
            yield from every_layer([layer.repeat.layer])
