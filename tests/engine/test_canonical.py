"""Validation with field paths, the canonical form, and ids that hash it."""

from __future__ import annotations

import numpy as np
import pytest
from ntkserve import stax
from ntkserve.v1 import architecture_pb2 as pb
from ntkserve_engine.kernels import ArchitectureError, InputError

from tests.engine.architectures import ALL
from tests.engine.eager import kernel_fn


def _arch(*layers: pb.Layer) -> pb.Architecture:
    return pb.Architecture(layers=layers)


def test_defaults_spelled_out_or_not_give_one_id() -> None:
    implicit = _arch(
        pb.Layer(dense=pb.Dense(out_dim=8)),
        pb.Layer(erf=pb.Erf()),
        pb.Layer(dense=pb.Dense(out_dim=1)),
    )
    explicit = stax.serial(stax.Dense(8, W_std=1.0), stax.Erf(1.0, 1.0, 0.0), stax.Dense(1))
    assert kernel_fn(implicit).id == kernel_fn(explicit).id


def test_nested_serials_are_flattened() -> None:
    flat = stax.serial(stax.Dense(8), stax.Relu(), stax.Dense(1))
    nested = _arch(
        pb.Layer(
            serial=pb.Serial(
                layers=[
                    pb.Layer(dense=pb.Dense(out_dim=8)),
                    pb.Layer(serial=pb.Serial(layers=[pb.Layer(relu=pb.Relu())])),
                ]
            )
        ),
        pb.Layer(dense=pb.Dense(out_dim=1)),
    )
    assert kernel_fn(nested).id == kernel_fn(flat).id
    assert kernel_fn(nested).architecture == kernel_fn(flat).architecture


def test_different_networks_get_different_ids() -> None:
    ids = {kernel_fn(p.values[0]).id for p in ALL}
    assert len(ids) == len(ALL)


def _violations(arch: pb.Architecture) -> dict[str, str]:
    with pytest.raises(ArchitectureError) as info:
        kernel_fn(arch)
    return dict(info.value.violations)


def test_every_violation_is_reported_with_its_path() -> None:
    arch = _arch(
        pb.Layer(dense=pb.Dense(w_std=-1.0, b_std=float("nan"))),
        pb.Layer(ab_relu=pb.ABRelu(a=1.0)),
        pb.Layer(),
        pb.Layer(dense=pb.Dense(out_dim=3, s_in=0)),
        pb.Layer(relu=pb.Relu()),
        pb.Layer(relu=pb.Relu()),
        pb.Layer(serial=pb.Serial()),
    )
    found = _violations(arch)
    assert "is required" in found["architecture.layers[0].dense.out_dim"]
    assert ">= 0" in found["architecture.layers[0].dense.w_std"]
    assert "finite" in found["architecture.layers[0].dense.b_std"]
    assert "is required" in found["architecture.layers[1].ab_relu.b"]
    assert "no layer type" in found["architecture.layers[2]"]
    assert ">= 1" in found["architecture.layers[3].dense.s_in"]
    assert "Gaussian" in found["architecture.layers[5].relu"]
    assert "architecture.layers[4].relu" not in found
    assert "empty" in found["architecture.layers[6].serial.layers"]


def test_empty_network_is_rejected() -> None:
    assert "empty" in _violations(pb.Architecture())["architecture.layers"]


def test_nonlinearity_on_raw_inputs_is_rejected() -> None:
    found = _violations(stax.serial(stax.Erf(), stax.Dense(1)).to_proto())
    assert "affine layer" in found["architecture.layers[0].erf"]


def test_unknown_fields_are_rejected() -> None:
    dense = pb.Dense(out_dim=4)
    raw = dense.SerializeToString() + bytes([(15 << 3) | 0, 1])  # field 15, varint 1
    layer = pb.Layer(dense=pb.Dense.FromString(raw))
    assert "unknown field numbers [15]" in _violations(_arch(layer))["architecture.layers[0].dense"]


@pytest.mark.parametrize(
    ("x1", "x2", "field"),
    [
        (np.zeros((3,)), None, "x1.shape"),
        (np.zeros((3, 4)), np.zeros((2, 5)), "x2.shape"),
        (np.zeros((0, 4)), None, "x1.shape"),
        (np.zeros((3, 4), np.int32), None, "x1.dtype"),
        (np.zeros((3, 4)), np.zeros((2, 4), np.float32), "x2.dtype"),
    ],
)
def test_bad_inputs_name_the_field(x1: np.ndarray, x2: np.ndarray | None, field: str) -> None:
    with pytest.raises(InputError) as info:
        kernel_fn(stax.Dense(1))(x1, x2)
    assert info.value.violations[0][0] == field


