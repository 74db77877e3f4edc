"""Values and gradients (neural-tangents' issue #123 and its history).

- value_and_grad returns exactly the plain kernel's values (no forward-value guards);
- gradients are finite everywhere: all-zero inputs, zero rows, parallel rows, x1 == x2;
- (test_gradients_finite_differences.py: where the kernel is smooth, gradients match central
  finite differences in float64, hyper-parameters' too; the two files run on separate
  workers.)
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from ntkserve import stax
from ntkserve_engine.kernels import kernel_fn

from tests.engine.architectures import ALL


@pytest.mark.parametrize("arch", ALL)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_vjp_primal_is_exactly_the_kernel(arch: stax.Architecture, dtype: type) -> None:
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
