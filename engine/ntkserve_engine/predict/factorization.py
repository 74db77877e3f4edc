"""Factorizing a regularized training kernel in float64, never silently into NaN.

neural-tangents factorized `K + diag_reg * I` with one Cholesky in the kernel's dtype; on an
ill-conditioned kernel (duplicated inputs, `diag_reg=0`, deep ReLU networks whose kernel is
nearly rank one) that gave NaN predictions (its issues #36, #71, #76, #128, #134, #178, #197,
#198). Here the matrix is factorized in float64 whatever the kernel's dtype, and the method
escalates until the solve means something:

1. Cholesky of K_reg, accepted when LAPACK's condition estimate (`dpocon`, from the factor)
   says at most `MAX_CONDITION`: a solve then keeps at least four significant digits;
2. Cholesky of K_reg + jitter * I, the jitter growing tenfold from 1e-12 to 1e-6 of the mean
   diagonal, first accepted as above;
3. the eigendecomposition of K_reg with eigenvalues clipped from below at
   lambda_max / MAX_CONDITION (what the jitter does, only in the directions that need it).

`Factorization` says which was used, the jitter, and the condition estimate of the matrix
actually solved. A kernel with no positive eigenvalue is refused (`FactorizationError`, with
the numbers), as are non-finite entries (`InputError`): no prediction from them would mean
anything. Host LAPACK through scipy, not jax: float64 whatever jax's x64 setting, and the
solves need no autodiff.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import numpy as np
import scipy.linalg
from scipy.linalg import lapack

from ntkserve_engine.kernels.errors import EngineError, InputError
from ntkserve_engine.predict.outputs import Matrix, as_matrix

MAX_CONDITION = 1e12
JITTERS = tuple(10.0**k for k in range(-12, -5))  # relative to the mean diagonal


class FactorizationError(EngineError):
    """The training kernel cannot be factorized into anything meaningful (a precondition of
    the request, not a malformed field: FAILED_PRECONDITION on the wire)."""


def regularized(k: Any, diag_reg: float, absolute: bool, field: str = "k_train_train") -> Matrix:
    """K + diag_reg * I in float64, symmetrized; diag_reg relative to the mean diagonal
    (trace / N, neural-tangents' convention) unless `absolute`."""
    matrix = as_matrix(k, field)
    if matrix.shape[0] != matrix.shape[1]:
        raise InputError(field, f"must be a square (N, N) matrix, got shape {matrix.shape}")
    if not np.isfinite(diag_reg) or diag_reg < 0:
        raise InputError("diag_reg", f"must be finite and >= 0, got {diag_reg}")
    symmetric = symmetrized(matrix)
    scale = 1.0 if absolute else float(np.trace(symmetric)) / len(symmetric)
    return with_diagonal_added(symmetric, diag_reg * scale)


TILE = 512  # symmetrizing by tiles: a tile and its transposed partner stay in cache


def symmetrized(k: Matrix) -> Matrix:
    """(K + K^T) / 2 as a new array, tile by tile: `k + k.T` reads K^T a column at a time,
    one cache miss per entry (7.7 s at N = 15,000 here)."""
    n = len(k)
    out: Matrix = np.empty((n, n))
    for i in range(0, n, TILE):
        rows = slice(i, i + TILE)
        for j in range(0, n, TILE):
            cols = slice(j, j + TILE)
            np.add(k[rows, cols], k[cols, rows].T, out=out[rows, cols])
    out *= 0.5
    return out


def with_diagonal_added(k: Matrix, value: float) -> Matrix:
    """k + value * I, in place (no N x N identity: at N = 20,000 it would be 3.2 GB)."""
    k[np.diag_indices(len(k))] += value
    return k


@dataclasses.dataclass(frozen=True)
class Factorization:
    """A factorization of the (regularized) training kernel: `solve` applies its inverse."""

    method: str  # "cholesky", "cholesky+jitter" or "eigh-clipped"
    jitter: float  # added to the diagonal beyond diag_reg (absolute units; 0 if none)
    condition: float  # condition number estimate of the matrix solved
    cholesky: Matrix | None = None  # lower factor
    eigenvalues: Matrix | None = None  # clipped
    eigenvectors: Matrix | None = None

    def solve(self, b: Any) -> Matrix:
        """K^{-1} b for b of shape (N, ...)."""
        b = np.asarray(b, np.float64)
        flat = b.reshape(len(b), -1)
        if self.cholesky is not None:
            x = scipy.linalg.cho_solve((self.cholesky, True), flat, check_finite=False)
        else:
            assert self.eigenvalues is not None and self.eigenvectors is not None
            v = self.eigenvectors
            x = v @ ((v.T @ flat) / self.eigenvalues[:, None])
        return np.asarray(x.reshape(b.shape), np.float64)

    def inverse(self) -> Matrix:
        """The inverse of the matrix solved (LAPACK's potri from the factor: no identity)."""
        if self.cholesky is None:
            assert self.eigenvalues is not None and self.eigenvectors is not None
            v = self.eigenvectors
            inverse: Matrix = (v / self.eigenvalues) @ v.T
            return inverse
        lower, info = lapack.dpotri(self.cholesky, lower=1)
        if info != 0:
            raise FactorizationError("k_train_train", f"LAPACK dpotri failed (info {info})")
        lower = np.tril(lower)
        full: Matrix = lower + np.tril(lower, -1).T
        return full

    def logdet(self) -> float:
        """log det of the matrix solved."""
        if self.cholesky is not None:
            return float(2 * np.sum(np.log(np.diag(self.cholesky))))
        assert self.eigenvalues is not None
        return float(np.sum(np.log(self.eigenvalues)))


ROWS_PER_BLOCK = 1024  # rows per pass of a blockwise reduction: no N x N temporary


def one_norm(k: Matrix) -> float:
    """max_j sum_i |k_ij|, in row blocks (np.linalg.norm(k, 1) makes an N x N |k| first)."""
    sums = np.zeros(k.shape[1])
    for start in range(0, len(k), ROWS_PER_BLOCK):
        sums += np.abs(k[start : start + ROWS_PER_BLOCK]).sum(axis=0)
    return float(sums.max())


# OpenBLAS's multithreaded dsyrk segfaults on large outputs on these machines (OpenBLAS
# 0.3.31, the one numpy and scipy bundle: `a @ a.T` of 20,000 x 300 crashed, of 16,000 x 300
# did not; dgemm of the same sizes, up to 30,000 x 64 x 30,000, did not), and with it
# dpotrf, which calls it (15,500 worked, 16,000 and 20,000 crashed, numpy.linalg.cholesky
# too; single-threaded they work; OpenBLAS issues #2562, #2821). Above BLOCKED_FROM the
# factorization is blocked: LAPACK factorizes diagonal blocks of BLOCK rows, dgemm and trsm
# (threaded, fine) do the rest, in place, with O(N * BLOCK) temporaries, and never dsyrk.
BLOCKED_FROM = 8192
BLOCK = 2048


def _lapack_cholesky(a: Matrix, overwrite: bool) -> tuple[Matrix, bool]:
    """LAPACK's lower Cholesky of `a`; (factor, whether it succeeded)."""
    factor, info = lapack.dpotrf(a, lower=1, clean=1, overwrite_a=int(overwrite))
    return factor, info == 0


def blocked_cholesky(a: Matrix) -> bool:
    """The lower Cholesky factor of the symmetric `a`, written over its lower triangle (its
    upper triangle is left as it was), left-looking by block columns (Golub & Van Loan,
    Matrix Computations, 4th ed., alg. 4.2.3 by blocks): for each block column J, the part
    of A[J:, J] below the finished columns is updated by one product with them, its
    diagonal block factorized by LAPACK, and the panel below solved against that factor.
    False where `a` is not numerically positive definite."""
    n = len(a)
    for start in range(0, n, BLOCK):
        end = min(start + BLOCK, n)
        if start:
            # A copy: `x @ x.T` of one buffer would be numpy's dsyrk, which crashes (above).
            finished = np.array(a[start:end, :start])
            a[start:, start:end] -= a[start:, :start] @ finished.T
        diagonal, ok = _lapack_cholesky(np.array(a[start:end, start:end]), True)
        if not ok:
            return False
        a[start:end, start:end] = diagonal
        if end < n:
            panel = a[end:, start:end]
            a[end:, start:end] = scipy.linalg.solve_triangular(
                diagonal, panel.T, lower=True, check_finite=False
            ).T
    return True


def _zero_upper(a: Matrix) -> None:
    """Zeros above the diagonal, by row blocks (no N^2 index arrays)."""
    for start in range(0, len(a), BLOCK):
        end = min(start + BLOCK, len(a))
        a[start:end, end:] = 0.0
        block = a[start:end, start:end]
        block[np.triu_indices(end - start, 1)] = 0.0


def _cholesky(k: Matrix, in_place: bool) -> tuple[Matrix, float] | None:
    """(lower factor, condition estimate), or None where Cholesky fails. `in_place`: the
    factor overwrites k (k symmetric and C-ordered: its transpose is the same matrix in the
    Fortran order LAPACK overwrites; any other layout is copied)."""
    norm = one_norm(k)
    target = k.T if in_place and k.flags.c_contiguous else k
    if len(k) < BLOCKED_FROM:
        factor, ok = _lapack_cholesky(target, in_place)
    else:
        factor = target if in_place else np.asfortranarray(k)
        ok = blocked_cholesky(factor)
        _zero_upper(factor)  # clean=1's zeros, as LAPACK's
    if not ok:
        return None
    rcond, info = lapack.dpocon(factor, norm, uplo="L")
    if info != 0 or not rcond > 0:
        return None
    return factor, 1.0 / rcond


def factorize(k: Matrix, remake: Callable[[], Matrix] | None = None) -> Factorization:
    """The first method of the escalation that gives a meaningful solve (module docstring).
    `remake`, when given, returns k anew (symmetric, C-ordered, owned by the caller): then
    each attempt works in place on its own copy, and memory holds one N x N matrix besides
    k's source, not three (a served training kernel at N = 20,000 is 3.2 GB)."""
    in_place = remake is not None
    scale = float(np.trace(k)) / len(k)
    plain = _cholesky(k, in_place)
    if plain is not None and plain[1] <= MAX_CONDITION:
        return Factorization("cholesky", 0.0, plain[1], cholesky=plain[0])
    del plain
    fresh: Callable[[], Matrix] = remake if remake is not None else k.copy
    if scale > 0:
        for relative in JITTERS:
            jittered = _cholesky(with_diagonal_added(fresh(), relative * scale), in_place)
            if jittered is not None and jittered[1] <= MAX_CONDITION:
                return Factorization(
                    "cholesky+jitter", relative * scale, jittered[1], cholesky=jittered[0]
                )
    return _clipped_eigen(fresh() if in_place else k, in_place)


def _clipped_eigen(k: Matrix, in_place: bool) -> Factorization:
    values, vectors = scipy.linalg.eigh(k, check_finite=False, overwrite_a=in_place)
    largest = float(values[-1])
    if not largest > 0:
        raise FactorizationError(
            "k_train_train",
            f"has no positive eigenvalue (largest {largest:.3g}): a kernel is positive "
            "semi-definite, so these are not kernel values",
        )
    floor = largest / MAX_CONDITION
    clipped = np.maximum(values, floor)
    return Factorization(
        "eigh-clipped",
        float(np.max(clipped - values)),
        largest / floor,
        eigenvalues=clipped,
        eigenvectors=vectors,
    )
