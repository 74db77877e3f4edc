"""`KernelFn.__call__`, the in-process call: what the README promises of it.

- it runs the server's jitted program and host mirror: its values are the service's
  `ComputeEngine.kernel` values (what ComputeKernel sends) bit for bit, x2 = None exactly
  symmetric;
- networks that differ only in hyper-parameter values share one program and compilation;
- inside the caller's jax.jit, jax.vmap and jax.vjp it traces the pure `apply`: the same
  function, equal to the direct call to rounding (not bit for bit: each program fuses its
  own way), and the primal of a vjp is the eager `apply`'s bit for bit;
- `params` is checked: a clear InputError naming `params` and the expected structure.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from ntkserve import stax
from ntkserve_engine.kernels import InputError, kernel_fn
from ntkserve_engine.kernels.jitted import jitted_apply
from ntkserve_server.compute import ComputeEngine, check

GET = ("nngp", "ntk")
ENGINE = ComputeEngine()
ARCHS = {
    "dense": (
        stax.serial(stax.Dense(64, W_std=1.5, b_std=0.05), stax.Relu(), stax.Dense(1)),
        (7, 5),
    ),
    "pooled": (  # every pair of positions, mirrored over (sample, position) pairs
        stax.serial(stax.Conv(4, (2, 2), padding="SAME"), stax.Erf(), stax.GlobalAvgPool()),
        (4, 3, 3, 2),
    ),
    "positions": (  # (N, N, H, W) kept at the output
        stax.serial(stax.Conv(4, (2, 2), padding="SAME"), stax.Relu(), stax.Conv(1, (2, 2))),
        (3, 4, 3, 2),
    ),
}
# Traced and direct calls: the same function compiled into different programs.
ROUNDING = {np.float32: 1e-5, np.float64: 1e-13}


def _x(shape: tuple[int, ...], dtype: type, seed: int = 0) -> np.ndarray:
    return np.random.RandomState(seed).randn(*shape).astype(dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(("arch", "shape"), ARCHS.values(), ids=ARCHS.keys())
def test_the_call_gives_the_services_values_bit_for_bit(
    arch: stax.Architecture, shape: tuple[int, ...], dtype: type
) -> None:
    kfn = kernel_fn(arch)
    compiled = ENGINE.compiled(kfn)
    x1, x2 = _x(shape, dtype), _x((2, *shape[1:]), dtype, seed=1)
    for other in (None, x2):
        mine = kfn(x1, other, get=GET)
        service = ENGINE.kernel(check(compiled, x1, other, GET))
        for a, b in zip(mine, service, strict=True):
            assert isinstance(a, jax.Array)
            assert a.dtype == dtype
            np.testing.assert_array_equal(a, b)
        if other is None:
            for a in mine:
                swap = (1, 0, *range(2, a.ndim))
                np.testing.assert_array_equal(a, jnp.transpose(a, swap))


def test_a_masked_call_gives_the_services_values_bit_for_bit() -> None:
    arch = stax.serial(stax.Dense(8, b_std=0.1), stax.Relu(), stax.GlobalAvgPool())
    kfn = kernel_fn(arch)
    x = _x((3, 5, 2), np.float64)
    x[0, 3:] = -7.0
    for mask in (-7.0, 2.5):  # one program for every constant
        mine = kfn(x, get=GET, mask_constant=mask)
        service = ENGINE.kernel(check(ENGINE.compiled(kfn), x, None, GET, mask_constant=mask))
        for a, b in zip(mine, service, strict=True):
            np.testing.assert_array_equal(a, b)
    assert jitted_apply(kfn)._cache_size() == 1


def test_networks_differing_in_hyper_parameters_share_one_compilation() -> None:
    x = _x((5, 3), np.float64)
    nets = [
        kernel_fn(stax.serial(stax.Dense(16, W_std=w, b_std=0.2), stax.Erf(), stax.Dense(1)))
        for w in (0.5, 1.0, 2.0)
    ]
    values = [np.asarray(kfn(x, get="ntk")) for kfn in nets]
    assert jitted_apply(nets[0]) is jitted_apply(nets[2])
    assert jitted_apply(nets[0])._cache_size() == 1
    assert not np.array_equal(values[0], values[2])  # each its own W_std
    sweep = nets[0](x, get="ntk", params=nets[2].params)
    np.testing.assert_array_equal(sweep, values[2])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_traced_calls_are_the_same_function_to_rounding(dtype: type) -> None:
    arch, shape = ARCHS["pooled"]
    kfn = kernel_fn(arch)
    x = _x(shape, dtype)
    direct = kfn(x, get=GET)
    primal, _ = jax.vjp(lambda a: kfn(a, get=GET), x)
    eager = kfn.apply(kfn.params, jnp.asarray(x), None, GET)
    for traced in (
        jax.jit(lambda a: kfn(a, get=GET))(x),
        tuple(k[0] for k in jax.vmap(lambda a: kfn(a, get=GET))(x[None])),
        primal,
    ):
        for a, b in zip(traced, direct, strict=True):
            scale = float(jnp.max(jnp.abs(b)))
            rtol = ROUNDING[dtype]
            np.testing.assert_allclose(a, b, rtol=rtol, atol=rtol * scale)
    for p, e in zip(primal, eager, strict=True):  # no forward guards under differentiation
        np.testing.assert_array_equal(p, e)


def test_a_traced_call_of_thousands_of_inputs_compiles_and_is_symmetric() -> None:
    """A user's own jit of x2 = None: the kernel made symmetric in the graph. With the
    mirror as a select on an iota mask this call did not finish in 60 s (XLA-CPU's compile
    time grew with the square of the rows; a 3-layer ReLU network at 2,000 inputs compiled
    for 3.5 min and then crashed the process)."""
    kfn = kernel_fn(ARCHS["dense"][0])
    x = _x((2000, 5), np.float32)
    traced = jax.jit(lambda a: kfn(a, get=GET))(x)
    for a, b in zip(traced, kfn(x, get=GET), strict=True):
        np.testing.assert_array_equal(a, np.asarray(a).T)
        scale = float(jnp.max(jnp.abs(b)))
        np.testing.assert_allclose(
            a, b, rtol=ROUNDING[np.float32], atol=ROUNDING[np.float32] * scale
        )


def test_hyper_parameters_are_differentiable_through_the_call() -> None:
    kfn = kernel_fn(ARCHS["dense"][0])
    x = _x((4, 5), np.float64)
    grads = jax.grad(lambda p: jnp.sum(kfn(x, get="ntk", params=p)))(kfn.params)
    assert jax.tree.structure(grads) == jax.tree.structure(kfn.params)
    assert all(np.isfinite(g) and g != 0 for g in jax.tree.leaves(grads))


@pytest.mark.parametrize(
    ("params", "field", "problem"),
    [
        ({"w_std": 1.5}, "params", "must be shaped like kfn.params"),
        ([{"w_std": 1.5, "b_std": 0.05}, {}, {"w_std": 1.0}], "params", "a tuple with one dict"),
        (({"w_std": 1.5}, {}, {"w_std": 1.0}), "params", "{'w_std': 1.5, 'b_std': 0.05}"),
        (({"w_std": 1.5, "b_std": 0.05}, {}), "params", "got ({'w_std': 1.5"),
        (({"w_std": [1.5, 2.0], "b_std": 0.05}, {}, {"w_std": 1.0}), "params", "shaped like"),
        (
            ({"w_std": np.ones(2), "b_std": 0.05}, {}, {"w_std": 1.0}),
            "params[0]['w_std']",
            "must be a scalar, got shape [2]",
        ),
    ],
)
def test_params_of_another_structure_are_refused(params: object, field: str, problem: str) -> None:
    kfn = kernel_fn(ARCHS["dense"][0])
    with pytest.raises(InputError) as caught:
        kfn(_x((2, 5), np.float64), params=params)  # type: ignore[arg-type]
    assert caught.value.violations[0][0] == field
    assert problem in caught.value.violations[0][1]
