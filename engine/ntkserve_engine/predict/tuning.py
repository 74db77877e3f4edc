"""Tuning hyper-parameters: maximizing the log marginal likelihood over named
hyper-parameters (paths of `KernelFn.hyper_parameter_paths`, and "diag_reg"), in log space
within bounds, with optax's Adam (Kingma & Ba 2015) and projection onto the bounds after
each step. `maximize` is the loop (served Tune gives it the server's likelihood); `tune`
runs it in process on `likelihood.of_kernel`, the kernel and its pull-back jitted once (the
pull-back recomputes the forward inside its program, as the server's gradient program does).

Log space: the scale parameters (W_std, b_std, diag_reg) are positive and matter by ratio,
so a step changes each by a fraction of itself; the bounds keep them positive and the
kernel away from degenerate corners.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping
from typing import Any

import jax
import numpy as np
import optax

from ntkserve_engine.kernels.errors import InputError
from ntkserve_engine.kernels.hyper_paths import params_with, with_values
from ntkserve_engine.predict.likelihood import LIKELIHOOD_GETS, of_kernel
from ntkserve_engine.predict.outputs import Targets

DIAG_REG = "diag_reg"  # the one tunable that is not a path of the architecture
# values -> (log p, d log p / d value for each value)
Objective = Callable[[dict[str, float]], tuple[float, dict[str, float]]]


@dataclasses.dataclass(frozen=True)
class Tuned:
    """The best values seen, log p there, and log p at each step."""

    values: dict[str, float]
    log_likelihood: float
    trace: tuple[float, ...]
    architecture: Any = None  # in process: the tuned architecture (an ntkserve.v1 message)


def check_bounds(bounds: Mapping[str, tuple[float, float]]) -> None:
    if not bounds:
        raise InputError("parameters", "name at least one hyper-parameter to tune")
    for path, (lower, upper) in bounds.items():
        if not (0 < lower < upper < math.inf):
            raise InputError(
                f"parameters[{path!r}]",
                f"needs bounds 0 < lower < upper < inf (tuned in log space), got "
                f"[{lower}, {upper}]",
            )


def maximize(
    objective: Objective,
    start: Mapping[str, float],
    bounds: Mapping[str, tuple[float, float]],
    steps: int = 100,
    step_size: float = 0.05,
) -> Tuned:
    """Adam on -log p over z = log(value), each z projected onto [log lower, log upper]; the
    start is projected first. Returns the best point evaluated."""
    check_bounds(bounds)
    if steps < 1 or not (0 < step_size < math.inf):
        raise InputError("steps", f"needs steps >= 1 and step_size > 0, got {steps}, {step_size}")
    paths = list(bounds)
    low = np.log([bounds[p][0] for p in paths])
    high = np.log([bounds[p][1] for p in paths])
    z = np.clip(np.log([max(start[p], 1e-300) for p in paths]), low, high)
    optimizer = optax.adam(step_size)
    state = optimizer.init(z)
    trace: list[float] = []
    best: tuple[float, dict[str, float]] = (-math.inf, {})
    for _ in range(steps):
        values = {p: float(v) for p, v in zip(paths, np.exp(z), strict=True)}
        value, grads = objective(values)
        trace.append(value)
        if value > best[0]:
            best = (value, values)
        descent = np.array([-grads[p] * values[p] for p in paths])  # d(-log p)/dz
        updates, state = optimizer.update(descent, state, z)
        z = np.clip(np.asarray(optax.apply_updates(z, updates)), low, high)
    return Tuned(best[1], best[0], tuple(trace))


def tune(
    kernel_fn: Any,
    x_train: Any,
    y_train: Any,
    parameters: Mapping[str, tuple[float, float]],
    get: str = "nngp",
    diag_reg: float = 0.0,
    diag_reg_absolute_scale: bool = False,
    steps: int = 100,
    step_size: float = 0.05,
) -> Tuned:
    """In process: the hyper-parameters named in `parameters` (path -> (lower, upper);
    "diag_reg" for the regularizer) maximizing the log marginal likelihood, from the network's
    own values; `Tuned.architecture` is the tuned network."""
    if get not in LIKELIHOOD_GETS:
        raise InputError("get", f"must be one of {sorted(LIKELIHOOD_GETS)}, got {get!r}")
    paths = kernel_fn.hyper_parameter_paths
    own = dict(zip(paths, (float(v) for v in jax.tree.leaves(kernel_fn.params)), strict=True))
    own[DIAG_REG] = diag_reg
    targets = Targets(y_train)
    kernel_name = LIKELIHOOD_GETS[get]

    # Jitted once for the whole loop (eager, every step would trace the network anew).
    def kernel(params: Any) -> Any:
        return kernel_fn(x_train, None, get=kernel_name, params=params)

    forward = jax.jit(kernel)
    pull_back = jax.jit(lambda params, g: jax.vjp(kernel, params)[1](g)[0])

    def objective(values: dict[str, float]) -> tuple[float, dict[str, float]]:
        hyper = {p: v for p, v in values.items() if p != DIAG_REG}
        params = params_with(kernel_fn.params, paths, hyper)
        raw = forward(params)
        k = np.asarray(raw, np.float64)
        targets.check_rows(k, "x_train")
        reg = values.get(DIAG_REG, diag_reg)
        found = of_kernel(k, targets.matrix, reg, diag_reg_absolute_scale, grad=True)
        params_grad = pull_back(params, np.asarray(found.kernel_grad, raw.dtype))
        grads = dict(zip(paths, (float(g) for g in jax.tree.leaves(params_grad)), strict=True))
        grads[DIAG_REG] = float(found.diag_reg_grad or 0.0)
        return found.value, grads

    missing = [p for p in parameters if p not in own]
    if missing:
        raise InputError("parameters", f"{missing} are not hyper-parameters; it has {list(own)}")
    tuned = maximize(objective, own, parameters, steps, step_size)
    hyper = {p: v for p, v in tuned.values.items() if p != DIAG_REG}
    return dataclasses.replace(tuned, architecture=with_values(kernel_fn.architecture, hyper))
