"""Kernels of any size assembled on the server from tiles, in float64, for the models
(training kernels, test kernels): computed like a StreamKernel call's tiles (the same plan,
tile programs and engine processes; tiles on the diagonal and above for a symmetric kernel,
mirrored here), but written into arrays the server keeps instead of messages.

`into` says where each kernel goes: arrays in memory, or .npy files mapped into memory (a
model's training kernels go straight to its staging directory: the page cache holds them,
not the server's heap). `diagonal_only` computes only the diagonal tiles of a symmetric
kernel and keeps their diagonals: k(x, x) for every x, what marginal variances need, at
O(N * tile) cost instead of O(N^2).
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ntkserve_server import streaming
from ntkserve_server.compute import Compiled
from ntkserve_server.requests import InvalidRequest, StreamHeader
from ntkserve_server.streaming import StreamServer

Array = np.ndarray[Any, Any]


@dataclasses.dataclass(frozen=True)
class KernelRequest:
    """Which kernels of which inputs (x2 None: the symmetric kernel of x1)."""

    architecture_id: str
    x1_shape: tuple[int, ...]
    x2_shape: tuple[int, ...] | None
    dtype: np.dtype[Any]
    get: tuple[str, ...]
    tile_size: int = 0
    diagonal_only: bool = False

    def header(self) -> StreamHeader:
        return StreamHeader(
            architecture_id=self.architecture_id,
            get=self.get,
            dtype=self.dtype,
            x1_shape=tuple(self.x1_shape),
            x2_shape=None if self.x2_shape is None else tuple(self.x2_shape),
            tile_size=self.tile_size,
            tiles=(),
            plan_only=False,
        )


def scalar_kernel(job: streaming.Job, field: str) -> None:
    """InvalidRequest unless the kernel has one value per pair of inputs (no positions)."""
    shape = job.shapes.kernel
    if len(shape) != 2:
        raise InvalidRequest(
            field,
            f"names a network whose kernel keeps positions (shape {list(shape)}); a model "
            "needs one value per pair of inputs: end the network with a readout (Flatten or "
            "GlobalAvgPool, then Dense)",
        )


def plan(
    server: StreamServer,
    compiled: Compiled,
    request: KernelRequest,
    field: str = "architecture_id",
) -> streaming.Job:
    """The tiles of the kernel (blocking: it may compile a tile program); InvalidRequest at
    `field` (the architecture's) for a kernel that keeps positions."""
    job = streaming.plan(request.header(), compiled, server.programs, server.devices[0])
    scalar_kernel(job, field)
    if not request.diagonal_only:
        return job
    diagonal = tuple((i, i) for i in range(job.grid.rows))
    return dataclasses.replace(job, selected=diagonal)


def allocate(job: streaming.Job, diagonal_only: bool, into: Path | None) -> dict[str, Array]:
    """The float64 arrays the kernels are written into: in memory, or `into/<kind>.npy`."""
    n1, n2 = job.shapes.kernel
    shape = (n1,) if diagonal_only else (n1, n2)
    out = {}
    for name in job.header.get:
        if into is None:
            out[name] = np.empty(shape, np.float64)
        else:
            out[name] = np.lib.format.open_memmap(into / f"{name}.npy", "w+", np.float64, shape)
    return out


async def assemble(
    server: StreamServer,
    job: streaming.Job,
    inputs: tuple[Array, Array | None],
    out: dict[str, Array],
    expired: Callable[[], bool],
) -> AsyncIterator[tuple[int, int]]:
    """Every tile of `job`, written into `out` (from `allocate`) as it finishes, giving
    (tiles done, tiles) after each; a symmetric kernel's tiles above the diagonal are
    mirrored below it."""
    stats = streaming.StreamStats()
    arrays: dict[str, Array | None] = {
        "x1": inputs[0],
        "x2": inputs[1],
        "pattern1": None,
        "pattern2": None,
    }
    size, done = job.grid.size, 0
    async for i, j, values in streaming.computed_tiles(
        job, server.programs, server.executor, server.devices, arrays, expired, stats
    ):
        rows = slice(i * size, i * size + values[0].shape[0])
        cols = slice(j * size, j * size + values[0].shape[1])
        for name, tile in zip(job.header.get, values, strict=True):
            _write(out[name], tile, rows, cols, job.grid.symmetric, len(job.selected) > 0)
        done += 1
        yield done, job.count


def _write(
    out: Array, tile: Array, rows: slice, cols: slice, symmetric: bool, diagonal: bool
) -> None:
    if diagonal:
        out[rows] = np.diagonal(tile)
        return
    out[rows, cols] = tile
    if symmetric and rows != cols:
        out[cols, rows] = tile.T


def close(out: dict[str, Array]) -> None:
    """Writes back and drops the arrays `allocate` mapped from files (emptying `out`), so
    their pages leave the process's memory (the page cache keeps them, reclaimable)."""
    while out:
        _, array = out.popitem()
        if isinstance(array, np.memmap):
            array.flush()
        del array


def kernel_bytes(n1: int, n2: int, kinds: Sequence[str]) -> int:
    """What kernels of this shape take in float64."""
    return 8 * n1 * n2 * len(kinds)
