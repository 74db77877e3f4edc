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

from ntkserve_server.kernels.errors import ArchitectureError
from ntkserve_server.kernels.rows import Role, Violations
from ntkserve_server.kernels.table import LAYERS


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


def _flatten(layers: Any, path: str, violations: Violations) -> Iterator[tuple[str, pb.Layer]]:
    for i, layer in enumerate(layers):
        here = f"{path}[{i}]"
        _unknown(layer, here, violations)
        kind = layer.WhichOneof("layer")
        if kind is None:
            violations.append((here, "no layer type is set (a layer this server does not know?)"))
            continue
        if kind == "serial":
            if not layer.serial.layers:
                violations.append((f"{here}.serial.layers", "is empty: a serial needs layers"))
            _unknown(layer.serial, f"{here}.serial", violations)
            yield from _flatten(layer.serial.layers, f"{here}.serial.layers", violations)
            continue
        row = LAYERS[kind]
        message = getattr(layer, kind).__deepcopy__()
        _unknown(message, f"{here}.{kind}", violations)
        for name in row.required:
            if not message.HasField(name):
                violations.append((f"{here}.{kind}.{name}", "is required"))
        _fill_defaults(message, row.defaults)
        problems = row.check(message)
        violations.extend((f"{here}.{kind}.{f}", problem) for f, problem in problems)
        if not problems:
            row.canonical(message)
        yield f"{here}.{kind}", pb.Layer(**{kind: message})


def _check_gaussian_inputs(layers: list[tuple[str, pb.Layer]], violations: Violations) -> None:
    gaussian = False  # the inputs themselves are data, not Gaussian pre-activations
    for path, layer in layers:
        row = LAYERS[str(layer.WhichOneof("layer"))]
        if row.role is Role.NONLINEAR and not gaussian:
            violations.append(
                (
                    path,
                    "a nonlinearity needs Gaussian inputs: put an affine layer (Dense) "
                    "before it; its kernel is an expectation over Gaussian pre-activations",
                )
            )
        if row.role is not Role.LINEAR:
            gaussian = row.role is Role.AFFINE


def canonicalize(architecture: pb.Architecture) -> pb.Architecture:
    """The canonical form; raises ArchitectureError listing every violation."""
    violations: Violations = []
    _unknown(architecture, "architecture", violations)
    layers = list(_flatten(architecture.layers, "architecture.layers", violations))
    if not architecture.layers:
        violations.append(("architecture.layers", "is empty: a network needs at least one layer"))
    _check_gaussian_inputs(layers, violations)
    if violations:
        raise ArchitectureError(violations)
    return pb.Architecture(layers=[layer for _, layer in layers])


def architecture_id(canonical: pb.Architecture) -> str:
    """A hash of the canonical form (its protobuf JSON with sorted keys): 32 hex digits."""
    as_dict = json_format.MessageToDict(canonical, preserving_proto_field_name=True)
    text = json.dumps(as_dict, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:32]
