"""The inputs' own kernel for every pair of positions: the batched dot that writes it in
place (`kernel._pair_gram`) is the inner products to rounding, each pair of examples' bits
independent of the others in the call (tiles of a stream agree with one call), and it is
used only where its broadcast operands are no larger than the kernel."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from ntkserve_engine.kernels import kernel

SHAPES = [((3, 5, 4, 3), (4, 5, 4, 3)), ((2, 7, 2), (3, 7, 2)), ((2, 4, 3, 2, 1), (2, 4, 3, 2, 1))]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(("shape1", "shape2"), SHAPES)
def test_pair_gram_is_the_inner_products_whatever_the_batch(
    dtype: type, shape1: tuple[int, ...], shape2: tuple[int, ...]
) -> None:
    rng = np.random.RandomState(0)
    a, b = rng.randn(*shape1).astype(dtype), rng.randn(*shape2).astype(dtype)
    d = a.ndim - 2
    spec = f"n{'abc'[:d]}z,m{'def'[:d]}z->nm{'abc'[:d]}{'def'[:d]}"
    gram = jax.jit(kernel._pair_gram)
    got = gram(a, b)
    assert got.dtype == dtype and got.shape == (len(a), len(b), *a.shape[1:-1], *b.shape[1:-1])
    np.testing.assert_array_equal(got[1:, :1], gram(a[1:], b[:1]))
    # Against float64 numpy: each entry's rounding is within channels * eps of the sum of
    # the products' magnitudes (the textbook bound for a dot product).
    wide_a, wide_b = a.astype(np.float64), b.astype(np.float64)
    bound = a.shape[-1] * np.finfo(dtype).eps * np.einsum(spec, abs(wide_a), abs(wide_b))
    assert np.all(abs(np.asarray(got, np.float64) - np.einsum(spec, wide_a, wide_b)) <= bound)


def test_the_batched_dot_is_used_only_where_its_operands_are_small() -> None:
    images = jnp.zeros((2, 32, 32, 3))
    tokens = jnp.zeros((2, 16, 32))
    assert kernel._pairs_as_batched_dot(images, images)
    assert not kernel._pairs_as_batched_dot(tokens, tokens)
