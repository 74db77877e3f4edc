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

import dataclasses
import threading
from collections.abc import Callable
from typing import Any

import jax
import numpy as np
from ntkserve_engine.kernels import KernelFn
from ntkserve_engine.kernels.compile import CheckedShapes, Params

from ntkserve_server.compiled_state import SHARED_SCOPE, CompiledCache

Array = np.ndarray[Any, Any]
# The compiled state's budget (--max-compiled-mb): 2 GiB keeps a few thousand ids of
# 1,000-layer networks, or eight compiled 1,000-layer programs, on a server of 8 GiB.
DEFAULT_MAX_COMPILED_BYTES = 2 << 30


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


def forward_fn(kfn: KernelFn) -> Callable[..., Any]:
    """The jitted forward of kfn's topology (ComputeKernel's program)."""
    return jax.jit(kfn.apply, static_argnames=("get",))


def batched_fn(kfn: KernelFn, get: tuple[str, ...], with_x2: bool) -> Callable[..., Any]:
    """The dynamic batcher's merged forward: kfn's forward over a stack of inputs."""

    def one(params: Any, x1: Any, x2: Any) -> Any:
        return kfn.apply(params, x1, x2, get)

    return jax.jit(jax.vmap(one, in_axes=(None, 0, 0 if with_x2 else None)))


def tile_fn(kfn: KernelFn, get: tuple[str, ...], device: Any) -> Callable[..., Any]:
    """A streamed tile's program, placed on `device`: kfn's forward of one tile's rows."""
    sharding = jax.sharding.SingleDeviceSharding(device)

    def tile(params: Params, x1: Any, x2: Any, mask_constant: Any, patterns: Any) -> Any:
        return kfn.apply(params, x1, x2, get, mask_constant, *patterns)

    return jax.jit(tile, in_shardings=sharding, out_shardings=sharding)


def grads_fn(kfn: KernelFn) -> Callable[..., Any]:
    """The jitted gradient of kfn's topology (ComputeValueAndGrad's program)."""

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

    Bounded (`compiled_state.CompiledCache`): the estimated bytes of every topology's programs
    and every id's entry stay under `max_bytes`, and at most `max_topologies` topologies are
    kept; the least recently used go first and are rebuilt from the registry on their next
    call. `isolate_tenants`: each tenant compiles its own programs (see compiled_state.py for
    the trade).
    """

    def __init__(
        self,
        max_topologies: int = 64,
        max_bytes: int = DEFAULT_MAX_COMPILED_BYTES,
        isolate_tenants: bool = False,
    ) -> None:
        self._cache: CompiledCache[Compiled] = CompiledCache(
            lambda kfn: (forward_fn(kfn), grads_fn(kfn)),
            lambda kfn, programs: Compiled(kfn, *programs),
            max_topologies=max_topologies,
            max_bytes=max_bytes,
            isolate=isolate_tenants,
        )
        self._lock = threading.Lock()

    @property
    def hits(self) -> int:
        """Lookups that found a topology's jitted functions (what the metrics report)."""
        return self._cache.hits

    @property
    def misses(self) -> int:
        """Lookups that made a topology's jitted functions anew."""
        return self._cache.misses

    def compiled(self, kfn: KernelFn, tenant: str = SHARED_SCOPE) -> Compiled:
        """kfn's architecture with its topology's jitted functions, made once per topology
        (per tenant's topology when tenants are isolated)."""
        with self._lock:
            return self._cache.get(kfn, tenant)

    def lookup(self, architecture_id: str, tenant: str = SHARED_SCOPE) -> Compiled | None:
        with self._lock:
            return self._cache.lookup(architecture_id, tenant)

    def forget(self, architecture_id: str) -> None:
        with self._lock:
            self._cache.forget(architecture_id)

    def topologies(self) -> int:
        with self._lock:
            return self._cache.topologies()

    def state_bytes(self) -> int:
        """The estimated bytes of the compiled state kept now (bounded by `max_bytes`)."""
        with self._lock:
            return self._cache.bytes()

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
    inputs: CheckedInputs, program: Callable[..., Any] | None = None, params: Any = None
) -> tuple[Array, ...]:
    """The forward program on checked inputs, its kernels on the host (exactly symmetric
    for x2 = None): what `ComputeEngine.kernel` and an unbatched call of the batcher run.
    `program`: the ahead-of-time executable of these inputs' shapes (`unary_programs`), run
    instead of the jitted function (the same program, compiled and analysed beforehand).
    `params`: hyper-parameter values other than the network's own (tuning)."""
    compiled = inputs.compiled
    extras = {
        "mask_constant": mask_scalar(inputs.mask_constant, inputs.x1),
        "pattern1": inputs.patterns[0],
        "pattern2": inputs.patterns[1],
    }
    params = compiled.kfn.params if params is None else params
    x1, x2 = inputs.x1, inputs.x2
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
    values: tuple[Array, ...] | None = None,
    params: Any = None,
) -> tuple[tuple[Array, ...], Array, Array | None, dict[str, float]]:
    """Values (the forward program's, bit for bit), dL/dx1, dL/dx2 and dL/dtheta for the
    named hyper-parameters (paths from `kfn.hyper_parameter_paths`). `programs`: the
    ahead-of-time (forward, gradient) executables of these inputs' shapes, if made;
    `values`: the forward's, when computed already (a cotangent made from them);
    `params`: hyper-parameter values other than the network's own."""
    kfn = inputs.compiled.kfn
    params = kfn.params if params is None else params
    if values is None:
        values = run_forward(inputs, None if programs is None else programs[0], params)
    with_params = bool(hyper_parameters)
    args = (
        params,
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
