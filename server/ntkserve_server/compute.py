"""Compiled kernel functions per architecture, run on jax's default device; numpy in, out.

One `KernelFn` per architecture id and one jitted forward and one jitted gradient per
function; jax caches the compilations per (input shapes, dtype, get). Values and
gradients are computed by separate programs so that `value_and_grad` returns bit for bit
the values `kernel` returns (the forward *is* the same compiled program).
Inputs are checked against the network once, by `check`, where a call comes in; the engine
and the batcher take the `CheckedInputs` it returns and do not check again.
Blocking: call from a worker thread.
"""

from __future__ import annotations

import collections
import dataclasses
import threading
from collections.abc import Callable
from typing import Any

import jax
import numpy as np
from ntkserve_engine.kernels import KernelFn
from ntkserve_engine.kernels.compile import CheckedShapes, Params

Array = np.ndarray[Any, Any]


@dataclasses.dataclass(frozen=True)
class Compiled:
    """One architecture (its hyper-parameter values in `kfn.params`) and the jitted programs
    it shares with every architecture of the same topology."""

    kfn: KernelFn
    forward: Callable[..., Any]
    grads: Callable[..., Any]


@dataclasses.dataclass(frozen=True)
class CheckedInputs:
    """A kernel's inputs, known to fit the network that computes them (made by `check`)."""

    compiled: Compiled
    x1: Array
    x2: Array | None
    get: tuple[str, ...]
    mask_constant: float | None
    patterns: tuple[Array | None, Array | None]
    shapes: CheckedShapes

    @property
    def kernel_shape(self) -> tuple[int, ...]:
        return self.shapes.kernel


def check(
    compiled: Compiled,
    x1: Array,
    x2: Array | None,
    get: tuple[str, ...],
    mask_constant: float | None = None,
    patterns: tuple[Array | None, Array | None] = (None, None),
) -> CheckedInputs:
    """The inputs, checked against the network (`KernelFn.check_inputs`: InputError if they
    do not fit) and shaped, once, for everything downstream."""
    shapes = compiled.kfn.check_inputs(
        x1.shape, None if x2 is None else x2.shape, x1.dtype, pattern_shapes(patterns)
    )
    return CheckedInputs(compiled, x1, x2, get, mask_constant, patterns, shapes)


def _grads_fn(kfn: KernelFn) -> Callable[..., Any]:
    def grads(
        params: Params,
        x1: Any,
        x2: Any,
        cotangents: tuple[Any, ...],
        mask_constant: Any,
        patterns: tuple[Any, Any],
        get: tuple[str, ...],
        with_params: bool,
    ) -> tuple[Any, Any, Any]:
        def kernels(p: Params, a: Any, b: Any) -> tuple[Any, ...]:
            return kfn.apply(p, a, b, get, mask_constant, *patterns)

        if x2 is None:
            _, vjp = jax.vjp(lambda p, a: kernels(p, a, None), params, x1)
            g_params, g1 = vjp(cotangents)
            g2 = None
        else:
            _, vjp = jax.vjp(kernels, params, x1, x2)
            g_params, g1, g2 = vjp(cotangents)
        return g1, g2, (g_params if with_params else None)

    return jax.jit(grads, static_argnames=("get", "with_params"))


