"""Continuous-time gradient descent on MSE in closed form, as neural-tangents'
`predict.gradient_descent_mse` and `max_learning_rate` (same names, defaults, semantics).

With the loss a mean over y_train's n entries and learning rate eta, outputs on the training
set follow df/dt = -eta T (f - y) / n, so (Jacot et al. 2018; Lee et al. 2019, eq. 9)

    f_train(t) = y + e(t) (f_train(0) - y),                e(t) = exp(-eta t T / n),
    f_test(t)  = f_test(0) + T* T^-1 (e(t) - I) (f_train(0) - y),

T the regularized training kernel. Finite t is computed in T's eigenbasis, where
T^-1 (I - e(t)) has eigenvalues -expm1(-eta t l / n) / l, whose limit at l = 0 is eta t / n:
a singular kernel gives finite predictions at every finite t (neural-tangents divided by
|l| there). Eigenvalues below 0 (round-off of a PSD matrix) count as 0, as in
neural-tangents. t=None is t=inf, solved through `factorization` instead.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import scipy.linalg

from ntkserve_engine.kernels.errors import InputError
from ntkserve_engine.predict.factorization import Factorization, factorize, regularized
from ntkserve_engine.predict.outputs import Matrix, Targets, as_matrix

Spectrum = Callable[[Matrix, Matrix], Matrix]  # (eigenvalues (N,), times (T, 1)) -> (T, N)


def times(t: Any, learning_rate: float) -> tuple[Matrix, tuple[int, ...]]:
    """t (a scalar or any array of times >= 0) times the learning rate, as a (T, 1) column,
    and t's shape (the predictions' leading axes)."""
    t = np.asarray(t, np.float64)
    if not np.all(t >= 0):
        raise InputError("t", f"times must be >= 0 (None for infinity), got {t}")
    return (t * learning_rate).reshape(-1, 1), t.shape


def decay(normalization: float) -> Spectrum:
    """exp(-l t / n): e(t)'s eigenvalues."""
    return lambda values, t: np.exp(-values * t / normalization)


def grown(normalization: float) -> Spectrum:
    """(1 - exp(-l t / n)) / l, with its limit t / n at l = 0: T^-1 (I - e(t))."""

    def spectrum(values: Matrix, t: Matrix) -> Matrix:
        x = values * t / normalization
        safe = np.where(values > 0, values, 1.0)
        return np.where(values > 0, -np.expm1(-x) / safe, t / normalization)

    return spectrum


@dataclasses.dataclass(frozen=True)
class Eigenbasis:
    """T = V diag(l) V^T, l clipped at 0; `apply(f, t, b)` is V f(l, t) V^T b for each time."""

    values: Matrix
    vectors: Matrix

    @classmethod
    def of(cls, k: Matrix) -> Eigenbasis:
        values, vectors = scipy.linalg.eigh(k, check_finite=False)
        return cls(np.maximum(values, 0.0), vectors)

    def apply(self, spectrum: Spectrum, t: Matrix, b: Matrix) -> Matrix:
        """(T, N, k): V f(l, t_i) V^T b for each time t_i."""
        projected = self.vectors.T @ b  # (N, k)
        scaled = spectrum(self.values[None, :], t)[:, :, None] * projected[None]
        out: Matrix = np.einsum("ij,tjk->tik", self.vectors, scaled)
        return out


