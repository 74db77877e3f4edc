"""Convolutions and pooling: exact identities, layouts, gradients and shape errors."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from ntkserve import stax
from ntkserve_engine.kernels import InputError, KernelFn, kernel_fn

CNN_FLATTEN = stax.serial(
    stax.Conv(16, (3, 3), padding="SAME", W_std=1.5, b_std=0.1),
    stax.Relu(),
    stax.Conv(16, (2, 2), strides=(2, 1), padding="CIRCULAR", W_std=1.2),
    stax.Erf(),
    stax.Conv(16, (2, 2), W_std=1.1, b_std=0.0, parameterization="standard"),
    stax.Abs(),
    stax.Flatten(),
    stax.Dense(1, W_std=1.3, b_std=0.2),
)
CNN_POOL = stax.serial(
    stax.Conv(16, (3, 3), padding="CIRCULAR", W_std=1.5, b_std=0.1),
    stax.Relu(),
    stax.AvgPool((2, 2), strides=(1, 2), padding="SAME"),
    stax.Conv(16, (2, 2), padding="SAME", W_std=1.2),
    stax.LeakyRelu(0.2),
    stax.SumPool((2, 1)),
    stax.GlobalAvgPool(),
    stax.Dense(1, b_std=0.1),
)
ARCHS = [pytest.param(CNN_FLATTEN, id="cnn-flatten"), pytest.param(CNN_POOL, id="cnn-pool")]


def _images(n: int, seed: int = 0, shape: tuple[int, ...] = (5, 4, 3)) -> np.ndarray:
    return np.random.RandomState(seed).randn(n, *shape)


def test_layout_is_decided_per_network() -> None:
    assert not kernel_fn(CNN_FLATTEN).position_pairs  # O(N1 N2 |S|)
    assert kernel_fn(CNN_POOL).position_pairs  # pooling needs every pair of positions


def test_flatten_readout_is_the_same_with_position_pairs() -> None:
    x1, x2 = _images(3), _images(2, 1)
    get = ("nngp", "ntk")
    same_fn, pairs_fn = kernel_fn(CNN_FLATTEN), KernelFn(CNN_FLATTEN, force_position_pairs=True)
    same = jax.jit(same_fn.apply, static_argnums=3)(same_fn.params, x1, x2, get)
    pairs = jax.jit(pairs_fn.apply, static_argnums=3)(pairs_fn.params, x1, x2, get)
    for a, b in zip(same, pairs, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-12)


def test_one_by_one_conv_then_flatten_is_dense_on_flattened_inputs() -> None:
    x1, x2 = _images(3), _images(2, 1)
    conv = kernel_fn(stax.serial(stax.Conv(8, (1, 1), W_std=1.3, b_std=0.2), stax.Flatten()))
    dense = kernel_fn(stax.serial(stax.Flatten(), stax.Dense(8, W_std=1.3, b_std=0.2)))
    for a, b in zip(
        conv(x1, x2, get=("nngp", "ntk")),
        dense(x1.reshape(3, -1), x2.reshape(2, -1), get=("nngp", "ntk")),
        strict=True,
    ):
        np.testing.assert_allclose(a, b, rtol=1e-13)


def test_circular_cnn_on_constant_images_is_the_fully_connected_network() -> None:
    # Circular convolutions keep constant images constant, and pooling a constant image
    # changes nothing: the CNN's kernel must be the FC network's on the channel vectors.
    v1, v2 = np.random.RandomState(3).randn(3, 4), np.random.RandomState(4).randn(2, 4)
    images = lambda v: np.broadcast_to(v[:, None, None, :], (len(v), 4, 3, 4)).copy()  # noqa: E731
    cnn = stax.serial(
        stax.Conv(8, (3, 2), padding="CIRCULAR", W_std=1.4, b_std=0.3),
        stax.Relu(),
        stax.AvgPool((2, 2), padding="CIRCULAR"),
        stax.Conv(8, (2, 3), padding="CIRCULAR", W_std=1.2),
        stax.Erf(),
        stax.GlobalAvgPool(),
        stax.Dense(1, W_std=0.9, b_std=0.1),
    )
    fc = stax.serial(
        stax.Dense(8, W_std=1.4, b_std=0.3),
        stax.Relu(),
        stax.Dense(8, W_std=1.2),
        stax.Erf(),
        stax.Dense(1, W_std=0.9, b_std=0.1),
    )
    got = kernel_fn(cnn)(images(v1), images(v2), get=("nngp", "ntk"))
    want = kernel_fn(fc)(v1, v2, get=("nngp", "ntk"))
    for a, b in zip(got, want, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-12)


@pytest.mark.parametrize("arch", ARCHS)
def test_symmetric_path_and_positive_semidefinite(arch: stax.Architecture) -> None:
    x = _images(6, 5)
    x[2] = 0
    kfn = kernel_fn(arch)
    whole = kfn(x, get=("nngp", "ntk"))
    explicit = kfn(x, x.copy(), get=("nngp", "ntk"))
    for a, b in zip(whole, explicit, strict=True):
        a = np.asarray(a)
        np.testing.assert_allclose(a, b, rtol=1e-7, atol=1e-12)
        np.testing.assert_array_equal(a, a.T)
        assert np.linalg.eigvalsh(a).min() >= -1e-12 * np.abs(a).max()


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_values_and_gradients(arch: stax.Architecture, dtype: type) -> None:
    kfn = kernel_fn(arch)
    x = _images(3, 6).astype(dtype)
    # Values under a vjp: test_safe_math.py (the only custom rules; convolutions and pooling
    # are plain jax, whose derivatives never change a value) and test_gradients.py.
    grad = jax.jit(jax.grad(lambda a: sum(jnp.sum(k) for k in kfn(a, get=("nngp", "ntk")))))
    for x1 in (np.zeros_like(x), np.stack([x[0], 2 * x[0], 0 * x[0]])):
        assert np.all(np.isfinite(grad(x1)))


def test_gradients_match_finite_differences() -> None:
    kfn = kernel_fn(CNN_POOL)
    x1, x2 = _images(2, 7, (3, 3, 2)), _images(2, 8, (3, 3, 2))
    loss = lambda a: jnp.sum(kfn(a, x2, get="ntk") * jnp.arange(1.0, 5.0).reshape(2, 2))  # noqa: E731
    g = np.asarray(jax.jit(jax.grad(loss))(x1))
    eps = 1e-6
    steps = np.eye(x1.size).reshape(x1.size, *x1.shape) * eps
    values = jax.jit(jax.vmap(loss))(np.concatenate([x1 + steps, x1 - steps]))
    fd = np.asarray((values[: x1.size] - values[x1.size :]) / (2 * eps)).reshape(x1.shape)
    np.testing.assert_allclose(g, fd, rtol=1e-5, atol=1e-8)


@pytest.mark.parametrize(
    ("arch", "shape", "needle"),
    [
        (stax.serial(stax.Conv(4, (3, 3)), stax.Flatten()), (2, 5), "layers[0].conv"),
        (stax.serial(stax.Conv(4, (3, 3)), stax.Flatten()), (2, 2, 5, 3), "VALID window of 3"),
        (stax.serial(stax.Dense(4), stax.GlobalAvgPool()), (2, 5), "spatial dimensions"),
        (stax.serial(stax.Conv(4, (2, 2)), stax.AvgPool((2,))), (2, 3, 3, 1), "1-dimensional"),
    ],
)
def test_shapes_that_do_not_fit_name_the_layer(arch, shape, needle) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(InputError, match=r"x1\.shape") as info:
        kernel_fn(arch)(np.zeros(shape))
    assert needle in str(info.value)


def test_kernel_shape_keeps_unpooled_positions() -> None:
    kfn = kernel_fn(stax.Conv(4, (2, 2)))
    assert kfn(np.ones((2, 3, 3, 1)), get="nngp").shape == (2, 2, 2, 2)
    assert kfn.kernel_shape((2, 3, 3, 1), None) == (2, 2, 2, 2)
    pooled = kernel_fn(stax.serial(stax.Conv(4, (2, 2)), stax.AvgPool((2, 1))))
    assert pooled.kernel_shape((2, 3, 3, 1), (5, 3, 3, 1)) == (2, 5, 1, 2, 1, 2)
    assert pooled(np.ones((2, 3, 3, 1)), np.ones((5, 3, 3, 1))).shape == (2, 5, 1, 2, 1, 2)
