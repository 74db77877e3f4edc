"""The log marginal likelihood of a network's GP and its gradient with respect to the
network's hyper-parameters and diag_reg: what neural-tangents could not give, its
hyper-parameters being Python constants; here they are program inputs (`KernelFn.params`),
the same paths ComputeValueAndGrad differentiates.

For targets Y (N rows, k independent outputs) and K_r = K + r s I (s the mean diagonal of K
when r is relative, else 1; K the NNGP for get "nngp", the NTK for "ntkgp"), Rasmussen &
Williams 2006, eqs. 2.30 and 5.9:

    log p(Y) = -1/2 tr(Y^T K_r^-1 Y) - k/2 log det K_r - N k/2 log(2 pi),
    G = d log p / d K_r = 1/2 (A A^T - k K_r^-1),   A = K_r^-1 Y.

K_r's dependence on K adds r/N tr(G) I to G when r is relative (s = tr K / N); then
d log p / d r = s tr(G), and the hyper-parameters' gradient is the kernel function's
vector-Jacobian product with that cotangent (one reverse pass through the kernel, not N^2).
K_r is solved by `factorization` in float64; with jitter or clipped eigenvalues, the value
and gradient are those of the matrix actually solved (the result says which it was).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import jax
import numpy as np

from ntkserve_engine.kernels.errors import InputError
from ntkserve_engine.predict.factorization import (
    Factorization,
    factorize,
    regularized,
    with_diagonal_added,
)
from ntkserve_engine.predict.outputs import Matrix, Targets

LIKELIHOOD_GETS = {"nngp": "nngp", "ntkgp": "ntk"}  # the GP's name -> the kernel it uses


@dataclasses.dataclass(frozen=True)
class MarginalLikelihood:
    """log p(y_train) under the GP, how its kernel was solved, and (when asked) gradients:
    `params_grad` shaped like the kernel function's params, `diag_reg_grad` a float."""

    value: float
    factorization: Factorization
    params_grad: Any = None
    diag_reg_grad: float | None = None
    kernel_grad: Matrix | None = None  # d log p / d K (`of_kernel` with grad)


def marginal_likelihood(
    kernel_fn: Any,
    x_train: Any,
    y_train: Any,
    get: str = "nngp",
    diag_reg: float = 0.0,
    diag_reg_absolute_scale: bool = False,
    params: Any = None,
    grad: bool = False,
) -> MarginalLikelihood:
    """The log marginal likelihood of y_train under the GP of `kernel_fn` (an
    `ntkserve_engine.KernelFn`) on x_train, for get "nngp" (the Bayesian network) or "ntkgp"
    (the NTK as a GP's kernel), at hyper-parameters `params` (None: the network's own); with
    `grad`, its gradients with respect to them and to diag_reg."""
    if get not in LIKELIHOOD_GETS:
        raise InputError("get", f"must be one of {sorted(LIKELIHOOD_GETS)}, got {get!r}")
    targets = Targets(y_train)
    params = kernel_fn.params if params is None else params

    def kernel(p: Any) -> Any:
        return kernel_fn(x_train, None, get=LIKELIHOOD_GETS[get], params=p)

    # The value is always that of the plain kernel call (what `kernel_fn` gives), whether or
    # not gradients are asked for (neural-tangents' issue #123: value_and_grad's value
    # differed from the kernel's); the reverse pass differentiates the same function.
    raw = kernel(params)
    pull_back = jax.vjp(kernel, params)[1] if grad else None
    k = np.asarray(raw, np.float64)
    targets.check_rows(k, "x_train")
    found = of_kernel(k, targets.matrix, diag_reg, diag_reg_absolute_scale, grad)
    if pull_back is None:
        return found
    (params_grad,) = pull_back(np.asarray(found.kernel_grad, raw.dtype))
    return dataclasses.replace(found, params_grad=params_grad, kernel_grad=None)


def log_likelihood(factorization: Factorization, y: Matrix) -> tuple[float, Matrix]:
    """(log p(Y), K_r^-1 Y) for targets Y (N, outputs) under the GP whose regularized
    kernel K_r `factorization` solves (eq. 2.30)."""
    solved = factorization.solve(y)
    n, outputs = y.shape
    value = -0.5 * float(np.sum(y * solved)) - 0.5 * outputs * factorization.logdet()
    return value - 0.5 * n * outputs * math.log(2 * math.pi), solved


def of_kernel(
    k: Matrix, y: Matrix, diag_reg: float, absolute: bool, grad: bool
) -> MarginalLikelihood:
    """log p(Y) from the kernel matrix K (float64, unregularized) and targets (N, outputs);
    with `grad`, d log p / d diag_reg and `kernel_grad`, d log p / d K: the cotangent whose
    vector-Jacobian product through the kernel function gives the hyper-parameters'
    gradient (in process: jax.vjp; served: the gradient program, as ComputeValueAndGrad)."""

    def remake() -> Matrix:
        return regularized(k, diag_reg, absolute)

    factorization = factorize(remake(), remake)
    value, solved = log_likelihood(factorization, y)
    if not grad:
        return MarginalLikelihood(value, factorization)
    n, outputs = y.shape
    # solved.T copied: `x @ x.T` of one buffer is numpy's dsyrk, which crashes on large
    # outputs (factorization.py, BLOCKED_FROM).
    g = 0.5 * (solved @ solved.T.copy() - outputs * factorization.inverse())
    scale = 1.0 if absolute else float(np.trace(k)) / n
    diag_reg_grad = scale * float(np.trace(g))
    if not absolute:
        g = with_diagonal_added(g, (diag_reg / n) * float(np.trace(g)))
    return MarginalLikelihood(value, factorization, None, diag_reg_grad, g)
