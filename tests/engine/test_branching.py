"""Branches and loops: FanOut, parallel, FanInSum/Prod/Concat, Identity, repeat."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from ntkserve import stax
from ntkserve.v1 import architecture_pb2 as pb
from ntkserve_engine.kernels import ArchitectureError

from tests.engine.architectures_wrn import wide_resnet
from tests.engine.eager import kernel_fn

GET = ("nngp", "ntk")


def _xs() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.RandomState(0)
    return rng.randn(4, 6), rng.randn(3, 6)


def _both(arch: stax.Architecture) -> tuple[np.ndarray, np.ndarray]:
    x1, x2 = _xs()
    return tuple(np.asarray(k) for k in kernel_fn(arch)(x1, x2, get=GET))  # type: ignore[return-value]


def test_residual_sum_is_the_sum_of_branch_kernels() -> None:
    first = stax.Dense(8, W_std=1.3, b_std=0.2)
    n1, t1 = _both(first)
    n, t = _both(
        stax.serial(
            first,
            stax.FanOut(2),
            stax.parallel(stax.Identity(), stax.Dense(8, W_std=0.7, b_std=0.4)),
            stax.FanInSum(),
        )
    )
    branch = 0.49 * n1 + 0.16
    np.testing.assert_allclose(n, n1 + branch, rtol=1e-14)
    np.testing.assert_allclose(t, t1 + branch + 0.49 * t1, rtol=1e-14)


def test_product_follows_the_product_rule() -> None:
    first = stax.Dense(8, W_std=1.3, b_std=0.2)
    n1, t1 = _both(first)
    n, t = _both(
        stax.serial(
            first,
            stax.FanOut(2),
            stax.parallel(stax.Dense(8, W_std=0.7), stax.Dense(8, W_std=1.1, b_std=0.1)),
            stax.FanInProd(),
        )
    )
    a, b = 0.49 * n1, 1.21 * n1 + 0.01
    ta, tb = a + 0.49 * t1, b + 1.21 * t1
    np.testing.assert_allclose(n, a * b, rtol=1e-13)
    np.testing.assert_allclose(t, ta * b + a * tb, rtol=1e-13)


def test_concat_is_the_width_weighted_mean() -> None:
    first = stax.Dense(8, W_std=1.3, b_std=0.2)
    n1, t1 = _both(first)
    n, t = _both(
        stax.serial(
            first,
            stax.FanOut(2),
            stax.parallel(stax.Dense(10, W_std=0.7), stax.Dense(30, W_std=1.1)),
            stax.FanInConcat(),
        )
    )
    np.testing.assert_allclose(n, 0.25 * 0.49 * n1 + 0.75 * 1.21 * n1, rtol=1e-13)
    np.testing.assert_allclose(
        t, 0.25 * (0.49 * n1 + 0.49 * t1) + 0.75 * (1.21 * n1 + 1.21 * t1), rtol=1e-13
    )


def test_repeat_equals_unrolled_and_compiles_as_a_loop() -> None:
    block = stax.serial(stax.Dense(8, W_std=1.4, b_std=0.1), stax.Erf())
    looped = stax.serial(stax.Dense(8), stax.Erf(), stax.repeat(block, 6), stax.Dense(1))
    unrolled = stax.serial(stax.Dense(8), stax.Erf(), *[block] * 6, stax.Dense(1))
    for a, b in zip(_both(looped), _both(unrolled), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-13)
    kfn = kernel_fn(looped)
    x1, _ = _xs()
    jaxpr = str(jax.make_jaxpr(lambda x: kfn.apply(kfn.params, x, None, GET))(x1))
    assert "scan" in jaxpr
    # Shapes change on the first pass (width 6 -> 8): repeat still works when peeled.
    first = stax.repeat(stax.serial(stax.Dense(8, W_std=1.2), stax.Relu()), 3)
    plain = stax.serial(*[stax.serial(stax.Dense(8, W_std=1.2), stax.Relu())] * 3)
    np.testing.assert_allclose(
        _both(stax.serial(first, stax.Dense(1)))[1],
        _both(stax.serial(plain, stax.Dense(1)))[1],
        rtol=1e-13,
    )


BAD = pb.Layer(dense=pb.Dense(out_dim=2, w_std=-1.0))


def _proto(*layers: pb.Layer) -> pb.Architecture:
    return pb.Architecture(layers=list(layers))


@pytest.mark.parametrize(
    ("arch", "path", "needle"),
    [
        (
            stax.serial(stax.Dense(2), stax.FanInSum()),
            "architecture.layers[1].fan_in_sum",
            "FanOut",
        ),
        (
            stax.serial(stax.Dense(2), stax.FanOut(3), stax.parallel(stax.Relu(), stax.Relu())),
            "architecture.layers[2].parallel",
            "receives 3",
        ),
        (stax.serial(stax.Dense(2), stax.FanOut(2)), "architecture.layers", "ends with 2 branches"),
        (
            stax.serial(
                stax.Dense(2),
                stax.Relu(),
                stax.FanOut(2),
                stax.parallel(stax.Identity(), stax.Dense(2)),
                stax.FanInSum(),
            ),
            "architecture.layers[4].fan_in_sum",
            "Gaussian",
        ),
        (
            stax.serial(stax.Dense(2), stax.FanOut(2), stax.Relu()),
            "architecture.layers[2].relu",
            "join them",
        ),
        (
            stax.serial(stax.Dense(2), stax.FanOut(2), stax.parallel(), stax.FanInSum()),
            "architecture.layers[2].parallel.branches",
            "empty",
        ),
        (
            stax.serial(stax.Dense(2), stax.repeat(stax.Relu(), 2)),
            "architecture.layers[1].repeat.layer.relu",
            "Gaussian",
        ),
        (
            stax.serial(stax.Dense(2), stax.FanOut(2), stax.FanInConcat(axis=0)),
            "architecture.layers[2].fan_in_concat.axis",
            "-1",
        ),
        # A sub-layer's field path is its path in the message: canonical checks and the walk
        # name it alike (they once said branches[0][0] and layer[0]). Protos, not stax: the
        # client may refuse these values itself.
        (
            _proto(
                pb.Layer(dense=pb.Dense(out_dim=2)),
                pb.Layer(fan_out=pb.FanOut(num=2)),
                pb.Layer(parallel=pb.Parallel(branches=[pb.Layer(identity=pb.Identity()), BAD])),
                pb.Layer(fan_in_sum=pb.FanInSum()),
            ),
            "architecture.layers[2].parallel.branches[1].dense.w_std",
            ">= 0",
        ),
        (
            _proto(pb.Layer(dense=pb.Dense(out_dim=2)), pb.Layer(repeat=pb.Repeat(layer=BAD, n=2))),
            "architecture.layers[1].repeat.layer.dense.w_std",
            ">= 0",
        ),
        (
            _proto(pb.Layer(repeat=pb.Repeat(layer=pb.Layer(dense=pb.Dense(out_dim=2)), n=0))),
            "architecture.layers[0].repeat.n",
            "between 1 and 10000",
        ),
        (
            _proto(pb.Layer(dense=pb.Dense(out_dim=2)), pb.Layer(fan_out=pb.FanOut(num=300))),
            "architecture.layers[1].fan_out.num",
            "between 1 and 256",
        ),
    ],
)
def test_bad_branching_is_reported_with_paths(arch, path, needle) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ArchitectureError) as info:
        kernel_fn(arch)
    found = dict(info.value.violations)
    assert path in found, found
    assert needle in found[path]


# neural-tangents' issue #123 (WideResNet, standard parameterization, all-zero 32x32x3
# inputs) is in test_reference_conv.py, against the independent reference.


def test_wide_resnet_values_and_gradients_on_random_inputs() -> None:
    arch = wide_resnet(block_size=1, k=1, num_classes=1, pool=2)
    kfn = kernel_fn(arch)
    x = np.random.RandomState(1).randn(2, 8, 8, 3)
    nngp, ntk = kfn(x, get=GET)
    for k in (np.asarray(nngp), np.asarray(ntk)):
        np.testing.assert_array_equal(k, k.T)
        assert np.linalg.eigvalsh(k).min() >= 0
    g = jax.jit(jax.grad(lambda a: jnp.sum(kfn(a, get="ntk"))))(x)
    assert np.all(np.isfinite(g)) and np.any(g != 0)
