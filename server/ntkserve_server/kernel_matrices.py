"""Kernels of any size assembled on the server from tiles, in float64, for the models
(training kernels, test kernels): computed like a StreamKernel call's tiles (the same plan,
tile programs and engine processes; tiles on the diagonal and above for a symmetric kernel,
mirrored here), but written into arrays the server keeps instead of messages.

`allocate` says where each kernel goes: arrays in memory, or .npy files written block by
block (a model's training kernels go straight to its staging directory: the page cache holds
them, not the server's memory). `diagonal_only` computes only the diagonal tiles of a symmetric
kernel and keeps their diagonals: k(x, x) for every x, what marginal variances need, at
O(N * tile) cost instead of O(N^2).
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import os
from collections.abc import AsyncIterator, Callable, Mapping
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


class KernelArray:
    """A kernel assembled in memory (1-D: only its diagonal is kept)."""

    def __init__(self, shape: tuple[int, ...]) -> None:
        self.array: Array = np.empty(shape, np.float64)

    def write(self, rows: slice, cols: slice, block: Array) -> None:
        if self.array.ndim == 1:  # a diagonal tile's diagonal
            self.array[rows] = np.diagonal(block)
        else:
            self.array[rows, cols] = block

    def close(self) -> None:
        pass


class KernelFile:
    """A float64 (rows, cols) .npy file written block by block with pwrite: nothing of it is
    mapped, so what is written is the page cache's (reclaimable, written back by the
    kernel), not the server's memory, however large the kernel (a training kernel at N =
    20,000 is 3.2 GB, two for an NTK model)."""

    def __init__(self, path: Path, shape: tuple[int, int]) -> None:
        self._columns = shape[1]
        header = {"descr": "<f8", "fortran_order": False, "shape": shape}
        with path.open("wb") as f:
            np.lib.format.write_array_header_1_0(f, header)
            self._offset = f.tell()
            f.truncate(self._offset + 8 * shape[0] * shape[1])
        self._fd = os.open(path, os.O_WRONLY)

    def write(self, rows: slice, cols: slice, block: Array) -> None:
        data = np.ascontiguousarray(block, np.float64)
        for i, row in enumerate(data):
            position = self._offset + 8 * ((rows.start + i) * self._columns + cols.start)
            os.pwrite(self._fd, row.data, position)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


Sink = KernelArray | KernelFile


def in_memory(job: streaming.Job, diagonal_only: bool) -> dict[str, KernelArray]:
    """Arrays for the kernels of `job` (their diagonals only, for `diagonal_only`)."""
    n1, n2 = job.shapes.kernel
    return {name: KernelArray((n1,) if diagonal_only else (n1, n2)) for name in job.header.get}


def in_files(job: streaming.Job, into: Path) -> dict[str, KernelFile]:
    """The files `into/<kind>.npy` for the kernels of `job`."""
    n1, n2 = job.shapes.kernel
    return {name: KernelFile(into / f"{name}.npy", (n1, n2)) for name in job.header.get}


async def assemble(
    server: StreamServer,
    job: streaming.Job,
    inputs: tuple[Array, Array | None],
    out: Mapping[str, Sink],
    expired: Callable[[], bool],
) -> AsyncIterator[tuple[int, int]]:
    """Every tile of `job`, written into `out` (`in_memory` or `in_files`) on the worker pool as it
    finishes, giving (tiles done, tiles) after each; a symmetric kernel's tiles above the
    diagonal are mirrored below it."""
    loop = asyncio.get_running_loop()
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
            write = functools.partial(_write, out[name], tile, rows, cols, job.grid.symmetric)
            await loop.run_in_executor(server.executor, write)
        done += 1
        yield done, job.count


def _write(out: Sink, tile: Array, rows: slice, cols: slice, symmetric: bool) -> None:
    """A tile, and for a symmetric kernel its mirror (a diagonal-only job has only tiles on
    the diagonal: nothing to mirror)."""
    out.write(rows, cols, tile)
    if symmetric and rows != cols:
        out.write(cols, rows, tile.T)


def close(out: Mapping[str, Sink]) -> None:
    for sink in out.values():
        sink.close()
