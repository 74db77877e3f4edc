"""Where the kernel is smooth, gradients match central finite differences in float64: with
respect to the inputs and to the hyper-parameters, which are program inputs, not constants
(neural-tangents' issue #123 and its history; split from test_gradients.py so the two run on
separate workers)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from ntkserve import stax
from ntkserve_engine.kernels import kernel_fn

from tests.engine.architectures import ALL
from tests.engine.gradient_helpers import (
    assert_hyper_gradients_match,
    central_difference,
    cotangent_loss,
)


@pytest.mark.parametrize("arch", ALL)
def test_input_gradients_match_finite_differences(arch: stax.Architecture) -> None:
    get = ("nngp", "ntk")  # each with its own random cotangent
    rng = np.random.RandomState(2)
    x1, x2 = rng.randn(3, 4), rng.randn(2, 4)
    kfn = kernel_fn(arch)
    for other in (None, x2):
        loss = cotangent_loss(kfn, get, other)
        g = np.asarray(jax.grad(loss)(x1))
        np.testing.assert_allclose(g, central_difference(loss, x1), rtol=1e-5, atol=1e-7)
    loss2 = lambda b: cotangent_loss(kfn, get)(x1, b)  # noqa: E731
    np.testing.assert_allclose(
        np.asarray(jax.grad(loss2)(x2)), central_difference(loss2, x2), rtol=1e-5, atol=1e-7
    )


@pytest.mark.parametrize("arch", ALL)
def test_hyper_parameter_gradients_match_finite_differences(arch: stax.Architecture) -> None:
    rng = np.random.RandomState(3)
    x1, x2 = rng.randn(3, 4), rng.randn(2, 4)
    kfn = kernel_fn(arch)

    def loss(params):  # type: ignore[no-untyped-def]
        return jnp.sum(kfn(x1, x2, get="ntk", params=params))

    assert_hyper_gradients_match(loss, kfn.params)


def test_hyper_parameters_are_inputs_not_constants() -> None:
    arch = stax.serial(stax.Dense(8, W_std=1.0, b_std=0.1), stax.Erf(), stax.Dense(1))
    kfn = kernel_fn(arch)
    traces = []

    def counted(params, x):  # type: ignore[no-untyped-def]
        traces.append(1)
        return kfn.apply(params, x, None, ("ntk",))

    jitted = jax.jit(counted)
    x = np.random.RandomState(4).randn(3, 2)
    for w in (0.5, 1.0, 1.5, 2.0):
        params = ({"w_std": w, "b_std": 0.1}, {"a": 1.0, "b": 1.0, "c": 0.0}, {"w_std": 1.0})
        swept = jitted(params, x)[0]
        rebuilt = kernel_fn(
            stax.serial(stax.Dense(8, W_std=w, b_std=0.1), stax.Erf(), stax.Dense(1))
        )
        np.testing.assert_allclose(swept, rebuilt(x, get="ntk"), rtol=1e-13)
    assert len(traces) == 1  # one compilation for the whole sweep
