"""Values and gradients (neural-tangents' issue #123 and its history).

- value_and_grad returns exactly the plain kernel's values (no forward-value guards);
- gradients are finite everywhere: all-zero inputs, zero rows, parallel rows, x1 == x2;
- where the kernel is smooth, gradients match central finite differences in float64;
- hyper-parameters are inputs: their gradients exist and match finite differences too.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from ntkserve import stax
from ntkserve_server.kernels import kernel_fn

from tests.kernels.architectures import ALL


def _loss(kfn, get, x2=None, cotangent_seed=7):  # type: ignore[no-untyped-def]
    def loss(x1, x2=x2):  # type: ignore[no-untyped-def]
        out = kfn(x1, x2, get=get)
        rng = np.random.RandomState(cotangent_seed)
        return sum(jnp.sum(jnp.asarray(rng.randn(*k.shape), k.dtype) * k) for k in out)

    return loss


@pytest.mark.parametrize("arch", ALL)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_vjp_primal_is_exactly_the_kernel(arch: stax.Architecture, dtype: type) -> None:
    x = np.random.RandomState(0).randn(5, 4).astype(dtype)
    kfn = kernel_fn(arch)
    for x2 in (None, x[:3] * 0.5):
        plain = kfn(x, x2, get=("nngp", "ntk"))
        primal, _ = jax.vjp(lambda a, x2=x2: kfn(a, x2, get=("nngp", "ntk")), x)
        for p, q in zip(plain, primal, strict=True):
            assert p.dtype == dtype
            np.testing.assert_array_equal(p, q)


def _hard_cases(dtype: type) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Stacks of (x1 alone) and of (x1, x2) pairs where a kernel is not differentiable."""
    x = np.random.RandomState(1).randn(4, 3).astype(dtype)
    zero_row, parallel = x.copy(), x.copy()
    zero_row[1] = 0
    parallel[2] = 3 * parallel[0]
    alone = np.stack([np.zeros_like(x), zero_row, parallel])
    firsts = np.stack([np.zeros_like(x), x, x, parallel])
    seconds = np.stack([np.zeros_like(x), x.copy(), -x, 2 * parallel])
    return alone, firsts, seconds


@pytest.mark.parametrize("arch", ALL)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_gradients_are_finite_everywhere(arch: stax.Architecture, dtype: type) -> None:
    """All-zero inputs, zero rows, parallel rows, x1 == x2, x2 == -x1; NNGP and NTK alone."""
    kfn = kernel_fn(arch)
    weights = np.eye(2, dtype=dtype)  # the NNGP alone, then the NTK alone

    def loss(w, x1, x2=None):  # type: ignore[no-untyped-def]
        nngp, ntk = kfn(x1, x2, get=("nngp", "ntk"))
        return w[0] * jnp.sum(nngp) + w[1] * jnp.sum(ntk)

    alone, firsts, seconds = _hard_cases(dtype)
    # One program per form (x2 absent, x2 given), vmapped over the hard cases and called once
    # per weight: the weight is an argument, so both calls share the compilation (a vmap over
    # the weights too doubled the compile time: 9 s of CPU for Gelu's pair program).
    one = jax.jit(jax.vmap(jax.value_and_grad(loss, argnums=1), in_axes=(None, 0)))
    two = jax.jit(jax.vmap(jax.value_and_grad(loss, argnums=(1, 2)), in_axes=(None, 0, 0)))
    for w in weights:
        for value, grads in (one(w, alone), two(w, firsts, seconds)):
            assert np.all(np.isfinite(value))
            for g in jax.tree.leaves(grads):
                assert np.all(np.isfinite(g))


@pytest.mark.parametrize("arch", ALL)
def test_all_zero_inputs_give_zero_gradient_without_bias(arch: stax.Architecture) -> None:
    kfn = kernel_fn(arch)
    g = jax.grad(lambda a: jnp.sum(kfn(a, get="ntk")))(np.zeros((3, 4)))
    assert np.all(np.isfinite(g))
    # The kernel is homogeneous-like around 0 only without biases; with them it is smooth and
    # its gradient at 0 need not vanish. Either way it must be finite (checked above).
    if all(
        not layer.dense.HasField("b_std")
        for layer in kfn.architecture.layers
        if layer.WhichOneof("layer") == "dense"
    ):
        np.testing.assert_array_equal(g, 0)


def _central_difference(f, x: np.ndarray, eps: float = 1e-6) -> np.ndarray:  # type: ignore[no-untyped-def]
    """Central differences along every coordinate, evaluated as one batched call."""
    steps = np.eye(x.size).reshape(x.size, *x.shape) * eps
    values = jax.jit(jax.vmap(f))(np.concatenate([x + steps, x - steps]))
    return np.asarray((values[: x.size] - values[x.size :]) / (2 * eps)).reshape(x.shape)


@pytest.mark.parametrize("arch", ALL)
def test_input_gradients_match_finite_differences(arch: stax.Architecture) -> None:
    get = ("nngp", "ntk")  # each with its own random cotangent
    rng = np.random.RandomState(2)
    x1, x2 = rng.randn(3, 4), rng.randn(2, 4)
    kfn = kernel_fn(arch)
    for other in (None, x2):
        loss = _loss(kfn, get, other)
        g = np.asarray(jax.grad(loss)(x1))
        np.testing.assert_allclose(g, _central_difference(loss, x1), rtol=1e-5, atol=1e-7)
    loss2 = lambda b: _loss(kfn, get)(x1, b)  # noqa: E731
    np.testing.assert_allclose(
        np.asarray(jax.grad(loss2)(x2)), _central_difference(loss2, x2), rtol=1e-5, atol=1e-7
    )


@pytest.mark.parametrize("arch", ALL)
def test_hyper_parameter_gradients_match_finite_differences(arch: stax.Architecture) -> None:
    rng = np.random.RandomState(3)
    x1, x2 = rng.randn(3, 4), rng.randn(2, 4)
    kfn = kernel_fn(arch)

    def loss(params):  # type: ignore[no-untyped-def]
        return jnp.sum(kfn(x1, x2, get="ntk", params=params))

    grads, _ = jax.tree.flatten(jax.grad(loss)(kfn.params))
    values, tree = jax.tree.flatten(kfn.params)
    for i, (grad, value) in enumerate(zip(grads, values, strict=True)):

        def shifted(delta: float, i: int = i, value: float = value) -> float:
            moved = list(values)
            moved[i] = value + delta
            return float(loss(jax.tree.unflatten(tree, moved)))

        fd = (shifted(1e-6) - shifted(-1e-6)) / 2e-6
        np.testing.assert_allclose(float(grad), fd, rtol=1e-5, atol=1e-7)


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