class GradientDescentMSE:
    """`predict_fn` of `gradient_descent_mse`."""

    def __init__(
        self,
        k_train_train: Any,
        y_train: Any,
        learning_rate: float,
        diag_reg: float,
        diag_reg_absolute_scale: bool,
        trace_axes: Sequence[int],
    ) -> None:
        self._targets = Targets(y_train, trace_axes)
        k = as_matrix(k_train_train, "k_train_train")
        self._targets.check_rows(k, "k_train_train")
        self._k = regularized(k, diag_reg, diag_reg_absolute_scale)
        self._learning_rate = float(learning_rate)

    @functools.cached_property
    def eigenbasis(self) -> Eigenbasis:
        return Eigenbasis.of(self._k)

    @functools.cached_property
    def factorization(self) -> Factorization:
        return factorize(self._k)

    def __call__(
        self,
        t: Any = None,
        fx_train_0: Any = 0.0,
        fx_test_0: Any = None,
        k_test_train: Any = None,
    ) -> Any:
        if fx_train_0 is None and fx_test_0 is None:
            raise InputError("fx_train_0", "and fx_test_0 are both None: nothing to predict")
        if fx_test_0 is not None and k_test_train is None:
            raise InputError("k_test_train", "is needed for predictions on the test set")
        y = self._targets
        f_train_0 = None if fx_train_0 is None else self._outputs(fx_train_0, len(y.matrix))
        k_td = None
        if k_test_train is not None:
            k_td = as_matrix(k_test_train, "k_test_train")
            y.check_rows(k_td, "k_test_train")
        residual = -y.matrix if f_train_0 is None else f_train_0 - y.matrix
        if t is None:
            train = y.like(y.matrix)
            test = None if fx_test_0 is None else self._test_at_infinity(k_td, residual, fx_test_0)
        else:
            train, test = self._at(t, f_train_0, residual, k_td, fx_test_0)
        if fx_test_0 is None:
            return train
        if fx_train_0 is None:
            return test
        return train, test

    def _test_at_infinity(self, k_td: Any, residual: Matrix, fx_test_0: Any) -> Matrix:
        change = -(k_td @ self.factorization.solve(residual))
        return self._targets.like(self._outputs(fx_test_0, len(k_td)) + change)

    def _outputs(self, f: Any, rows: int) -> Matrix:
        """Outputs (a scalar or rows in y_train's layout) as (rows, outputs), float64."""
        outputs = self._targets.matrix.shape[1]
        shape = (rows,) if len(self._targets.shape) == 1 else (rows, outputs)
        return np.broadcast_to(np.asarray(f, np.float64), shape).reshape(rows, outputs)

    def _at(
        self, t: Any, f_train_0: Matrix | None, residual: Matrix, k_td: Any, fx_test_0: Any
    ) -> tuple[Any, Any]:
        column, shape = times(t, self._learning_rate)
        n = self._targets.size
        y = self._targets
        train = test = None
        if f_train_0 is not None:
            moved = self.eigenbasis.apply(decay(n), column, residual)  # e(t) (f0 - y)
            train = y.like(y.matrix[None] + moved, shape)
        if fx_test_0 is not None:
            grown_residual = self.eigenbasis.apply(grown(n), column, residual)
            change = -np.einsum("ij,tjk->tik", k_td, grown_residual)
            f0 = self._outputs(fx_test_0, len(k_td))
            test = y.like(f0[None] + change, shape)
        return train, test


def gradient_descent_mse(
    k_train_train: Any,
    y_train: Any,
    learning_rate: float = 1.0,
    diag_reg: float = 0.0,
    diag_reg_absolute_scale: bool = False,
    trace_axes: Sequence[int] = (-1,),
) -> GradientDescentMSE:
    """neural-tangents' `predict.gradient_descent_mse`: returns
    `predict_fn(t=None, fx_train_0=0., fx_test_0=None, k_test_train=None)` giving the
    training outputs, the test outputs, or both, at time[s] t (None: infinity; an array
    adds its shape as leading axes), in float64."""
    return GradientDescentMSE(
        k_train_train, y_train, learning_rate, diag_reg, diag_reg_absolute_scale, trace_axes
    )


def max_learning_rate(
    ntk_train_train: Any, y_train_size: int | None = None, momentum: float = 0.0, eps: float = 1e-12
) -> float:
    """neural-tangents' `predict.max_learning_rate`: the largest learning rate for which
    (momentum) gradient descent on the mean squared loss converges,
    2 (1 + momentum) n / (lambda_max + eps), n = y_train_size (default: the kernel's rows)."""
    k = as_matrix(ntk_train_train, "ntk_train_train")
    n = len(k) if y_train_size is None else int(y_train_size)
    last = len(k) - 1
    largest = scipy.linalg.eigvalsh((k + k.T) / 2, subset_by_index=(last, last))[-1]
    return float(2 * (1 + momentum) * n / (largest + eps))
