"""Gaussian-process inference with infinite-width kernels, as neural-tangents'
`predict.gp_inference` (same names, defaults and semantics), solved in float64 through
`factorization` (never a silent NaN).

For get "nngp" the posterior of the Bayesian infinitely wide network (Lee et al. 2018, "Deep
neural networks as Gaussian processes"): mean K*(K + r)^-1 y, covariance
K** - K*(K + r)^-1 K*^T. For "ntk", the ensemble of infinitely wide networks trained to
convergence by gradient descent on MSE (Lee et al. 2019, "Wide neural networks of any depth
evolve as linear models under gradient descent", eq. 16): mean T*(T + r)^-1 y and, with
A = T*(T + r)^-1, covariance K** + A K A^T - (A K*^T + K* A^T), which needs both kernels.
For "ntkgp" the GP with the NTK as its kernel (He et al. 2020, "Bayesian deep ensembles via
the neural tangent kernel"). r = diag_reg (relative to the mean diagonal by default).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ntkserve_engine.kernels.errors import InputError
from ntkserve_engine.predict.factorization import Factorization, factorize, regularized
from ntkserve_engine.predict.outputs import (
    Gaussian,
    Matrix,
    Targets,
    as_matrix,
    covariance_of,
    gets,
    named,
    pairs,
    part,
)

GP_GETS = ("nngp", "ntk", "ntkgp")


class GPInference:
    """`predict_fn` of `gp_inference`; `factorization(kernel)` tells how each training
    kernel was solved (method, jitter, condition estimate). `factorizations` gives ones
    made before (a served model's, loaded from its store): nothing is factorized twice."""

    def __init__(
        self,
        k_train_train: Any,
        y_train: Any,
        diag_reg: float,
        diag_reg_absolute_scale: bool,
        trace_axes: Sequence[int],
        factorizations: Mapping[str, Factorization] | None = None,
    ) -> None:
        self._k_train_train = k_train_train
        self._targets = Targets(y_train, trace_axes)
        self._diag_reg = float(diag_reg)
        self._absolute = diag_reg_absolute_scale
        self._factorizations = dict(factorizations or {})

    @functools.cache  # noqa: B019 - one per predictor, as long-lived as it
    def train(self, kernel: str) -> Matrix:
        """The training kernel named `kernel`, unregularized, float64 (converted and checked
        once: an "ntk" covariance reads the NNGP at every call)."""
        k = as_matrix(part(self._k_train_train, kernel), f"k_train_train.{kernel}")
        self._targets.check_rows(k, f"k_train_train.{kernel}")
        return k

    def factorization(self, kernel: str) -> Factorization:
        if kernel not in self._factorizations:

            def remake() -> Matrix:
                return regularized(self.train(kernel), self._diag_reg, self._absolute)

            self._factorizations[kernel] = factorize(remake(), remake)
        return self._factorizations[kernel]

    @functools.cache  # noqa: B019
    def _k_inv_y(self, kernel: str) -> Matrix:
        return self.factorization(kernel).solve(self._targets.matrix)

    def __call__(
        self,
        get: str | Sequence[str] | None = None,
        k_test_train: Any = None,
        k_test_test: Any = None,
    ) -> Any:
        """neural-tangents' predict_fn; beyond it, a `k_test_test` of vectors (the prior's
        diagonal per test point) gives marginal variances instead of the full covariance."""
        out = {}
        for name in gets(get, GP_GETS):
            prior = None if k_test_test is None else part(k_test_test, _prior(name))
            out[name] = self.predict(name, k_test_train, prior, covariance_of(prior))
        return named(get, out)

    def predict(
        self, name: str, k_test_train: Any, k_test_test: Any, covariance: str | None
    ) -> Any:
        """The mean (and, with `covariance` "marginal" or "full", `Gaussian(mean, covariance)`)
        of the posterior `name`; `k_test_test` is the prior's kernel on the test points (its
        diagonal for "marginal"), k_test_train None the training set."""
        kernel = "ntk" if name == "ntkgp" else name
        targets = self._targets
        if k_test_train is None:  # the training set: interpolated
            mean = targets.like(targets.matrix)
            if covariance is None:
                return mean
            n = len(targets.matrix)
            return Gaussian(mean, np.zeros((n, n) if covariance == "full" else (n,)))
        k_td = as_matrix(part(k_test_train, kernel), f"k_test_train.{kernel}")
        targets.check_rows(k_td, f"k_test_train.{kernel}")
        mean = targets.like(k_td @ self._k_inv_y(kernel))
        if covariance is None:
            return mean
        k_tt = _test_test(k_test_test, len(k_td), covariance, f"k_test_test.{_prior(name)}")
        solve = self.factorization(kernel).solve
        a = solve(k_td.T).T  # T* (T + r)^-1
        if name != "ntk":
            return Gaussian(mean, k_tt - pairs(k_td, a, covariance))
        nngp_td = as_matrix(part(k_test_train, "nngp"), "k_test_train.nngp")
        spread = pairs(a @ self.train("nngp"), a, covariance)
        cross = pairs(a, nngp_td, covariance) + pairs(nngp_td, a, covariance)
        return Gaussian(mean, k_tt + spread - cross)


def _prior(name: str) -> str:
    """The prior kernel of a posterior's covariance: the NTK-GP's is the NTK, else the NNGP."""
    return "ntk" if name == "ntkgp" else "nngp"


def _test_test(k: Any, rows: int, covariance: str, field: str) -> Matrix:
    """The prior on the test points, checked: (rows, rows) for "full", (rows,) else."""
    shape = (rows, rows) if covariance == "full" else (rows,)
    values = np.asarray(k, np.float64)
    if values.shape != shape:
        raise InputError(field, f"must be {shape}, got {values.shape}")
    if not np.all(np.isfinite(values)):
        raise InputError(field, "has non-finite entries")
    return values


def gp_inference(
    k_train_train: Any,
    y_train: Any,
    diag_reg: float = 0.0,
    diag_reg_absolute_scale: bool = False,
    trace_axes: Sequence[int] = (-1,),
) -> GPInference:
    """neural-tangents' `predict.gp_inference`: returns
    `predict_fn(get=None, k_test_train=None, k_test_test=None)`, giving the mean (and, with
    `k_test_test`, `Gaussian(mean, covariance)`) for get "nngp", "ntk" or "ntkgp" (None:
    both "nngp" and "ntk"; a tuple gives a namedtuple). Kernels are arrays, or containers
    with `nngp`/`ntk` attributes or keys ("ntk" with a covariance needs both). Results are
    float64."""
    return GPInference(k_train_train, y_train, diag_reg, diag_reg_absolute_scale, trace_axes)
