"""Ahead-of-time programs of unary calls, each admitted by its cost before it runs.

Every program a unary call runs (ComputeKernel's forward, ComputeValueAndGrad's gradient,
the dynamic batcher's merged forward) is made here, from its recipe
(`program_recipes.build`): lowered, its operations counted, compiled (on a server in an
engine process, `compile_workers`, which also runs it, `engine_processes`: a compile or a
computation that dies takes only that process down), and its memory (XLA's memory
analysis: temp + arguments + outputs) and run time (estimated from XLA's cost analysis:
FLOPs and bytes accessed at the device's rates) read, each checked against a budget
(`Budgets`) before the program runs; past one the call gets `OverLimit`
(RESOURCE_EXHAUSTED) with the numbers and what to do instead. The executable that was
analysed is the one that runs: nothing compiles twice, and its results are bit for bit the
jitted function's.

Lowering itself is O(layers) in Python (measured on 2 busy cores: 1.7 s for 201 layer
messages, 5.8 s for 401; 10,000 would take minutes), so the layer messages of a network are
counted first, from its architecture, and a network past `max_program_layers` is refused
without being lowered.

Compiles are driven by their own executor (not the compute workers, so calls whose programs are
compiled go on during a compile), at most one per tenant at a time (one tenant's queue of
expensive compiles does not hold another tenant's first call behind all of them), and once
per key however many calls want it. Refusals and failed compiles are remembered per key, so
a call that was refused is refused again at once instead of compiling again.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
from collections.abc import Hashable
from concurrent.futures import Executor
from typing import Any

import numpy as np
from ntkserve_engine.kernels import KernelFn
from ntkserve_engine.kernels.canonical import every_layer

from ntkserve_server.compile_workers import CompileWorkers
from ntkserve_server.compute import CheckedInputs, Compiled, mask_scalar
from ntkserve_server.program_recipes import (
    Program,
    Recipe,
    Refusals,
    build,
    recipe,
    spec_of,
)
from ntkserve_server.requests import OverLimit

Array = np.ndarray[Any, Any]
Key = tuple[Hashable, ...]
MiB = 1 << 20


@dataclasses.dataclass(frozen=True)
class DeviceRates:
    """How fast a device runs kernel programs, for estimating a call's time before it runs:
    its arithmetic at `flops_per_second` plus its memory traffic at `bytes_per_second`
    (XLA's cost analysis, loops times their repeats; `Program`). On ten networks here
    (float32 and float64; `python -m benchmarks.call_cost` prints the ratios) the measured
    time was 0.1-2.7x this estimate (0.1: a repeat, counted as its whole program times its
    repeats), against 0.3-10.9x for FLOPs alone, which missed the NTKs of pooling networks:
    they move far more bytes than they compute."""

    flops_per_second: float
    bytes_per_second: float

    def seconds(self, program: Program) -> float:
        return program.flops / self.flops_per_second + (
            program.bytes_accessed / self.bytes_per_second
        )


# Fitted on the 2-core development machine (idle; XLA-CPU): the kernels ran at up to
# ~60 GFLOP/s where compute-bound and ~15 GB/s where memory-bound. A host with more cores
# runs faster than this estimate says: set --device-flops-per-second and
# --device-bytes-per-second to its own rates (`python -m benchmarks.call_cost` prints how
# the estimate compares with measured times on the host it runs on).
CPU_RATES = DeviceRates(flops_per_second=60e9, bytes_per_second=15e9)
# Not measured (no GPU here): an order of magnitude below a current data-centre GPU's
# datasheet (fp32 ~6e13 FLOP/s, HBM ~3e12 B/s), so the estimate errs long until the
# operator sets the device's own rates.
GPU_RATES = DeviceRates(flops_per_second=1e13, bytes_per_second=3e11)


@dataclasses.dataclass(frozen=True)
class Budgets:
    """What one unary program may cost (0: no limit). See `ServerConfig` for the defaults."""

    max_program_layers: int = 0
    max_program_ops: int = 0
    max_call_memory_bytes: int = 0
    max_call_seconds: float = 0.0  # as `rates` estimates it
    rates: DeviceRates = CPU_RATES


def layer_messages(kfn: KernelFn) -> int:
    """The Layer messages of the network (a repeat's layer once: it is a loop), which is what
    tracing and lowering walk: their time grows with it."""
    return sum(1 for _ in every_layer(kfn.architecture.layers))


def _retrieved(task: asyncio.Task[Program]) -> None:
    """Reads a compile's outcome, so that one nobody waited for is not logged as lost."""
    if not task.cancelled():
        task.exception()


def _input_specs(inputs: CheckedInputs) -> dict[str, Any]:
    """The specs of a call's inputs, as a `Recipe` takes them."""
    return {
        "x1": spec_of(inputs.x1),
        "x2": spec_of(inputs.x2),
        "mask_constant": spec_of(mask_scalar(inputs.mask_constant, inputs.x1)),
        "patterns": (spec_of(inputs.patterns[0]), spec_of(inputs.patterns[1])),
    }


def _forward_key(inputs: CheckedInputs) -> Key:
    x1, x2, (p1, p2) = inputs.x1, inputs.x2, inputs.patterns
    return (
        "forward",
        inputs.compiled.kfn.topology_id,
        x1.shape,
        x1.dtype.str,
        None if x2 is None else (x2.shape, x2.dtype.str),
        inputs.get,
        inputs.mask_constant is not None,
        None if p1 is None else (p1.shape, p1.dtype.str),
        None if p2 is None else (p2.shape, p2.dtype.str),
    )


class UnaryPrograms:
    """Compiled, analysed unary programs (bounded LRU) and the refusals, per key."""

    def __init__(
        self,
        budgets: Budgets,
        compile_executor: Executor,
        *,
        workers: CompileWorkers | None = None,
        max_programs: int = 256,
        max_refusals: int = 1024,
    ) -> None:
        self.budgets = budgets
        self.max_programs = max_programs
        self.compilations = 0  # programs compiled
        self.refusals = 0  # programs refused (a budget, a failed compile) + refusals recalled
        self._executor = compile_executor
        # None: programs are built and run in this process; else built and run in its
        # engine processes.
        self._workers = workers
        self._programs: collections.OrderedDict[Key, Program] = collections.OrderedDict()
        self._refused = Refusals(max_refusals)
        self._pending: dict[Key, asyncio.Task[Program]] = {}
        self._lanes: dict[str, asyncio.Lock] = collections.defaultdict(asyncio.Lock)

    @property
    def processes_lost(self) -> int:
        """Engine processes that died, or were stopped, during a compile or a computation."""
        return 0 if self._workers is None else self._workers.engines.lost

    def check_layers(self, kfn: KernelFn) -> None:
        """OverLimit for a network too long to lower (O(layers), no tracing)."""
        limit = self.budgets.max_program_layers
        layers = layer_messages(kfn) if limit else 0
        if layers > limit:
            raise OverLimit(
                "architecture",
                f"the network has {layers} layer messages, over this server's limit of {limit} "
                "per compiled program (--max-program-layers): compile time grows faster than "
                "the layers; simplify the network, or write repeated layers as "
                "repeat(layer, n), which compiles the layer once as a loop",
            )

    async def forward(self, inputs: CheckedInputs, tenant: str) -> Program:
        """The forward program of these inputs' shapes (ComputeKernel's)."""
        kfn = inputs.compiled.kfn
        made = recipe("forward", kfn, inputs.get, **_input_specs(inputs))
        return await self._program(_forward_key(inputs), tenant, kfn, made)

    async def grads(self, inputs: CheckedInputs, tenant: str, with_params: bool) -> Program:
        """ComputeValueAndGrad's gradient program; its cotangents have the kernels' shapes."""
        kfn = inputs.compiled.kfn
        key = ("grads", with_params, *_forward_key(inputs)[1:])
        made = recipe(
            "grads",
            kfn,
            inputs.get,
            cotangent=(tuple(inputs.kernel_shape), inputs.x1.dtype.str),
            with_params=with_params,
            **_input_specs(inputs),
        )
        return await self._program(key, tenant, kfn, made)

    async def batched(
        self, compiled: Compiled, get: tuple[str, ...], x1: Any, x2: Any, tenant: str
    ) -> Program:
        """The batcher's merged program (`compute.batched_fn`) for stacked inputs of these
        shapes (`x1`, `x2`: arrays or `jax.ShapeDtypeStruct`s)."""
        key: Key = (
            "batched",
            compiled.kfn.topology_id,
            x1.shape,
            x1.dtype.str,
            None if x2 is None else (x2.shape, x2.dtype.str),
            get,
        )
        made = recipe("batched", compiled.kfn, get, x1=spec_of(x1), x2=spec_of(x2))
        return await self._program(key, tenant, compiled.kfn, made)

    async def _program(self, key: Key, tenant: str, kfn: KernelFn, made: Recipe) -> Program:
        """The program of `key`, compiled once (event loop); its refusal, remembered."""
        found = self._programs.get(key)
        if found is not None:
            self._programs.move_to_end(key)
            return found
        refused = self._refused.recall(key)
        if refused is not None:
            self.refusals += 1
            raise refused
        self.check_layers(kfn)
        task = self._pending.get(key)
        if task is None:
            task = asyncio.get_running_loop().create_task(self._compile(key, tenant, kfn, made))
            task.add_done_callback(_retrieved)  # its callers may all have left
            self._pending[key] = task
        # Shielded: a caller that leaves does not cancel a compile others may wait for.
        return await asyncio.shield(task)

    async def _compile(self, key: Key, tenant: str, kfn: KernelFn, made: Recipe) -> Program:
        loop = asyncio.get_running_loop()
        try:
            async with self._lanes[tenant]:  # one compile per tenant at a time
                program = await loop.run_in_executor(self._executor, self._made, kfn, made)
        except Exception as e:
            self.refusals += 1
            self._refused.remember(key, e)
            raise
        finally:
            del self._pending[key]
        self._programs[key] = program
        while len(self._programs) > self.max_programs:
            self._programs.popitem(last=False)
        return program

    def _made(self, kfn: KernelFn, made: Recipe) -> Program:
        """Built (lowered, counted, compiled, analysed: in an engine process when the
        server has them) and checked against the budgets (compile executor thread)."""
        max_ops = self.budgets.max_program_ops
        if self._workers is None:
            built: Program = build(made, max_ops, kfn)
        else:
            engines = self._workers.engines
            built = self._workers.build(made, max_ops, engines.unary_executable)
        self.compilations += 1
        self._check_memory(built.memory_bytes)
        self._check_seconds(built)
        return built

    def _check_memory(self, nbytes: int) -> None:
        limit = self.budgets.max_call_memory_bytes
        if limit and nbytes > limit:
            raise OverLimit(
                "",
                f"this call needs {nbytes / MiB:.0f} MiB of device memory (XLA's estimate: "
                f"temporaries, inputs and outputs), over this server's {limit / MiB:.0f} MiB "
                "per call (--max-call-memory-mb); stream the kernel (StreamKernel, or "
                "Client.kernel(..., tile=...)), or submit smaller batches",
            )

    def _check_seconds(self, program: Program) -> None:
        limit, rates = self.budgets.max_call_seconds, self.budgets.rates
        seconds = rates.seconds(program)
        if limit and seconds > limit:
            raise OverLimit(
                "",
                f"this call would run about {seconds:.3g} s on this device ({program.flops:.3g} "
                f"FLOPs at {rates.flops_per_second:.3g}/s plus {program.bytes_accessed:.3g} "
                f"bytes of memory traffic at {rates.bytes_per_second:.3g}/s, by XLA's cost "
                f"analysis), over this server's {limit:g} s per call (--max-call-seconds): "
                "stream the kernel (StreamKernel, or Client.kernel(..., tile=...)), or submit "
                "smaller batches",
            )

    def fits(self, single: Program, n: int) -> bool:
        """Whether `n` calls of `single`'s program merged into one stay in the memory budget
        (the batcher's merged program needs about n times one call's memory)."""
        limit = self.budgets.max_call_memory_bytes
        return not limit or n * single.memory_bytes <= limit
