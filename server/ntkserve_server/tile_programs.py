"""Compiled tile programs, and the tile size that fits a device-memory budget.

A tile program computes one (size x size) tile of a kernel on one device. Programs are
compiled ahead of time per (topology, padded tile shape, feature shape, dtype, get,
diagonal-or-not, device) and kept in a bounded LRU, so a sweep over hyper-parameters or
over N compiles nothing new.

Memory: a tile's working set grows with rows x cols x (positions kept per pair); pooling
networks keep the covariance of every pair of positions, (H*W)^2 per pair (Novak et al.
2019, "Bayesian deep convolutional networks with many channels are Gaussian processes",
sec. 3), so a 32x32 image pair alone needs megabytes. Before compiling we trace the
program at a candidate size and take `WORKING_SET_FACTOR` times its largest intermediate
array as the estimate (XLA keeps a few such arrays alive at once; measured 3.6x for a
pooling CNN and 6x for a ReLU MLP on XLA-CPU), then check XLA's own memory analysis of
the compiled program and halve the tile while it exceeds the budget.

Programs are built by `build` (a `program_recipes.Recipe` of kind "tile" in, a compiled
`Program` out): on a server, compiled and run in an engine process
(`compile_workers.CompileWorkers.build`, `engine_processes.RemoteExecutable`), so a
compile that dies or runs too long, or a tile computation that dies, costs its stream
alone, and the op-count limit (--max-program-ops) holds for streams as for unary calls; by
default, in this process.
"""

from __future__ import annotations

import collections
import dataclasses
import math
import threading
from collections.abc import Callable
from typing import Any

import jax
import numpy as np
from ntkserve_engine.kernels import KernelFn

from ntkserve_server.compute import mask_scalar
from ntkserve_server.program_recipes import Program, Recipe, Refusals, build, recipe, spec_of
from ntkserve_server.requests import OverLimit

WORKING_SET_FACTOR = 6
Array = np.ndarray[Any, Any]


class TileTooLarge(Exception):
    """No tile size fits the memory budget (or the one asked for does not)."""


@dataclasses.dataclass(frozen=True)
class TileShape:
    rows: int
    cols: int
    features: tuple[int, ...]
    dtype: str
    get: tuple[str, ...]
    diagonal: bool  # x2 = x1 within the tile: computed as a symmetric kernel
    masked: bool = False  # the inputs carry a mask constant (an input of the program)
    patterns: bool = False  # Aggregate patterns come with the rows (inputs of the program)


@dataclasses.dataclass(frozen=True)
class TiledKernel:
    """What a streamed kernel is, as far as tiling goes."""

    n1: int
    n2: int
    features: tuple[int, ...]
    dtype: str
    get: tuple[str, ...]
    symmetric: bool  # x2 = x1
    masked: bool = False
    patterns: bool = False

    def shape(self, size: int, diagonal: bool) -> TileShape:
        """The padded shape of a tile of this side (a diagonal one: x2 = x1 within it)."""
        return TileShape(
            min(size, self.n1),
            min(size, self.n2),
            self.features,
            self.dtype,
            self.get,
            diagonal,
            self.masked,
            self.patterns,
        )


def _outvar_bytes(jaxpr: Any) -> int:
    """The largest array any equation of `jaxpr` (or of a jaxpr nested in it) produces."""
    largest = 0
    for eqn in jaxpr.eqns:
        for var in eqn.outvars:
            aval = var.aval
            if hasattr(aval, "shape"):
                largest = max(largest, math.prod(int(d) for d in aval.shape) * aval.dtype.itemsize)
        for sub in jax.core.jaxprs_in_params(eqn.params):
            largest = max(largest, _outvar_bytes(sub))
    return largest


def _placeholders(shape: TileShape) -> tuple[Any, Any, Any, tuple[Any, Any]]:
    """Abstract (x1, x2, mask constant, (pattern1, pattern2)) of a tile program."""
    dtype = np.dtype(shape.dtype)

    def rows(n: int, features: tuple[int, ...]) -> Any:
        return jax.ShapeDtypeStruct((n, *features), dtype)  # type: ignore[no-untyped-call]

    spatial = shape.features[:-1]
    x1 = rows(shape.rows, shape.features)
    x2 = None if shape.diagonal else rows(shape.cols, shape.features)
    mask = jax.ShapeDtypeStruct((), dtype) if shape.masked else None  # type: ignore[no-untyped-call]
    p1 = rows(shape.rows, spatial * 2) if shape.patterns else None
    p2 = rows(shape.cols, spatial * 2) if shape.patterns and not shape.diagonal else None
    return x1, x2, mask, (p1, p2)


