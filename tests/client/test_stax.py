"""neural-tangents' names, parameters and defaults; specs and their JSON."""

from __future__ import annotations

import inspect

import pytest
from ntkserve import Architecture, stax
from ntkserve.v1 import architecture_pb2 as pb


def test_dense_signature_matches_neural_tangents() -> None:
    params = inspect.signature(stax.Dense).parameters
    assert list(params) == [
        "out_dim",
        "W_std",
        "b_std",
        "batch_axis",
        "channel_axis",
        "parameterization",
        "s",
    ]
    assert params["W_std"].default == 1.0 and params["b_std"].default is None
    assert params["parameterization"].default == "ntk" and params["s"].default == (1, 1)
    assert inspect.signature(stax.Erf).parameters["a"].default == 1.0


def test_b_std_none_and_zero_are_different_specs() -> None:
    none, zero = stax.Dense(4), stax.Dense(4, b_std=0.0)
    assert not none.layers[0].dense.HasField("b_std")
    assert zero.layers[0].dense.HasField("b_std") and zero.layers[0].dense.b_std == 0.0
    assert none != zero
    assert Architecture.from_json(zero.to_json()) == zero
    assert Architecture.from_json(none.to_json()) == none


def test_serial_flattens_and_json_round_trips() -> None:
    arch = stax.serial(
        stax.serial(stax.Dense(8, W_std=1.5, parameterization="standard")),
        stax.LeakyRelu(0.1),
        stax.Dense(1),
    )
    assert [layer.WhichOneof("layer") for layer in arch.layers] == ["dense", "leaky_relu", "dense"]
    back = Architecture.from_json(arch.to_json())
    assert back == arch and hash(back) == hash(arch)
    assert back.layers[0].dense.parameterization == pb.PARAMETERIZATION_STANDARD


def test_json_with_unknown_fields_is_an_error() -> None:
    with pytest.raises(Exception, match="wstd"):
        Architecture.from_json('{"layers": [{"dense": {"outDim": "3", "wstd": 1}}]}')


def test_layout_and_parameterization_are_checked() -> None:
    with pytest.raises(ValueError, match="channels-last"):
        stax.Dense(3, channel_axis=1)
    with pytest.raises(ValueError, match="parameterization"):
        stax.Dense(3, parameterization="mup")
