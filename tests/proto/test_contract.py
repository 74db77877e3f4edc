"""One place per layer type: every `Layer` oneof field has a builder, a rule, a row."""

from __future__ import annotations

import inspect

import pytest
from ntkserve import stax
from ntkserve.v1 import architecture_pb2 as pb
from ntkserve_engine.kernels.table import COMBINATORS, LAYERS

LAYER_FIELDS = list(pb.Layer.DESCRIPTOR.oneofs_by_name["layer"].fields)
# Where neural-tangents' builder name is not a valid protobuf message name.
NT_SPELLING = {"SigmoidLike": "Sigmoid_like"}
EXAMPLE_ARGS = {"activation": "tanh"}  # required arguments that are not numbers


def test_table_covers_exactly_the_oneof() -> None:
    assert set(LAYERS) | set(COMBINATORS) == {f.name for f in LAYER_FIELDS}
    assert not set(LAYERS) & set(COMBINATORS)


@pytest.mark.parametrize("field", LAYER_FIELDS, ids=lambda f: f.name)
def test_each_layer_has_builder_rule_and_row(field) -> None:  # type: ignore[no-untyped-def]
    name = field.message_type.name
    builder = getattr(stax, NT_SPELLING.get(name, name), None) or getattr(stax, name.lower(), None)
    assert builder is not None, f"ntkserve.stax has no builder for {name}"
    if field.name in COMBINATORS:
        combinator = COMBINATORS[field.name]
        assert combinator.message.DESCRIPTOR.full_name == field.message_type.full_name
        named = (*combinator.defaults, *([combinator.children] if combinator.children else []))
        for param in named:
            assert param in combinator.message.DESCRIPTOR.fields_by_name, f"{name}.{param}"
        return
    row = LAYERS[field.name]
    assert row.message.DESCRIPTOR.full_name == field.message_type.full_name
    fields = row.message.DESCRIPTOR.fields_by_name
    for param in (*row.defaults, *row.required, *row.hyper):
        assert param in fields, f"{name}.{param} is not a field"
    for param in (*row.required, *row.hyper):
        repeated = not isinstance(getattr(row.message(), param), int | float)
        assert repeated or fields[param].has_presence, f"{name}.{param} must be `optional`"
    # The builder makes exactly this layer.
    args = [
        EXAMPLE_ARGS.get(p.name, (1,) if p.name.endswith("shape") or p.name == "coef" else 1)
        for p in inspect.signature(builder).parameters.values()
        if p.default is p.empty
    ]
    spec = builder(*args)
    assert [layer.WhichOneof("layer") for layer in spec.layers] == [field.name]