def _io_bytes(shape: TileShape, kernel_entries_per_pair: int) -> int:
    item = np.dtype(shape.dtype).itemsize
    features = math.prod(shape.features)
    inputs = (shape.rows + (0 if shape.diagonal else shape.cols)) * features * item
    return inputs + shape.rows * shape.cols * kernel_entries_per_pair * len(shape.get) * item


def estimate_bytes(kfn: KernelFn, shape: TileShape) -> int:
    """The estimated device memory one tile of this shape needs (tracing only, no compile)."""
    x1, x2, mask, patterns = _placeholders(shape)
    closed = jax.make_jaxpr(kfn.apply, static_argnums=(3,))(
        kfn.params, x1, x2, shape.get, mask, *patterns
    )
    per_pair = math.prod(kfn.kernel_shape((1, *shape.features), None)[2:])
    return WORKING_SET_FACTOR * _outvar_bytes(closed.jaxpr) + _io_bytes(shape, per_pair)


def build_here(made: Recipe, kfn: KernelFn) -> Program:
    """A tile program built in this process, with no op-count limit."""
    return build(made, 0, kfn)


class TilePrograms:
    """Compiled tile programs (bounded LRU) and tile-size choice for a memory budget."""

    def __init__(
        self,
        budget_bytes: int,
        max_tile: int = 2048,
        max_programs: int = 64,
        build: Callable[[Recipe, KernelFn], Program] = build_here,
    ) -> None:
        self.budget_bytes = budget_bytes
        self._build = build
        self.max_tile = max_tile
        self.compilations = 0  # programs compiled (cache misses)
        self.hits = 0  # programs found compiled
        self.tiles_computed: collections.Counter[int] = collections.Counter()  # by device id
        self._max_programs = max_programs
        self._executables: collections.OrderedDict[tuple[Any, ...], tuple[Any, int | None]] = (
            collections.OrderedDict()
        )
        self._sizes: dict[tuple[Any, ...], tuple[int, int]] = {}
        # Programs that could not be built (a compile's engine process died, the ops limit),
        # and tile-size choices refused (no size fits, or its program could not be built):
        # refused at once when asked again, as unary programs are; the most recent, bounded.
        self._refused = Refusals(4 * max_programs)
        self._lock = threading.Lock()

    # -- tile size -----------------------------------------------------------------------

    def choose_size(
        self, kfn: KernelFn, kernel: TiledKernel, requested: int = 0, device: Any = None
    ) -> tuple[int, int]:
        """(tile size, bytes per tile): `requested` if it fits, else (0) the largest power of
        two up to `max_tile` that fits. The estimate picks the size; with a `device`, the
        program is then compiled there and XLA's figure has the last word (the tile halves
        while it is over). Raises TileTooLarge."""
        key = (kfn.topology_id, kernel, requested, device is None)
        with self._lock:
            if key in self._sizes:
                return self._sizes[key]
            refused = self._refused.recall(key)  # answered before tracing the network again
            if refused is not None:
                raise refused
        try:
            found = self._chosen(kfn, kernel, requested, device)
        except (OverLimit, TileTooLarge) as refusal:
            with self._lock:
                self._refused.remember(key, refusal)
            raise
        with self._lock:
            self._sizes[key] = found
        return found

    def _chosen(
        self, kfn: KernelFn, kernel: TiledKernel, requested: int, device: Any
    ) -> tuple[int, int]:
        def need(size: int) -> int:
            return estimate_bytes(kfn, kernel.shape(size, kernel.symmetric))

        if requested:
            needed = need(requested)
            if needed > self.budget_bytes:
                fits = self._largest_fitting(need, min(requested, self.max_tile))
                hint = f"tile_size {fits} would fit" if fits else "no tile size fits"
                raise TileTooLarge(
                    f"a {requested} x {requested} tile of this network needs about "
                    f"{needed / 2**20:.0f} MiB of device memory, over the server's budget of "
                    f"{self.budget_bytes / 2**20:.0f} MiB; {hint}"
                )
            found = (requested, needed)
        else:
            largest = max(kernel.n1, kernel.n2)
            size = self._largest_fitting(need, min(self.max_tile, _ceil_pow2(largest)))
            if size == 0:
                per_pair = math.prod(kfn.kernel_shape((1, *kernel.features), None)[2:])
                raise TileTooLarge(
                    f"even one pair of inputs of this network needs about "
                    f"{need(1) / 2**20:.0f} MiB of device memory (it keeps {per_pair} entries "
                    f"per pair), over the server's budget of {self.budget_bytes / 2**20:.0f} MiB"
                )
            size = _least_work(kernel, size)
            found = (min(size, largest), need(size))
        if device is not None:
            found = self._confirmed(kfn, kernel, found, device, shrink=not requested)
        return found

    def _confirmed(
        self,
        kfn: KernelFn,
        kernel: TiledKernel,
        found: tuple[int, int],
        device: Any,
        shrink: bool,
    ) -> tuple[int, int]:
        size, estimate = found
        while True:
            single = size >= max(kernel.n1, kernel.n2)
            actual = self.compiled_bytes(
                kfn, kernel.shape(size, kernel.symmetric and single), device
            )
            if actual is None or actual <= self.budget_bytes:
                return size, estimate if actual is None else actual
            if size == 1 or not shrink:
                raise TileTooLarge(
                    f"a {size} x {size} tile of this network needs {actual / 2**20:.0f} MiB "
                    f"of device memory (XLA's figure), over the server's budget of "
                    f"{self.budget_bytes / 2**20:.0f} MiB"
                )
            size = _ceil_pow2(size) // 2

    def _largest_fitting(self, need: Callable[[int], int], top: int) -> int:
        """The largest power of two <= top with need(size) <= budget (0 if none), by bisection
        over the exponents (need grows with size)."""
        lo, hi = -1, max(0, top.bit_length() - 1)
        if need(1 << hi) <= self.budget_bytes:
            return 1 << hi
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if need(1 << mid) <= self.budget_bytes:
                lo = mid
            else:
                hi = mid
        return 0 if lo < 0 else 1 << lo

    # -- programs ------------------------------------------------------------------------

    def program(self, kfn: KernelFn, shape: TileShape, device: Any) -> Any:
        """The compiled program for this tile shape on `device` (compiled once, LRU)."""
        key = (kfn.topology_id, shape, device.id)
        with self._lock:
            found = self._executables.get(key)
            if found is not None:
                self.hits += 1
                self._executables.move_to_end(key)
                return found[0]
            refused = self._refused.recall(key)
            if refused is not None:
                raise refused
        x1, x2, mask, (p1, p2) = _placeholders(shape)
        specs = {"x1": spec_of(x1), "x2": spec_of(x2), "mask_constant": spec_of(mask)}
        patterns = (spec_of(p1), spec_of(p2))
        made = recipe("tile", kfn, shape.get, patterns=patterns, device=device.id, **specs)
        try:
            built = self._build(made, kfn)
        except OverLimit as refusal:
            with self._lock:
                self._refused.remember(key, refusal)
            raise
        program = built.executable
        with self._lock:
            self.compilations += 1
            # 0: the backend has no memory analysis (a real program has inputs and outputs)
            self._executables[key] = (program, built.memory_bytes or None)
            while len(self._executables) > self._max_programs:
                self._executables.popitem(last=False)
        return program

    def compiled_bytes(self, kfn: KernelFn, shape: TileShape, device: Any) -> int | None:
        """XLA's own figure for the program's memory (None where the backend has none)."""
        self.program(kfn, shape, device)
        with self._lock:
            found = self._executables.get((kfn.topology_id, shape, device.id))
        return None if found is None else found[1]

    def run(
        self,
        kfn: KernelFn,
        shape: TileShape,
        device: Any,
        x1: Array,
        x2: Array | None,
        mask_constant: float | None = None,
        patterns: tuple[Array | None, Array | None] = (None, None),
    ) -> tuple[Array, ...]:
        """One tile's kernels as numpy arrays (blocks until computed)."""
        program = self.program(kfn, shape, device)
        mask = mask_scalar(mask_constant, x1)
        out = kfn.to_host(program(kfn.params, x1, x2, mask, patterns), x2 is None)
        with self._lock:
            self.tiles_computed[device.id] += 1
        return out


# A tile's fixed cost (dispatch, messages, the client's bookkeeping) in kernel entries: about
# a millisecond of a ReLU network's tile on a 2-core CPU.
TILE_OVERHEAD_ENTRIES = 1 << 16


def _least_work(kernel: TiledKernel, largest: int) -> int:
    """The power-of-two side up to `largest` (and down to largest / 8) whose padded tiles
    cost least: N = 3000 in 2048-tiles computes 12.6M entries for 4.5M (upper triangle),
    in 1024-tiles 6.3M."""
    best, best_cost = largest, -1
    size = largest
    while size >= max(1, largest >> 3):
        rows, cols = -(-kernel.n1 // size), -(-kernel.n2 // size)
        tiles = rows * (rows + 1) // 2 if kernel.symmetric else rows * cols
        shape = kernel.shape(size, False)
        cost = tiles * (shape.rows * shape.cols + TILE_OVERHEAD_ENTRIES)
        if best_cost < 0 or cost < best_cost:
            best, best_cost = size, cost
        size >>= 1
    return best


def _ceil_pow2(n: int) -> int:
    return 1 << max(0, (n - 1).bit_length())
