"""Recipes of programs: what to compile, picklable, and the one way to build one.

A `Recipe` names a program (ComputeKernel's forward, ComputeValueAndGrad's gradient, the
dynamic batcher's merged forward, a streamed tile), the canonical architecture it computes,
its static arguments, the shapes and dtypes of its inputs and the device it runs on:
everything needed to rebuild the program, and nothing else, so it can cross to an engine
process (`engine_processes`). `build` rebuilds the jitted function through the same
code the server runs (`compute.forward_fn`, `grads_fn`, `batched_fn`, `tile_fn`), lowers it,
counts its operations (refused past `max_ops` before XLA sees it), compiles it and reads
XLA's memory and cost analyses. The server and the engine processes both call `build`: one
place where a program is made.
"""

from __future__ import annotations

import collections
import dataclasses
import time
from collections.abc import Hashable
from typing import Any

import jax
from ntkserve.field_errors import FieldError
from ntkserve.v1 import architecture_pb2 as pb
from ntkserve_engine.kernels import KernelFn
from ntkserve_engine.kernels.canonical import repeat_factor

from ntkserve_server.compute import batched_fn, forward_fn, grads_fn, tile_fn
from ntkserve_server.requests import OverLimit

# An input's (shape, dtype.str), or None for an input the program does not take.
Spec = tuple[tuple[int, ...], str] | None


def spec_of(x: Any) -> Spec:
    """The spec of an array or `jax.ShapeDtypeStruct` (None stays None)."""
    return None if x is None else (tuple(x.shape), x.dtype.str)


def _struct(spec: Spec) -> Any:
    return None if spec is None else jax.ShapeDtypeStruct(*spec)  # type: ignore[no-untyped-call]


@dataclasses.dataclass(frozen=True)
class Recipe:
    """One program: `program` is "forward", "grads", "batched" or "tile"."""

    program: str
    architecture: bytes  # the canonical pb.Architecture, deterministically serialized
    position_pairs: bool  # KernelFn's force_position_pairs
    get: tuple[str, ...]
    x1: Spec
    x2: Spec
    mask_constant: Spec = None
    patterns: tuple[Spec, Spec] = (None, None)
    cotangent: Spec = None  # grads: each cotangent's (the kernels' shape)
    with_params: bool = False  # grads: also dL/dtheta
    device: int | None = None  # the id of the local device it runs on (None: jax's default)


def recipe(program: str, kfn: KernelFn, get: tuple[str, ...], **specs: Any) -> Recipe:
    """The recipe of `program` for kfn's architecture."""
    return Recipe(
        program,
        kfn.architecture.SerializeToString(deterministic=True),
        kfn.topology_id.endswith("-pairs"),
        get,
        **specs,
    )


def kernel_fn(recipe: Recipe) -> KernelFn:
    """The recipe's network, rebuilt from its canonical architecture."""
    architecture = pb.Architecture.FromString(recipe.architecture)
    return KernelFn(architecture, force_position_pairs=recipe.position_pairs)


def device_of(recipe: Recipe) -> Any:
    """The local device the recipe's program runs on."""
    devices = jax.local_devices()
    if recipe.device is None:
        return devices[0]
    return next(d for d in devices if d.id == recipe.device)


def lowered(recipe: Recipe, kfn: KernelFn) -> Any:
    """The recipe's program, jitted as the server jits it and lowered for its specs."""
    x1, x2, mask = _struct(recipe.x1), _struct(recipe.x2), _struct(recipe.mask_constant)
    patterns = (_struct(recipe.patterns[0]), _struct(recipe.patterns[1]))
    if recipe.program == "forward":
        return forward_fn(kfn).lower(  # type: ignore[attr-defined]
            kfn.params,
            x1,
            x2,
            get=recipe.get,
            mask_constant=mask,
            pattern1=patterns[0],
            pattern2=patterns[1],
        )
    if recipe.program == "grads":
        cotangents = (_struct(recipe.cotangent),) * len(recipe.get)
        return grads_fn(kfn).lower(  # type: ignore[attr-defined]
            kfn.params,
            x1,
            x2,
            cotangents,
            mask,
            patterns,
            get=recipe.get,
            with_params=recipe.with_params,
        )
    if recipe.program == "batched":
        merged = batched_fn(kfn, recipe.get, x2 is not None)
        return merged.lower(kfn.params, x1, x2)  # type: ignore[attr-defined]
    if recipe.program == "tile":
        tile = tile_fn(kfn, recipe.get, device_of(recipe))
        return tile.lower(kfn.params, x1, x2, mask, patterns)  # type: ignore[attr-defined]
    raise ValueError(f"no program is called {recipe.program!r}")


