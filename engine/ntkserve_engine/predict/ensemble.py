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
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from ntkserve_engine.kernels.errors import InputError
from ntkserve_engine.predict.factorization import Factorization, regularized
from ntkserve_engine.predict.gp import GPInference
from ntkserve_engine.predict.gradient_descent import Eigenbasis, decay, grown, times
from ntkserve_engine.predict.outputs import GETS, Gaussian, Matrix, Targets, gets, named, pairs

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


def needed_kernels(get: tuple[str, ...], covariance: str | None) -> tuple[str, ...]:
    """The kernels a prediction needs: "ntk" with a covariance needs the NNGP too."""
    return tuple(g for g in GETS if g in get or (g == "nngp" and covariance is not None))


class MSEEnsemble:
    """`predict_fn` of `gradient_descent_mse_ensemble`. `train` and `factorizations` give
    training kernels and factorizations made before (a served model's, from its store);
    `predict_kernels` answers from kernels the caller computed (the server computes them in
    tiles): the same math as `__call__`, so served and in-process predictions agree."""

    def __init__(
        self,
        kernel_fn: KernelFunction | None,
        x_train: Any,
        y_train: Any,
        learning_rate: float,
        diag_reg: float,
        diag_reg_absolute_scale: bool,
        trace_axes: Sequence[int],
        train_kwargs: dict[str, Any],
        train: Mapping[str, Matrix] | None = None,
        factorizations: Mapping[str, Factorization] | None = None,
    ) -> None:
        self._kernel_fn, self._x_train, self._train_kwargs = kernel_fn, x_train, train_kwargs
        self._targets = Targets(y_train, trace_axes)
        self._learning_rate = float(learning_rate)
        self._diag_reg, self._absolute = float(diag_reg), diag_reg_absolute_scale
        self._train: dict[str, Matrix] = dict(train or {})
        self._factorizations = dict(factorizations or {})

    def train(self, names: tuple[str, ...]) -> dict[str, Matrix]:
        """The training kernels named (each computed once)."""
        missing = tuple(n for n in names if n not in self._train)
        if missing:
            if self._kernel_fn is None:
                raise InputError("get", f"needs the {missing} training kernels, not kept")
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
            self.train(names),
            self._targets.matrix,
            self._diag_reg,
            self._absolute,
            (-1,),
            self._factorizations,
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
        covariance = "full" if compute_cov else None
        needed = needed_kernels(names, covariance)
        k_td = k_tt = None
        if x_test is not None:
            if self._kernel_fn is None:
                raise InputError("x_test", "needs a kernel_fn (this predictor has kernels only)")
            kwargs = self._test_train_kwargs(test_kwargs)
            k_td = kernels(self._kernel_fn, x_test, self._x_train, needed, kwargs)
            if compute_cov:
                tt_kwargs = {**self._train_kwargs, **test_kwargs}
                k_tt = kernels(self._kernel_fn, x_test, None, ("nngp",), tt_kwargs)
        return self.predict_kernels(t, get, k_td, k_tt, covariance)

    def predict_kernels(
        self,
        t: Any,
        get: str | Sequence[str] | None,
        k_td: Mapping[str, Matrix] | None,
        k_tt: Mapping[str, Matrix] | None,
        covariance: str | None,
    ) -> Any:
        """`__call__`'s answer from kernels: `k_td` the test-train kernels of
        `needed_kernels(...)` (None: predict on the training set), `k_tt` the test NNGP, a
        matrix for covariance "full", its diagonal for "marginal" (marginal variances only)."""
        names = gets(get, GETS)
        train = self.train(needed_kernels(names, covariance))
        if t is None:
            inference = self.at_infinity(tuple(train))
            prior = None if k_tt is None else k_tt["nngp"]
            return named(get, {n: inference.predict(n, k_td, prior, covariance) for n in names})
        column, shape = times(t, self._learning_rate)
        at = functools.partial(self._at, column, shape, train, k_td, k_tt, covariance)
        return named(get, {name: at(name) for name in names})

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

    def _at(
        self,
        column: Matrix,
        shape: tuple[int, ...],
        train: dict[str, Matrix],
        k_td: Mapping[str, Matrix] | None,
        k_tt: Mapping[str, Matrix] | None,
        covariance: str | None,
        name: str,
    ) -> Any:
        n, y = self._targets.size, self._targets
        basis = self.eigenbasis(name)
        if k_td is None:  # the training set
            mean = y.like(y.matrix[None] - basis.apply(decay(n), column, y.matrix), shape)
            if covariance is None:
                return mean
            cov = self._train_covariance(name, basis, column, train, covariance)
        else:
            solved = basis.apply(grown(n), column, y.matrix)  # T^-1 (I - e(t)) y
            mean = y.like(np.einsum("ij,tjk->tik", k_td[name], solved), shape)
            if covariance is None:
                return mean
            assert k_tt is not None
            cov = self._test_covariance(name, basis, column, train, k_td, k_tt, covariance)
        return Gaussian(mean, cov.reshape(*shape, *cov.shape[1:]))

    def _train_covariance(
        self,
        name: str,
        basis: Eigenbasis,
        column: Matrix,
        train: dict[str, Matrix],
        covariance: str,
    ) -> Matrix:
        n = self._targets.size
        values, v = basis.values[None, :], basis.vectors
        if name == "nngp":  # V diag(l e(2t)) V^T
            middle = values * np.exp(-2 * values * column / n)
            return pairs(v[None] * middle[:, None, :], v[None], covariance)
        e = np.einsum("ij,tj,kj->tik", v, decay(n)(values, column), v)  # e(t), symmetric
        return pairs(e @ train["nngp"], e, covariance)

    def _test_covariance(
        self,
        name: str,
        basis: Eigenbasis,
        column: Matrix,
        train: dict[str, Matrix],
        k_td: Mapping[str, Matrix],
        k_tt: Mapping[str, Matrix],
        covariance: str,
    ) -> Matrix:
        n = self._targets.size
        t_k, prior = k_td[name], k_tt["nngp"][None]
        if name == "nngp":  # K** - T* T^-1 (I - e(2t)) T*^T
            solved = np.swapaxes(basis.apply(grown(n), 2 * column, t_k.T), 1, 2)
            return prior - pairs(t_k[None], solved, covariance)
        a = np.swapaxes(basis.apply(grown(n), column, t_k.T), 1, 2)  # A(t), (T, test, train)
        nngp_td = k_td["nngp"][None]
        cross = pairs(a, nngp_td, covariance) + pairs(nngp_td, a, covariance)
        return np.asarray(prior + pairs(a @ train["nngp"], a, covariance) - cross)


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
