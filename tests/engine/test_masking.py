"""Masked inputs (`mask_constant`): a masked position is absent, float64, exact identities.

- Padding sequences of one length with masked positions gives the kernel of the unpadded
  sequences, through position-wise layers, LayerNorm over positions, windowed layers whose
  windows do not reach past the data, and global pooling.
- How much padding there is does not matter, once it is longer than the network's reach.
- Mixed lengths: global average pooling averages over each example's own positions, checked
  against the per-token kernel averaged by hand.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from ntkserve import stax
from ntkserve_engine.kernels import InputError, kernel_fn

MASK = -7.0
GET = ("nngp", "ntk")


def _padded(x: np.ndarray, extra: int, value: float = MASK) -> np.ndarray:
    pad = np.full((x.shape[0], extra, *x.shape[2:]), value)
    return np.concatenate([x, pad], axis=1)


def _per_token(depth_bias: float) -> list[stax.Architecture]:
    return [
        stax.Dense(8, W_std=1.3, b_std=depth_bias),
        stax.Erf(c=0.2),  # phi(0) != 0: masked positions would get a value
        stax.Dense(8, W_std=1.1, b_std=0.1),
        stax.Relu(),
    ]


EQUIVALENT = {
    "per-token-gap": stax.serial(*_per_token(0.3), stax.GlobalAvgPool(), stax.Dense(2, b_std=0.1)),
    "layer-norm-positions-gsp": stax.serial(
        stax.Dense(8, b_std=0.3),
        stax.LayerNorm(axis=(-2, -1)),
        stax.Relu(),
        stax.GlobalSumPool(),
        stax.Dense(2),
    ),
    "conv-forward-window-avgpool-edges": stax.serial(
        stax.Conv(8, (2,), padding="SAME", b_std=0.3),
        stax.Relu(),
        stax.AvgPool((2,), padding="SAME", normalize_edges=True),
        stax.Conv(8, (1,), b_std=0.2),
        stax.Gelu(),
        stax.GlobalAvgPool(),
        stax.Dense(2),
    ),
}


@pytest.mark.parametrize("name", sorted(EQUIVALENT))
def test_padding_with_masked_positions_is_no_padding(name: str) -> None:
    rng = np.random.RandomState(0)
    x1, x2 = rng.randn(4, 5, 3), rng.randn(3, 5, 3)
    kfn = kernel_fn(EQUIVALENT[name])
    for a, b in ((x1, None), (x1, x2)):
        plain = kfn(a, b, get=GET)
        masked = kfn(
            _padded(a, 3), None if b is None else _padded(b, 3), get=GET, mask_constant=MASK
        )
        for p, m in zip(plain, masked, strict=True):
            np.testing.assert_allclose(m, p, rtol=1e-12, atol=1e-15)


# Strides and SAME padding that stay aligned to the front of the data (a strided SAME
# window's padding depends on the total length, which moves every window).
WINDOWED = {
    "valid-convs-pools": stax.serial(
        stax.Conv(8, (3,), b_std=0.3),
        stax.Relu(),
        stax.SumPool((2,), padding="SAME"),
        stax.Dense(4, b_std=0.1),
        stax.Erf(),
        stax.AvgPool((3,), padding="SAME"),
        stax.AvgPool((2,), strides=(2,)),
        stax.GlobalAvgPool(),
        stax.Dense(2),
    ),
    "2d-residual-same": stax.serial(
        stax.Conv(8, (2, 2), padding="SAME", b_std=0.2),
        stax.FanOut(2),
        stax.parallel(
            stax.serial(stax.Relu(), stax.Conv(8, (3, 3), padding="SAME")), stax.Identity()
        ),
        stax.FanInSum(),
        stax.Relu(),
        stax.GlobalAvgPool(),
        stax.Dense(1),
    ),
}


@pytest.mark.parametrize("name", sorted(WINDOWED))
def test_the_amount_of_padding_does_not_matter(name: str) -> None:
    # A windowed layer's output is present where its window holds data, so a SAME window
    # reaching past the data makes a present position out of padding; once the padding is
    # longer than the network's reach (4 here), more of it changes nothing.
    rng = np.random.RandomState(1)
    x = rng.randn(4, 6, 3, 2) if name.startswith("2d") else rng.randn(4, 6, 3)
    x[1, 3:] = MASK  # a shorter example
    x[2, :2] = MASK  # one padded at the front
    x = _padded(x, 4)
    kfn = kernel_fn(WINDOWED[name])
    short = kfn(x, x[:3], get=GET, mask_constant=MASK)
    long = kfn(_padded(x, 4), _padded(x[:3], 4), get=GET, mask_constant=MASK)
    for s, ell in zip(short, long, strict=True):
        np.testing.assert_allclose(ell, s, rtol=1e-12, atol=1e-15)


def test_mixed_lengths_average_over_their_own_positions() -> None:
    rng = np.random.RandomState(2)
    lengths = [5, 2, 4]
    x = rng.randn(3, 5, 3)
    for i, n in enumerate(lengths):
        x[i, n:] = np.nan
    arch = stax.serial(*_per_token(0.3), stax.GlobalAvgPool())
    nngp, ntk = kernel_fn(arch)(x, get=GET, mask_constant=float("nan"))
    tokens = kernel_fn(stax.serial(*_per_token(0.3)))
    for i, ni in enumerate(lengths):
        for j, nj in enumerate(lengths):
            # An example with itself: the Gram matrix of its tokens (x2=None), whose
            # same-token entries are exact (README, "Rows given twice").
            by_token = tokens(x[i, :ni], None if i == j else x[j, :nj], get=GET)
            np.testing.assert_allclose(nngp[i, j], np.mean(by_token[0]), rtol=1e-12)
            np.testing.assert_allclose(ntk[i, j], np.mean(by_token[1]), rtol=1e-12)


def test_partly_masked_positions_are_zeroed_entries() -> None:
    # A position with only some channels equal to the constant stays present, with those
    # channels zero.
    rng = np.random.RandomState(3)
    x = rng.randn(3, 4, 3)
    x[0, 1, 2] = MASK
    zeroed = np.where(x == MASK, 0.0, x)
    kfn = kernel_fn(EQUIVALENT["per-token-gap"])
    for a, b in zip(kfn(x, get=GET, mask_constant=MASK), kfn(zeroed, get=GET), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-13)


def test_masked_gradients_are_finite_and_zero_on_masked_entries() -> None:
    rng = np.random.RandomState(4)
    x = rng.randn(3, 5, 2)
    x[1, 3:] = MASK
    kfn = kernel_fn(EQUIVALENT["layer-norm-positions-gsp"])
    loss = lambda a: jnp.sum(kfn(a, get="ntk", mask_constant=MASK) ** 2)  # noqa: E731
    value_and_grad = jax.jit(jax.value_and_grad(loss))  # one program for both inputs
    value, g = value_and_grad(x)
    assert np.all(np.isfinite(g))
    np.testing.assert_array_equal(g[1, 3:], 0)
    # Another program than the direct call's: equal to float64 rounding (the values under a
    # vjp are bit for bit the plain ones eagerly: test_safe_math.py, test_gradients.py).
    np.testing.assert_allclose(value, loss(x), rtol=1e-12)
    every = np.full_like(x, MASK)  # every position masked: a zero kernel, zero gradients
    np.testing.assert_array_equal(kfn(every, get="ntk", mask_constant=MASK), 0)
    assert np.all(np.isfinite(value_and_grad(every)[1]))


def test_one_program_serves_every_mask_constant() -> None:
    kfn = kernel_fn(EQUIVALENT["per-token-gap"])
    traces = []

    def counted(x: jax.Array, c: jax.Array) -> tuple[jax.Array, ...]:
        traces.append(1)
        return kfn.apply(kfn.params, x, None, ("ntk",), c)

    program = jax.jit(counted)
    x = np.random.RandomState(5).randn(2, 4, 3)
    for c in (-7.0, 0.5, np.nan):
        x_masked = x.copy()
        x_masked[0, 2:] = c
        got = program(x_masked, np.asarray(c))[0]
        want = kfn(x_masked, get="ntk", mask_constant=c)
        np.testing.assert_allclose(got, want, rtol=1e-13)
    assert len(traces) == 1


def test_a_layer_the_mask_cannot_follow_says_so() -> None:
    from ntkserve_engine.kernels import masking
    from ntkserve_engine.kernels.kernel import input_kernel

    arch = stax.serial(stax.Conv(4, (2,)), stax.Relu(), stax.Flatten(), stax.Dense(1))
    x = np.random.RandomState(6).randn(2, 4, 2)
    kernel_fn(arch)(x, get="nngp", mask_constant=MASK)  # Flatten ends the mask: fine
    before = input_kernel(jnp.ones((2, 4, 2)), None, True, mask_constant=MASK)
    moved = input_kernel(jnp.ones((2, 3, 2)), None, True, mask_constant=MASK)
    with pytest.raises(InputError, match=r"mask_constant: architecture.layers\[0\]"):
        masking.carry(None, None, before, moved, "architecture.layers[0]")
