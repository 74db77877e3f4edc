"""The blocked Cholesky (what factorizes training kernels from BLOCKED_FROM rows on, where
OpenBLAS's own threaded dpotrf crashes) against LAPACK's, and the tiled symmetrization,
on sizes that exercise partial blocks, with the block sizes made small."""

from __future__ import annotations

import numpy as np
import pytest
from ntkserve_engine.predict import factorization


@pytest.mark.parametrize("n", [7, 64, 100, 131])
def test_blocked_cholesky_is_lapack_s(monkeypatch: pytest.MonkeyPatch, n: int) -> None:
    monkeypatch.setattr(factorization, "BLOCKED_FROM", 1)
    monkeypatch.setattr(factorization, "BLOCK", 16)
    rng = np.random.default_rng(n)
    a = rng.standard_normal((n, 2 * n))
    k = a @ a.T.copy() / (2 * n) + 0.1 * np.eye(n)
    want = np.linalg.cholesky(k)
    for in_place in (True, False):
        found = factorization._cholesky(k.copy(), in_place)
        assert found is not None
        # Both are the unique factor, computed by different groupings of the same sums:
        # float64 rounding, scaled by the condition number.
        np.testing.assert_allclose(found[0], want, atol=1e-12 * found[1])
        assert np.all(np.triu(found[0], 1) == 0)
    singular = k.copy()
    singular[-1] = singular[0]
    singular[:, -1] = singular[:, 0]
    found = factorization._cholesky(singular, True)
    assert found is None or found[1] > factorization.MAX_CONDITION


def test_symmetrized_by_tiles(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(factorization, "TILE", 8)
    k = np.random.default_rng(0).standard_normal((37, 37))
    np.testing.assert_array_equal(factorization.symmetrized(k), (k + k.T) * 0.5)
