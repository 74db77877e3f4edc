"""`Architecture`: the spec object every `ntkserve.stax` builder returns.

It wraps the `ntkserve.v1.Architecture` message (its layers applied in series) and
converts to and from the protobuf JSON mapping, which other languages and the command
line share.
"""

from __future__ import annotations

from collections.abc import Iterable

from google.protobuf import json_format

from ntkserve.v1 import architecture_pb2


class Architecture:
    """A network: layers applied in series. Immutable; compare with `==`."""

    __slots__ = ("_layers",)

    def __init__(self, layers: Iterable[architecture_pb2.Layer]) -> None:
        copies = []
        for layer in layers:
            copy = architecture_pb2.Layer()
            copy.CopyFrom(layer)
            copies.append(copy)
        self._layers: tuple[architecture_pb2.Layer, ...] = tuple(copies)

    @property
    def layers(self) -> tuple[architecture_pb2.Layer, ...]:
        return self._layers

    def to_proto(self) -> architecture_pb2.Architecture:
        return architecture_pb2.Architecture(layers=self._layers)

    def to_json(self) -> str:
        """The protobuf JSON mapping, e.g. `{"layers": [{"dense": {"outDim": "512"}}]}`."""
        return json_format.MessageToJson(self.to_proto(), indent=2, sort_keys=True)

    @classmethod
    def from_proto(cls, message: architecture_pb2.Architecture) -> Architecture:
        return cls(message.layers)

    @classmethod
    def from_json(cls, text: str) -> Architecture:
        """Parses the protobuf JSON mapping; unknown fields are an error, not ignored."""
        return cls.from_proto(json_format.Parse(text, architecture_pb2.Architecture()))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Architecture) and self._layers == other._layers

    def __hash__(self) -> int:
        return hash(self.to_proto().SerializeToString(deterministic=True))

    def __repr__(self) -> str:
        names = ", ".join(str(layer.WhichOneof("layer")) for layer in self._layers)
        return f"Architecture([{names}])"
