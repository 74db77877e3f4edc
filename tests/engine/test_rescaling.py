"""LayerNorm and Dropout: exact identities, gradients and validation (float64).

Their Monte Carlo checks are in test_monte_carlo_rescaling.py; here the kernels are checked
against the definitions written out in numpy on top of the kernel the layer receives.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from ntkserve import stax
from ntkserve_engine.kernels import ArchitectureError, InputError

from tests.engine.eager import kernel_fn
from tests.engine.gradient_helpers import central_difference

W_STD, B_STD = 1.3, 0.2


def _dense_covariance(x1: np.ndarray, x2: np.ndarray) -> np.ndarray:
    return W_STD**2 * x1 @ x2.T / x1.shape[1] + B_STD**2


@pytest.mark.parametrize("eps", [0.0, 0.5])
def test_layer_norm_divides_by_the_variances(eps: float) -> None:
    rng = np.random.RandomState(0)
    x1, x2 = rng.randn(4, 6), rng.randn(3, 6)
    arch = stax.serial(stax.Dense(8, W_std=W_STD, b_std=B_STD), stax.LayerNorm(eps=eps))
    nngp, ntk = kernel_fn(arch)(x1, x2, get=("nngp", "ntk"))
    q1 = np.diag(_dense_covariance(x1, x1)) + eps
    q2 = np.diag(_dense_covariance(x2, x2)) + eps
    want = _dense_covariance(x1, x2) / np.sqrt(q1[:, None] * q2[None, :])
    np.testing.assert_allclose(nngp, want, rtol=1e-14)
    np.testing.assert_allclose(ntk, want, rtol=1e-14)  # one Dense layer: NTK = NNGP


def test_layer_norm_over_spatial_axes_uses_the_mean_variance() -> None:
    rng = np.random.RandomState(1)
    x1, x2 = rng.randn(3, 4, 3, 2), rng.randn(2, 4, 3, 2)
    conv = stax.Conv(8, (2, 2), padding="SAME", W_std=W_STD, b_std=B_STD)
    before = np.asarray(kernel_fn(conv)(x1, x2, get="nngp"))  # (N1, N2, H, W)
    q1 = np.asarray(kernel_fn(conv)(x1, get="nngp"))[np.arange(3), np.arange(3)]
    q2 = np.asarray(kernel_fn(conv)(x2, get="nngp"))[np.arange(2), np.arange(2)]
    for axis in ((1, 2, 3), (-2, -1)):
        over = (1, 2) if len(axis) == 3 else (2,)
        m1 = (q1 + 0.1).mean(axis=over, keepdims=True)
        m2 = (q2 + 0.1).mean(axis=over, keepdims=True)
        after = kernel_fn(stax.serial(conv, stax.LayerNorm(axis=axis, eps=0.1)))(x1, x2, get="nngp")
        np.testing.assert_allclose(after, before / np.sqrt(m1[:, None] * m2[None, :]), rtol=1e-13)


def test_layer_norm_makes_the_kernel_scale_invariant() -> None:
    # Without a bias, scaling an input scales its pre-activations: LayerNorm undoes it.
    x = np.random.RandomState(2).randn(5, 4)
    arch = stax.serial(stax.Dense(8), stax.LayerNorm(eps=0.0), stax.Erf(), stax.Dense(2))
    kfn = kernel_fn(arch)
    scaled = x * np.array([0.1, 1.0, 3.0, 7.0, 0.5])[:, None]
    for a, b in zip(kfn(x, get=("nngp", "ntk")), kfn(scaled, get=("nngp", "ntk")), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-13)


def test_layer_norm_with_zero_eps_and_a_zero_row_is_finite() -> None:
    x = np.random.RandomState(3).randn(4, 3)
    x[1] = 0
    kfn = kernel_fn(stax.serial(stax.Dense(8), stax.LayerNorm(eps=0.0), stax.Relu(), stax.Dense(1)))
    for k in kfn(x, get=("nngp", "ntk")):
        assert np.all(np.isfinite(k))
    g = jax.jit(jax.grad(lambda a: jnp.sum(kfn(a, get="ntk"))))(x)
    assert np.all(np.isfinite(g))
    g0 = jax.jit(jax.grad(lambda a: jnp.sum(kfn(a, get="ntk"))))(np.zeros_like(x))
    assert np.all(np.isfinite(g0))


def test_layer_norm_axes_are_checked() -> None:
    with pytest.raises(ArchitectureError, match=r"layer_norm\.axis"):
        kernel_fn(stax.serial(stax.Dense(4), stax.LayerNorm(axis=(0, -1))))
    with pytest.raises(ArchitectureError, match=r"layer_norm\.axis: names an axis twice"):
        kernel_fn(stax.serial(stax.Dense(4), stax.LayerNorm(axis=(-1, -1))))
    with pytest.raises(ArchitectureError, match=r"layer_norm.*needs Gaussian inputs"):
        kernel_fn(stax.serial(stax.Dense(4), stax.Relu(), stax.LayerNorm()))
    spatial = kernel_fn(stax.serial(stax.Conv(4, (1, 1)), stax.LayerNorm(axis=(1,))))
    with pytest.raises(InputError, match="channel axis"):
        spatial(np.ones((2, 3, 3, 2)), get="nngp")
    # axis 3 is the channel axis of (N, H, W, C) inputs, and the same network as -1.
    positive = kernel_fn(stax.serial(stax.Conv(4, (1, 1)), stax.LayerNorm(axis=(3, 1, 2))))
    negative = kernel_fn(stax.serial(stax.Conv(4, (1, 1)), stax.LayerNorm(axis=(-3, -2, -1))))
    x = np.random.RandomState(4).randn(2, 3, 3, 2)
    np.testing.assert_array_equal(positive(x, get="nngp"), negative(x, get="nngp"))


# -- Dropout ------------------------------------------------------------------------------

RATE = 0.7


def _with_and_without(mode: str = "train") -> tuple[stax.Architecture, stax.Architecture]:
    head = (stax.Dense(8, W_std=W_STD, b_std=B_STD), stax.Relu())
    tail = stax.Dense(2, W_std=0.9, b_std=0.1)
    return stax.serial(*head, stax.Dropout(RATE, mode), tail), stax.serial(*head, tail)


def test_dropout_divides_the_gram_diagonal_by_the_keep_rate() -> None:
    x = np.random.RandomState(5).randn(5, 4)
    dropped, plain = (kernel_fn(a) for a in _with_and_without())
    got = np.asarray(dropped(x, get="nngp"))
    want = np.asarray(plain(x, get="nngp"))
    off = ~np.eye(5, dtype=bool)
    np.testing.assert_array_equal(got[off], want[off])
    # The readout adds 0.9^2 E[relu(u)^2] / rate + 0.1^2 where plain has no 1 / rate.
    relu_second_moment = (np.diag(want) - 0.1**2) / 0.9**2
    np.testing.assert_allclose(np.diag(got), 0.81 * relu_second_moment / RATE + 0.01, rtol=1e-14)
    # With x2 given, rows of x1 and x2 are different draws, even with equal values.
    np.testing.assert_array_equal(dropped(x, x, get="nngp"), plain(x, x, get="nngp"))


def test_dropout_in_test_mode_is_the_identity() -> None:
    x = np.random.RandomState(6).randn(4, 3)
    dropped, plain = (kernel_fn(a) for a in _with_and_without("test"))
    for a, b in zip(dropped(x, get=("nngp", "ntk")), plain(x, get=("nngp", "ntk")), strict=True):
        np.testing.assert_array_equal(a, b)


def test_dropout_on_positions_scales_only_an_example_with_itself_at_one_position() -> None:
    # Conv, Relu, Dropout, then the kernel with every pair of positions (GlobalAvgPool).
    x = np.random.RandomState(7).randn(3, 3, 3, 2)
    conv = stax.Conv(4, (2, 2), padding="SAME", W_std=W_STD, b_std=B_STD)
    pooled = stax.serial(conv, stax.Relu(), stax.Dropout(RATE), stax.GlobalAvgPool())
    plain = stax.serial(conv, stax.Relu(), stax.GlobalAvgPool())
    got, want = kernel_fn(pooled)(x, get="nngp"), kernel_fn(plain)(x, get="nngp")
    # The pool averages 9 x 9 position pairs; the 9 same-position ones of the diagonal gain
    # (1 / rate - 1) times their value, which is the no-pool kernel's diagonal.
    same_position = np.asarray(kernel_fn(stax.serial(conv, stax.Relu()))(x, get="nngp"))
    extra = (1 / RATE - 1) * same_position[np.arange(3), np.arange(3)].sum(axis=(1, 2)) / 81
    np.testing.assert_allclose(np.diag(got), np.diag(want) + extra, rtol=1e-13)
    off = ~np.eye(3, dtype=bool)
    np.testing.assert_allclose(np.asarray(got)[off], np.asarray(want)[off], rtol=1e-13)


def test_dropout_gradients_match_finite_differences() -> None:
    rng = np.random.RandomState(8)
    x1, x2 = rng.randn(3, 4), rng.randn(2, 4)
    arch = stax.serial(
        stax.Dense(8, W_std=W_STD, b_std=B_STD),
        stax.Erf(),
        stax.Dropout(RATE),
        stax.Dense(8, b_std=0.1),
        stax.Gelu(),
        stax.Dense(1),
    )
    kfn = kernel_fn(arch)
    for other in (None, x2):
        loss = lambda a, b=other: jnp.sum(kfn(a, b, get="ntk") ** 2)  # noqa: E731
        np.testing.assert_allclose(
            jax.jit(jax.grad(loss))(x1), central_difference(loss, x1), rtol=1e-5, atol=1e-7
        )
    rate_loss = lambda r: jnp.sum(  # noqa: E731
        kfn(x1, get="ntk", params=jax.tree.map(lambda v: v, _with_rate(kfn.params, r)))
    )
    fd = (rate_loss(RATE + 1e-6) - rate_loss(RATE - 1e-6)) / 2e-6
    np.testing.assert_allclose(jax.jit(jax.grad(rate_loss))(RATE), fd, rtol=1e-5)
    g0 = jax.jit(jax.grad(lambda a: jnp.sum(kfn(a, get="ntk"))))(np.zeros_like(x1))
    assert np.all(np.isfinite(g0))


def _with_rate(params: tuple, rate: object) -> tuple:
    return tuple({**p, "rate": rate} if "rate" in p else p for p in params)


@pytest.mark.parametrize("rate", [0.0, -0.1, 1.5, float("nan")])
def test_dropout_rate_is_a_keep_probability(rate: float) -> None:
    with pytest.raises(ArchitectureError, match=r"dropout\.rate: is the keep probability"):
        kernel_fn(stax.serial(stax.Dense(4), stax.Dropout(rate)))


def test_dropout_train_output_is_not_gaussian_but_test_output_is() -> None:
    with pytest.raises(ArchitectureError, match=r"relu: a nonlinearity needs Gaussian"):
        kernel_fn(stax.serial(stax.Dense(4), stax.Dropout(0.5), stax.Relu()))
    kernel_fn(stax.serial(stax.Dense(4), stax.Dropout(0.5, "test"), stax.Relu()))
    with pytest.raises(ValueError, match="mode must be"):
        stax.Dropout(0.5, "eval")
