"""Values and gradients (neural-tangents' issue #123 and its history).

- value_and_grad returns exactly the plain kernel's values (no forward-value guards);
- gradients are finite everywhere: all-zero inputs, zero rows, parallel rows, x1 == x2,
  x2 == -x1, for the NNGP alone and the NTK alone, in float32 and float64;
- at all-zero inputs without biases the gradient is exactly zero;
- where the kernel is smooth, gradients match central finite differences in float64, with
  respect to the inputs and to the hyper-parameters, which are program inputs, not constants.

A network's float64 checks are the cases of one batched program per form (x2 absent, x2
given): compiling is their cost (`gradient_helpers.GradientCases`).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from ntkserve import stax
from ntkserve_engine.kernels import KernelFn, kernel_fn

from tests.engine.architectures import ALL, REFERENCE
from tests.engine.gradient_helpers import GradientCases


@pytest.mark.parametrize("arch", ALL)
def test_vjp_primal_is_exactly_the_kernel(arch: stax.Architecture) -> None:
    """Eager, in float64 (each run of a network op by op costs seconds of dispatch); the
    custom rules, the only place a value could change, are checked in float32 as well in
    test_safe_math.py."""
    dtype = np.float64
    x = np.random.RandomState(0).randn(5, 4).astype(dtype)
    kfn = kernel_fn(arch)
    for x2 in (None, x[:3] * 0.5):
        # Under jax.vjp the call traces the pure `apply`: its eager run is the plain kernel.
        second = None if x2 is None else jnp.asarray(x2)
        plain = kfn.apply(kfn.params, jnp.asarray(x), second, ("nngp", "ntk"))
        primal, _ = jax.vjp(lambda a, x2=x2: kfn(a, x2, get=("nngp", "ntk")), x)
        for p, q in zip(plain, primal, strict=True):
            assert p.dtype == dtype
            np.testing.assert_array_equal(p, q)


def _hard_inputs(dtype: type) -> tuple[list[np.ndarray], list[tuple[np.ndarray, np.ndarray]]]:
    """Inputs where a kernel is not differentiable: x1 alone, and (x1, x2) pairs."""
    x = np.random.RandomState(1).randn(3, 4).astype(dtype)
    zero_row, parallel = x.copy(), x.copy()
    zero_row[1] = 0
    parallel[2] = 3 * parallel[0]
    alone = [np.zeros_like(x), zero_row, parallel]
    pairs = [(np.zeros_like(x), np.zeros_like(x[:2])), (x, x[:2].copy()), (x, -x[:2])]
    return alone, [*pairs, (parallel, 2 * parallel[:2])]


def _one_kernel_cotangents(n1: int, n2: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """The NNGP alone, then the NTK alone, as users differentiate them: a zero cotangent
    meeting an infinite partial derivative makes a NaN only then."""
    ones, zeros = np.ones((n1, n2)), np.zeros((n1, n2))
    return [(ones, zeros), (zeros, ones)]


def _add_hard_cases(cases: GradientCases, dtype: type) -> list[int]:
    alone, pairs = _hard_inputs(dtype)
    inputs = [(x, None) for x in alone] if not cases.paired else pairs
    return [
        cases.add(x1, x2, cotangents)
        for x1, x2 in inputs
        for cotangents in _one_kernel_cotangents(len(x1), len(x1) if x2 is None else len(x2))
    ]


def _without_biases(kfn: KernelFn) -> bool:
    return all(
        not layer.dense.HasField("b_std")
        for layer in kfn.architecture.layers
        if layer.WhichOneof("layer") == "dense"
    )


@pytest.mark.parametrize("arch", ALL)
def test_gradients_are_finite_and_match_finite_differences(arch: stax.Architecture) -> None:
    """float64: finite at the hard inputs; zero at all-zero inputs without biases (with them
    the kernel is smooth there and its gradient need not vanish); central differences in the
    inputs and in every hyper-parameter match, x2 absent and given."""
    kfn = kernel_fn(arch)
    rng = np.random.RandomState(2)
    x1, x2 = rng.randn(3, 4), rng.randn(2, 4)
    for second in (None, x2):
        cases = GradientCases(kfn, None if second is None else len(second), np.float64)
        hard = _add_hard_cases(cases, np.float64)
        inputs = cases.add_input_differences(x1, second, seed=7)
        hyper = cases.add_hyper_differences(x1, second, seed=8)
        cases.run()
        assert all(cases.all_finite(case) for case in hard)
        if second is None and _without_biases(kfn):
            for case in hard[:2]:  # all-zero inputs, each kernel alone
                np.testing.assert_array_equal(cases.input_grads[0][case], 0)
        cases.assert_input_gradients_match(inputs)
        cases.assert_hyper_gradients_match_at(hyper)


REFERENCE_IDS = {p.id for p in REFERENCE}
# float32: the closed forms in the ntk parameterization only (the standard one scales the
# same kernels by the layers' widths, which rounding does not mind; its float64 checks stay).
FLOAT32 = [p for p in ALL if not (p.id in REFERENCE_IDS and "-standard-" in str(p.id))]


@pytest.mark.parametrize("arch", FLOAT32)
def test_float32_gradients_are_finite_everywhere(arch: stax.Architecture) -> None:
    kfn = kernel_fn(arch)
    for x2_rows in (None, 2):
        cases = GradientCases(kfn, x2_rows, np.float32)
        hard = _add_hard_cases(cases, np.float32)
        cases.run()
        assert cases.values.dtype == np.float32
        assert all(cases.all_finite(case) for case in hard)


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