@dataclasses.dataclass(frozen=True)
class Program:
    """A compiled executable and what it costs to run once."""

    executable: Any
    ops: int
    memory_bytes: int
    # Upper bounds of one run's work, from XLA's cost analysis with each count times
    # `repeat_factor` (a loop's body is counted once): arithmetic, and memory traffic (the
    # bytes its operations read and write), which is what pooling networks' NTKs spend
    # their time on (`unary_programs.Budgets.seconds`).
    flops: float
    bytes_accessed: float
    compile_seconds: float = 0.0  # XLA's compile (0: loaded from a cache, not compiled)


def count_ops(lowered: Any) -> int:
    """Operations of a lowered module, nested regions (loop bodies, branches) included."""
    count, stack = 0, [lowered.compiler_ir("stablehlo").operation]
    while stack:
        op = stack.pop()
        count += 1
        for region in op.regions:
            for block in region.blocks:
                stack.extend(block.operations)
    return count


def _analysed(compiled: Any) -> tuple[int, float, float]:
    """(memory bytes, flops, bytes accessed) of a compiled executable, from XLA's memory and
    cost analyses."""
    memory = compiled.memory_analysis()
    nbytes = 0
    if memory is not None:
        nbytes = int(
            memory.temp_size_in_bytes + memory.argument_size_in_bytes + memory.output_size_in_bytes
        )
    costs = compiled.cost_analysis()
    if isinstance(costs, list):
        costs = costs[0] if costs else {}
    costs = costs or {}
    return nbytes, float(costs.get("flops", 0.0)), float(costs.get("bytes accessed", 0.0))


def build(recipe: Recipe, max_ops: int, kfn: KernelFn | None = None) -> Program:
    """The recipe's program lowered, counted (OverLimit past `max_ops`; 0: no limit),
    compiled and analysed. `kfn`: the recipe's network where the caller has it."""
    kfn = kfn or kernel_fn(recipe)
    program = lowered(recipe, kfn)
    ops = count_ops(program)
    if max_ops and ops > max_ops:
        raise OverLimit(
            "architecture",
            f"the program for these inputs has {ops} operations, over this server's limit "
            f"of {max_ops} (--max-program-ops): compile time grows faster than the program; "
            "simplify the network, or write repeated layers as repeat(layer, n), which "
            "compiles the layer once as a loop",
        )
    began = time.perf_counter()
    executable = program.compile()
    seconds = time.perf_counter() - began
    nbytes, flops, traffic = _analysed(executable)
    factor = repeat_factor(kfn.architecture.layers)
    return Program(executable, ops, nbytes, flops * factor, traffic * factor, seconds)


def _fresh_refusal(error: Exception) -> Exception:
    """A copy of a remembered refusal (a program that could not be built) without a
    traceback: a remembered one must not hold the frames (and so the inputs) of the call
    that met it."""
    if isinstance(error, FieldError):
        return error.renamed(lambda field: field)
    try:
        return type(error)(*error.args)
    except Exception:
        return RuntimeError(f"{type(error).__name__}: {error}")


class Refusals:
    """Programs that could not be built (a budget, a compile whose process died), the most
    recent `limit` remembered by key, so a call that asks again is refused at once instead
    of compiling again. Not locked: the caller's lock (or event loop) guards it."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._refused: collections.OrderedDict[Hashable, Exception] = collections.OrderedDict()

    def remember(self, key: Hashable, error: Exception) -> None:
        self._refused[key] = _fresh_refusal(error)
        while len(self._refused) > self.limit:
            self._refused.popitem(last=False)

    def recall(self, key: Hashable) -> Exception | None:
        """The refusal of `key` to raise again (a fresh copy, without the first call's
        traceback), or None."""
        found = self._refused.get(key)
        return None if found is None else _fresh_refusal(found)
