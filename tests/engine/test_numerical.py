"""ElementwiseNumerical: quadrature kernels against closed forms, and its validation.

Monte Carlo agreement for tanh and elu is in test_monte_carlo.py; symmetry, PSD and finite
gradients (zero inputs included) in test_every_layer.py.
"""

from __future__ import annotations

import numpy as np
import pytest
from ntkserve import stax
from ntkserve_engine.kernels import ArchitectureError, kernel_fn

GET = ("nngp", "ntk")


def _x() -> np.ndarray:
    """Rows of norm 2 in 4 features: pre-activation variances near 1 after Dense(W_std=1),
    where erf and erf' are smooth on the scale of the quadrature's nodes."""
    x = np.random.RandomState(0).randn(5, 4)
    return 2 * x / np.linalg.norm(x, axis=1, keepdims=True)


def _relative_errors(numerical: stax.Architecture, closed: stax.Architecture) -> list[float]:
    def net(layer: stax.Architecture) -> stax.Architecture:
        return stax.serial(stax.Dense(1, b_std=0.1), layer, stax.Dense(1, b_std=0.2))

    a = kernel_fn(net(numerical))(_x(), get=GET)
    b = kernel_fn(net(closed))(_x(), get=GET)
    return [float(np.abs(p - q).max() / np.abs(q).max()) for p, q in zip(a, b, strict=True)]


def test_erf_agrees_with_its_closed_form() -> None:
    """erf and erf' are entire: Gauss-Hermite converges faster than any power of deg. At deg
    100 both kernels agree to float64 rounding (measured ~1e-15; deg 25 gives ~1e-5)."""
    errors = _relative_errors(stax.ElementwiseNumerical("erf", deg=100), stax.Erf())
    assert max(errors) < 1e-12, errors


def test_relu_agrees_with_its_closed_form_within_the_quadratures_accuracy() -> None:
    """Relu has a kink and relu' a jump, where Gauss-Hermite converges only like a power of
    deg: the nodes next to the jump carry weight O(deg^-1/2) each, and the step's error is
    a fraction of that. Measured at deg 50 and 100: NNGP 2.4e-3 and 1.2e-3, NTK 1.9e-2 and
    1.2e-2. The bounds are the deg-50 figures; deg 100 must also do better than deg 50."""
    coarse = _relative_errors(stax.ElementwiseNumerical("relu", deg=50), stax.Relu())
    fine = _relative_errors(stax.ElementwiseNumerical("relu", deg=100), stax.Relu())
    assert coarse[0] < 3e-3 and coarse[1] < 2.5e-2, coarse
    assert fine[0] < coarse[0] and fine[1] < coarse[1], (coarse, fine)


@pytest.mark.parametrize(
    ("layer", "field", "problem"),
    [
        (stax.ElementwiseNumerical("tanh", deg=1), "deg", "between 2 and 100"),
        (stax.ElementwiseNumerical("tanh", deg=101), "deg", "between 2 and 100"),
    ],
)
def test_bad_parameters_name_the_field(layer: stax.Architecture, field: str, problem: str) -> None:
    with pytest.raises(ArchitectureError) as raised:
        kernel_fn(stax.serial(stax.Dense(1), layer))
    (violation,) = raised.value.violations
    assert violation[0].endswith(f"elementwise_numerical.{field}") and problem in violation[1]


def test_an_activation_is_required() -> None:
    from ntkserve.v1 import architecture_pb2 as pb

    arch = stax.serial(stax.Dense(1)).to_proto()
    arch.layers.add().elementwise_numerical.deg = 10
    with pytest.raises(ArchitectureError, match="activation: is required"):
        kernel_fn(arch)
    with pytest.raises(ValueError, match="unknown 'swishy'"):
        stax.ElementwiseNumerical("swishy")
    assert stax.ElementwiseNumerical("silu").layers[0].elementwise_numerical.activation == (
        pb.ACTIVATION_SWISH
    )
