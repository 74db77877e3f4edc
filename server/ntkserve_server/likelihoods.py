"""Served log marginal likelihood (MarginalLikelihood) and hyper-parameter tuning (Tune).

The kernel is ComputeKernel's (the unary forward program, run in an engine process, at the
hyper-parameter values asked), the likelihood and its cotangent the engine's
(`predict.likelihood.of_kernel`), and the hyper-parameters' gradient ComputeValueAndGrad's
gradient program with that cotangent: one reverse pass through the kernel. Tuning is the
engine's loop (`predict.tuning.maximize`: Adam in log space within bounds) over these, and
registers the tuned architecture for the caller. Both are unary calls: the training set is
bounded by the unary kernel limits (a tuning set of a few thousand points).
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import threading
from collections.abc import Callable
from typing import Any

import jax
import numpy as np
from ntkserve.v1 import model_service_pb2 as ms
from ntkserve_engine.kernels import KernelFn
from ntkserve_engine.kernels.hyper_paths import params_with, with_values
from ntkserve_engine.predict.likelihood import LIKELIHOOD_GETS, MarginalLikelihood, of_kernel
from ntkserve_engine.predict.tuning import DIAG_REG, check_bounds, maximize

from ntkserve_server import compute, model_requests, requests
from ntkserve_server.compute import CheckedInputs, Compiled
from ntkserve_server.model_requests import LikelihoodQuery
from ntkserve_server.models import solve_message
from ntkserve_server.service import KernelService

Array = np.ndarray[Any, Any]
Programs = tuple[Callable[..., Any], Callable[..., Any] | None]
MAX_STEPS = 1000
DEFAULT_STEPS, DEFAULT_STEP_SIZE = 100, 0.05


class Stopped(Exception):
    """The caller left while tuning ran."""


async def _prepared(
    kernels: KernelService,
    tenant: str,
    compiled: Compiled,
    query: LikelihoodQuery,
    hyper: tuple[str, ...],
) -> tuple[CheckedInputs, Programs]:
    """The training inputs checked, and their forward (and, for `hyper`, gradient) programs."""
    kernel = LIKELIHOOD_GETS[query.get]
    checked = compute.check(compiled, query.x, None, (kernel,))
    requests.check_entries(checked.kernel_shape, (kernel,), kernels.max_entries)
    forward = await kernels.unary.forward(checked, tenant)
    if not hyper:
        return checked, (forward.executable, None)
    gradient = await kernels.unary.grads(checked, tenant, True)
    return checked, (forward.executable, gradient.executable)


def evaluate(
    checked: CheckedInputs,
    programs: Programs,
    query: LikelihoodQuery,
    params: Any,
    hyper: tuple[str, ...],
    grad: bool,
) -> tuple[MarginalLikelihood, dict[str, float]]:
    """log p(y) at `params` and, with `grad`, its gradient: d/d diag_reg in the result and
    d/d each of `hyper` by path (blocking: programs run in engine processes)."""
    values = compute.run_forward(checked, programs[0], params)
    k = np.asarray(values[0], np.float64)
    y = query.y.reshape(len(query.y), -1)
    found = of_kernel(k, y, query.diag_reg, query.absolute, grad)
    if not hyper:
        return found, {}
    assert found.kernel_grad is not None and programs[1] is not None
    cotangent = (np.asarray(found.kernel_grad, checked.x1.dtype),)
    both = (programs[0], programs[1])
    _, _, _, by_path = compute.value_and_grad(
        checked, cotangent, hyper, both, values=values, params=params
    )
    return found, by_path


async def marginal_likelihood(
    kernels: KernelService, tenant: str, request: ms.MarginalLikelihoodRequest
) -> ms.MarginalLikelihoodResponse:
    query = await kernels.run(model_requests.likelihood_data, request, kernels.max_elements)
    compiled = await kernels.run(kernels.compiled, tenant, query.architecture_id)
    hyper = requests.hyper_parameters(request, compiled.kfn.hyper_parameter_paths)
    checked, programs = await _prepared(kernels, tenant, compiled, query, hyper)
    grad = bool(hyper) or request.diag_reg_grad
    run = functools.partial(evaluate, checked, programs, query, None, hyper, grad)
    found, by_path = await kernels.work.run(run)
    response = ms.MarginalLikelihoodResponse(
        log_marginal_likelihood=found.value,
        solve=solve_message(found.factorization),
        hyper_parameter_grads=by_path,
    )
    if request.diag_reg_grad:
        response.diag_reg_grad = float(found.diag_reg_grad or 0.0)
    return response


def _bounds(request: ms.TuneRequest, paths: tuple[str, ...]) -> dict[str, tuple[float, float]]:
    bounds: dict[str, tuple[float, float]] = {}
    for i, parameter in enumerate(request.parameters):
        if parameter.path not in paths and parameter.path != DIAG_REG:
            listed = ", ".join((*paths[:12], DIAG_REG))
            raise requests.InvalidRequest(
                f"parameters[{i}].path",
                f"{parameter.path!r} is not a hyper-parameter of this architecture; it has: "
                f"{listed}",
            )
        if parameter.path in bounds:
            raise requests.InvalidRequest(f"parameters[{i}].path", "is named twice")
        bounds[parameter.path] = (parameter.lower, parameter.upper)
    check_bounds(bounds)
    return bounds


def _steps(request: ms.TuneRequest) -> tuple[int, float]:
    steps = request.steps or DEFAULT_STEPS
    if not 0 < steps <= MAX_STEPS:
        raise requests.InvalidRequest("steps", f"must be 1 to {MAX_STEPS} (0: 100), got {steps}")
    size = request.step_size or DEFAULT_STEP_SIZE
    if not 0 < size < float("inf"):
        raise requests.InvalidRequest("step_size", f"must be > 0 (0: 0.05), got {size}")
    return steps, size


async def tune(kernels: KernelService, tenant: str, request: ms.TuneRequest) -> ms.TuneResponse:
    query = await kernels.run(model_requests.likelihood_data, request, kernels.max_elements)
    compiled = await kernels.run(kernels.compiled, tenant, query.architecture_id)
    kfn = compiled.kfn
    bounds = _bounds(request, kfn.hyper_parameter_paths)
    steps, step_size = _steps(request)
    hyper = tuple(p for p in bounds if p != DIAG_REG)
    checked, programs = await _prepared(kernels, tenant, compiled, query, hyper)
    paths = kfn.hyper_parameter_paths
    start = dict(zip(paths, (float(v) for v in jax.tree.leaves(kfn.params)), strict=True))
    start[DIAG_REG] = query.diag_reg
    stop = threading.Event()

    def at(values: dict[str, float]) -> tuple[MarginalLikelihood, dict[str, float]]:
        if stop.is_set():
            raise Stopped
        params = params_with(kfn.params, paths, {p: v for p, v in values.items() if p in paths})
        here = dataclasses.replace(query, diag_reg=values.get(DIAG_REG, query.diag_reg))
        return evaluate(checked, programs, here, params, hyper, True)

    def objective(values: dict[str, float]) -> tuple[float, dict[str, float]]:
        found, by_path = at(values)
        return found.value, {**by_path, DIAG_REG: float(found.diag_reg_grad or 0.0)}

    try:
        tuned = await kernels.run(maximize, objective, start, bounds, steps, step_size)
        best, _ = await kernels.run(at, tuned.values)
    except asyncio.CancelledError:
        stop.set()
        raise
    tuned_kfn = await kernels.run(
        KernelFn, with_values(kfn.architecture, {p: tuned.values[p] for p in hyper})
    )
    await kernels.register(tenant, tuned_kfn)
    return ms.TuneResponse(
        values=tuned.values,
        log_marginal_likelihood=best.value,
        architecture_id=tuned_kfn.id,
        trace=tuned.trace,
        solve=solve_message(best.factorization),
    )