class ComputeEngine:
    """Jitted functions per topology (so a sweep over W_std compiles once), and the
    architectures that use them, by id. ("Jitted": `jax.jit` wrappers, compiled by jax per
    input shape on first call; tile_programs.py keeps ahead-of-time "executables", and
    batching.py "batched" (vmapped) functions: three caches, three names.)

    Bounded: at most `max_topologies` topologies keep their jitted functions (and the
    executables jax caches inside them); the least recently used one is dropped with the
    architectures that use it, which are rebuilt from the registry on their next call.
    """

    def __init__(self, max_topologies: int = 64) -> None:
        self.max_topologies = max_topologies
        self._jitted: collections.OrderedDict[
            str, tuple[Callable[..., Any], Callable[..., Any]]
        ] = collections.OrderedDict()
        self._compiled: dict[str, Compiled] = {}
        self._lock = threading.Lock()
        # Lookups of a topology's jitted functions: found, or made anew (what the metrics report).
        self.hits = 0
        self.misses = 0

    def compiled(self, kfn: KernelFn) -> Compiled:
        """kfn's architecture with its topology's jitted functions, made once per topology."""
        with self._lock:
            found = self._compiled.get(kfn.id)
            if found is None:
                jitted = self._jitted.get(kfn.topology_id)
                if jitted is None:
                    self.misses += 1
                    jitted = (jax.jit(kfn.apply, static_argnames=("get",)), _grads_fn(kfn))
                    self._jitted[kfn.topology_id] = jitted
                    self._evict()
                else:
                    self.hits += 1
                found = Compiled(kfn, *jitted)
                self._compiled[kfn.id] = found
            else:
                self.hits += 1
            self._jitted.move_to_end(kfn.topology_id)
            return found

    def _evict(self) -> None:
        while len(self._jitted) > self.max_topologies:
            topology, _ = self._jitted.popitem(last=False)
            self._compiled = {
                i: c for i, c in self._compiled.items() if c.kfn.topology_id != topology
            }

    def topologies(self) -> int:
        with self._lock:
            return len(self._jitted)

    def lookup(self, architecture_id: str) -> Compiled | None:
        with self._lock:
            found = self._compiled.get(architecture_id)
            if found is not None:
                self.hits += 1
                self._jitted.move_to_end(found.kfn.topology_id)
            return found

    def forget(self, architecture_id: str) -> None:
        with self._lock:
            self._compiled.pop(architecture_id, None)

    def kernel(self, inputs: CheckedInputs) -> tuple[Array, ...]:
        return run_forward(inputs)

    def value_and_grad(
        self,
        inputs: CheckedInputs,
        cotangents: tuple[Array, ...],
        hyper_parameters: tuple[str, ...] = (),
    ) -> tuple[tuple[Array, ...], Array, Array | None, dict[str, float]]:
        return value_and_grad(inputs, cotangents, hyper_parameters)


def run_forward(
    inputs: CheckedInputs, program: Callable[..., Any] | None = None
) -> tuple[Array, ...]:
    """The forward program on checked inputs, its kernels on the host (exactly symmetric
    for x2 = None): what `ComputeEngine.kernel` and an unbatched call of the batcher run.
    `program`: the ahead-of-time executable of these inputs' shapes (`unary_programs`), run
    instead of the jitted function (the same program, compiled and analysed beforehand)."""
    compiled = inputs.compiled
    extras = {
        "mask_constant": mask_scalar(inputs.mask_constant, inputs.x1),
        "pattern1": inputs.patterns[0],
        "pattern2": inputs.patterns[1],
    }
    params, x1, x2 = compiled.kfn.params, inputs.x1, inputs.x2
    if program is None:
        out = compiled.forward(params, x1, x2, get=inputs.get, **extras)
    else:
        out = program(params, x1, x2, **extras)
    return compiled.kfn.to_host(out, inputs.x2 is None)


def value_and_grad(
    inputs: CheckedInputs,
    cotangents: tuple[Array, ...],
    hyper_parameters: tuple[str, ...] = (),
    programs: tuple[Callable[..., Any], Callable[..., Any]] | None = None,
) -> tuple[tuple[Array, ...], Array, Array | None, dict[str, float]]:
    """Values (the forward program's, bit for bit), dL/dx1, dL/dx2 and dL/dtheta for the
    named hyper-parameters (paths from `kfn.hyper_parameter_paths`). `programs`: the
    ahead-of-time (forward, gradient) executables of these inputs' shapes, if made."""
    values = run_forward(inputs, None if programs is None else programs[0])
    kfn = inputs.compiled.kfn
    with_params = bool(hyper_parameters)
    args = (
        kfn.params,
        inputs.x1,
        inputs.x2,
        cotangents,
        mask_scalar(inputs.mask_constant, inputs.x1),
        inputs.patterns,
    )
    if programs is None:
        g1, g2, g_params = inputs.compiled.grads(*args, get=inputs.get, with_params=with_params)
    else:
        g1, g2, g_params = programs[1](*args)
    by_path: dict[str, float] = {}
    if hyper_parameters:
        leaves = jax.tree.leaves(g_params)
        every = dict(zip(kfn.hyper_parameter_paths, leaves, strict=True))
        by_path = {name: float(every[name]) for name in hyper_parameters}
    return values, np.asarray(g1), None if g2 is None else np.asarray(g2), by_path


def mask_scalar(mask_constant: float | None, like: Array) -> Array | None:
    """The mask constant as a 0-d array of the inputs' dtype: a program input, so every
    constant shares one compilation (None compiles the program without masking)."""
    return None if mask_constant is None else np.asarray(mask_constant, like.dtype)


def pattern_shapes(
    patterns: tuple[Array | None, Array | None],
) -> tuple[tuple[int, ...] | None, tuple[int, ...] | None]:
    return (
        None if patterns[0] is None else patterns[0].shape,
        None if patterns[1] is None else patterns[1].shape,
    )