def test_bad_get_is_rejected() -> None:
    with pytest.raises(InputError, match="get"):
        kernel_fn(stax.Dense(1))(np.zeros((2, 2)), get="cov")


@pytest.mark.parametrize("arch", ALL)
def test_kernels_are_symmetric_and_positive_semidefinite(arch: stax.Architecture) -> None:
    x = np.random.RandomState(5).randn(12, 6)
    x[3] = 0
    x[4] = 2 * x[5]
    for k in kernel_fn(arch)(x, get=("nngp", "ntk")):
        k = np.asarray(k)
        np.testing.assert_array_equal(k, k.T)
        assert np.linalg.eigvalsh(k).min() >= -1e-12 * np.abs(k).max()


def test_float32_in_float32_out_and_close_to_float64() -> None:
    arch = stax.serial(stax.Dense(64, W_std=1.5, b_std=0.1), stax.Relu(), stax.Dense(1))
    x = np.random.RandomState(6).randn(5, 7)
    k64 = np.asarray(kernel_fn(arch)(x))
    k32 = np.asarray(kernel_fn(arch)(x.astype(np.float32)))
    assert k32.dtype == np.float32 and k64.dtype == np.float64
    np.testing.assert_allclose(k32, k64, rtol=1e-5)


def test_float64_without_x64_is_refused_not_downcast() -> None:
    import jax

    jax.config.update("jax_enable_x64", False)
    try:
        with pytest.raises(InputError, match="jax_enable_x64"):
            kernel_fn(stax.Dense(1))(np.zeros((2, 3)))
    finally:
        jax.config.update("jax_enable_x64", True)


def test_elementwise_parameters_out_of_range_are_rejected() -> None:
    arch = _arch(
        pb.Layer(dense=pb.Dense(out_dim=3)),
        pb.Layer(monomial=pb.Monomial()),
        pb.Layer(dense=pb.Dense(out_dim=3)),
        pb.Layer(hermite=pb.Hermite(degree=17)),
        pb.Layer(dense=pb.Dense(out_dim=3)),
        pb.Layer(gaussian=pb.Gaussian(b=0.5)),
        pb.Layer(dense=pb.Dense(out_dim=3)),
        pb.Layer(rbf=pb.Rbf(gamma=-1.0)),
        pb.Layer(dense=pb.Dense(out_dim=3)),
        pb.Layer(polynomial=pb.Polynomial()),
        pb.Layer(dense=pb.Dense(out_dim=3)),
        pb.Layer(polynomial=pb.Polynomial(coef=[1.0, float("nan")])),
        pb.Layer(dense=pb.Dense(out_dim=3)),
        pb.Layer(sin=pb.Sin(c=float("inf"))),
    )
    found = _violations(arch)
    assert "is required" in found["architecture.layers[1].monomial.degree"]
    assert "between 0 and 16" in found["architecture.layers[3].hermite.degree"]
    assert "<= 0" in found["architecture.layers[5].gaussian.b"]
    assert ">= 0" in found["architecture.layers[7].rbf.gamma"]
    assert "at least one" in found["architecture.layers[9].polynomial.coef"]
    assert "finite" in found["architecture.layers[11].polynomial.coef[1]"]
    assert "finite" in found["architecture.layers[13].sin.c"]


def test_defaults_of_the_elementwise_family_are_neural_tangents() -> None:
    for layer, field, expected in (
        (stax.Sin(), "sin", {"a": 1.0, "b": 1.0, "c": 0.0}),
        (stax.Cos(), "cos", {"a": 1.0, "b": 1.0, "c": 0.0}),
        (stax.Rbf(), "rbf", {"gamma": 1.0}),
        (stax.Exp(), "exp", {"a": 1.0, "b": 1.0}),
        (stax.Gaussian(), "gaussian", {"a": 1.0, "b": -1.0}),
    ):
        canonical = kernel_fn(stax.serial(stax.Dense(2), layer)).architecture.layers[1]
        assert {k: getattr(getattr(canonical, field), k) for k in expected} == expected
    # Absent fields take the defaults too, so both spellings are one network.
    bare = _arch(pb.Layer(dense=pb.Dense(out_dim=2)), pb.Layer(gaussian=pb.Gaussian()))
    assert kernel_fn(bare).id == kernel_fn(stax.serial(stax.Dense(2), stax.Gaussian())).id
