"""The ensemble of infinitely wide networks trained by gradient descent on MSE, as
neural-tangents' `predict.gradient_descent_mse_ensemble` (same names, defaults, semantics).

Outputs at initialization are a centred GP with the NNGP kernel K; trained for time t with
the kernel T of `get` (the NTK; for "nngp", K itself: the readout alone trained), they stay
Gaussian (Lee et al. 2019, "Wide neural networks of any depth evolve as linear models under
gradient descent", eqs. 15-16). With e(t) = exp(-eta t T / n) and A(t) = T* T^-1 (I - e(t)):

    mean       = A(t) y                                       (training set: (I - e(t)) y)
    covariance = K** + A K A^T - (A K*^T + K* A^T)           for "ntk"
               = K** - T* T^-1 (I - e(2t)) T*^T              for "nngp" (T = K)

and the training set's covariance is e K e ("ntk") or V diag(l e(2t)) V^T ("nngp"). t=None
is t=inf, answered by `gp.gp_inference` on the same kernels. T is regularized by diag_reg;
K, the prior, is not.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from ntkserve_engine.kernels.errors import InputError
from ntkserve_engine.predict.factorization import regularized
from ntkserve_engine.predict.gp import GPInference
from ntkserve_engine.predict.gradient_descent import Eigenbasis, decay, grown, times
from ntkserve_engine.predict.outputs import GETS, Gaussian, Matrix, Targets, gets, named

KernelFunction = Callable[..., Any]


def kernels(
    kernel_fn: KernelFunction, x1: Any, x2: Any, get: tuple[str, ...], kwargs: dict[str, Any]
) -> dict[str, Matrix]:
    """kernel_fn(x1, x2, get=...) as float64 arrays by name, whether it returns a tuple in
    `get`'s order (ntkserve's KernelFn), a namedtuple or an object with attributes."""
    out = kernel_fn(x1, x2, get=get, **kwargs)
    if all(hasattr(out, name) for name in get):
        return {name: np.asarray(getattr(out, name), np.float64) for name in get}
    values = out if isinstance(out, tuple) else (out,)
    if len(values) != len(get):
        raise InputError("kernel_fn", f"returned {len(values)} kernels for get={get}")
    return {name: np.asarray(v, np.float64) for name, v in zip(get, values, strict=True)}


def _needed(get: tuple[str, ...], compute_cov: bool) -> tuple[str, ...]:
    """The kernels a prediction needs: "ntk" with a covariance needs the NNGP too."""
    return tuple(g for g in GETS if g in get or (g == "nngp" and compute_cov))


class MSEEnsemble:
    """`predict_fn` of `gradient_descent_mse_ensemble`."""

    def __init__(
        self,
        kernel_fn: KernelFunction,
        x_train: Any,
        y_train: Any,
        learning_rate: float,
        diag_reg: float,
        diag_reg_absolute_scale: bool,
        trace_axes: Sequence[int],
        train_kwargs: dict[str, Any],
    ) -> None:
        self._kernel_fn, self._x_train, self._train_kwargs = kernel_fn, x_train, train_kwargs
        self._targets = Targets(y_train, trace_axes)
        self._learning_rate = float(learning_rate)
        self._diag_reg, self._absolute = float(diag_reg), diag_reg_absolute_scale
        self._train: dict[str, Matrix] = {}

    def train(self, names: tuple[str, ...]) -> dict[str, Matrix]:
        """The training kernels named (each computed once)."""
        missing = tuple(n for n in names if n not in self._train)
        if missing:
            got = kernels(self._kernel_fn, self._x_train, None, missing, self._train_kwargs)
            self._train.update(got)
        return {n: self._train[n] for n in names}

    @functools.cache  # noqa: B019 - one per predictor, as long-lived as it
    def eigenbasis(self, name: str) -> Eigenbasis:
        k = self.train((name,))[name]
        return Eigenbasis.of(regularized(k, self._diag_reg, self._absolute))

    @functools.cache  # noqa: B019
    def at_infinity(self, names: tuple[str, ...]) -> GPInference:
        return GPInference(
            self.train(names), self._targets.matrix, self._diag_reg, self._absolute, (-1,)
        )

    def __call__(
        self,
        t: Any = None,
        x_test: Any = None,
        get: str | Sequence[str] | None = None,
        compute_cov: bool = False,
        **test_kwargs: Any,
    ) -> Any:
        names = gets(get, GETS)
        needed = _needed(names, compute_cov)
        train = self.train(needed)
        k_td = k_tt = None
        if x_test is not None:
            kwargs = self._test_train_kwargs(test_kwargs)
            k_td = kernels(self._kernel_fn, x_test, self._x_train, needed, kwargs)
            if compute_cov:
                tt_kwargs = {**self._train_kwargs, **test_kwargs}
                k_tt = kernels(self._kernel_fn, x_test, None, ("nngp",), tt_kwargs)
        if t is None:
            return self._at_infinity(get, names, needed, k_td, k_tt, compute_cov)
        column, shape = times(t, self._learning_rate)
        out = {
            name: self._at(name, column, shape, train, k_td, k_tt, compute_cov) for name in names
        }
        return named(get, out)

    def _test_train_kwargs(self, test_kwargs: dict[str, Any]) -> dict[str, Any]:
        """Keyword arguments of the test-train kernel: a `pattern` pairs the test inputs'
        with the training inputs'; any other must be the same for both."""
        merged = dict(self._train_kwargs)
        for key, value in test_kwargs.items():
            if key == "pattern":
                merged[key] = (value[0], self._train_kwargs.get(key, (None, None))[0])
            elif key in merged and merged[key] is not value and merged[key] != value:
                raise InputError(key, "must be the same for the training and the test kernels")
            else:
                merged[key] = value
        return merged

    def _at_infinity(
        self,
        get: Any,
        names: tuple[str, ...],
        needed: tuple[str, ...],
        k_td: dict[str, Matrix] | None,
        k_tt: dict[str, Matrix] | None,
        compute_cov: bool,
    ) -> Any:
        inference = self.at_infinity(needed)
        if k_td is None and compute_cov:  # the training set: `GPInference` answers its zero
            k_tt = {}  # covariance without reading a test-test kernel
        out = {name: inference(name, k_td, k_tt) for name in names}
        return named(get, out)

    def _at(
        self,
        name: str,
        column: Matrix,
        shape: tuple[int, ...],
        train: dict[str, Matrix],
        k_td: dict[str, Matrix] | None,
        k_tt: dict[str, Matrix] | None,
        compute_cov: bool,
    ) -> Any:
        n, y = self._targets.size, self._targets
        basis = self.eigenbasis(name)
        if k_td is None:  # the training set
            mean = y.like(y.matrix[None] - basis.apply(decay(n), column, y.matrix), shape)
            if not compute_cov:
                return mean
            return Gaussian(mean, self._train_covariance(name, basis, column, shape, train))
        solved = basis.apply(grown(n), column, y.matrix)  # T^-1 (I - e(t)) y
        mean = y.like(np.einsum("ij,tjk->tik", k_td[name], solved), shape)
        if not compute_cov:
            return mean
        assert k_tt is not None
        return Gaussian(mean, self._test_covariance(name, basis, column, shape, train, k_td, k_tt))

    def _train_covariance(
        self,
        name: str,
        basis: Eigenbasis,
        column: Matrix,
        shape: tuple[int, ...],
        train: dict[str, Matrix],
    ) -> Matrix:
        n = self._targets.size
        values, v = basis.values[None, :], basis.vectors
        if name == "nngp":
            middle = values * np.exp(-2 * values * column / n)
            cov = np.einsum("ij,tj,kj->tik", v, middle, v)
        else:
            e = np.einsum("ij,tj,kj->tik", v, decay(n)(values, column), v)
            cov = e @ train["nngp"] @ e
        out: Matrix = cov.reshape(*shape, *cov.shape[1:])
        return out

    def _test_covariance(
        self,
        name: str,
        basis: Eigenbasis,
        column: Matrix,
        shape: tuple[int, ...],
        train: dict[str, Matrix],
        k_td: dict[str, Matrix],
        k_tt: dict[str, Matrix],
    ) -> Matrix:
        n = self._targets.size
        t_k = k_td[name]
        if name == "nngp":  # T* T^-1 (I - e(2t)) T*^T
            cov = k_tt["nngp"][None] - np.einsum(
                "ij,tjk->tik", t_k, basis.apply(grown(n), 2 * column, t_k.T)
            )
        else:
            a = np.swapaxes(basis.apply(grown(n), column, t_k.T), 1, 2)  # A(t), (T, test, train)
            cross = a @ k_td["nngp"].T
            cov = k_tt["nngp"][None] + a @ train["nngp"] @ np.swapaxes(a, 1, 2)
            cov = cov - cross - np.swapaxes(cross, 1, 2)
        out: Matrix = cov.reshape(*shape, *cov.shape[1:])
        return out


def gradient_descent_mse_ensemble(
    kernel_fn: KernelFunction,
    x_train: Any,
    y_train: Any,
    learning_rate: float = 1.0,
    diag_reg: float = 0.0,
    diag_reg_absolute_scale: bool = False,
    trace_axes: Sequence[int] = (-1,),
    **kernel_fn_train_train_kwargs: Any,
) -> MSEEnsemble:
    """neural-tangents' `predict.gradient_descent_mse_ensemble`: returns
    `predict_fn(t=None, x_test=None, get=None, compute_cov=False, **kernel_fn_test_test_kwargs)`
    giving the ensemble's mean (or `Gaussian(mean, covariance)`) on x_test (None: the
    training set) at time[s] t (None: infinity), for get "nngp", "ntk" or both (None), in
    float64. `kernel_fn(x1, x2, get=..., **kwargs)` is, e.g., `ntkserve_engine.kernel_fn(arch)`."""
    return MSEEnsemble(
        kernel_fn,
        x_train,
        y_train,
        learning_rate,
        diag_reg,
        diag_reg_absolute_scale,
        trace_axes,
        kernel_fn_train_train_kwargs,
    )
