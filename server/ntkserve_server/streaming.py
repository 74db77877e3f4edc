"""One StreamKernel call: plan the tiles, receive the inputs, compute tiles on every local
device, stream them back in blocks.

The server holds the inputs and at most a few tiles per device at a time, never the whole
kernel: tiles wait in a queue of one slot per device, and gRPC's flow control holds the
sender until the client has read. A cancelled or expired call stops every device worker
before its next tile. Raises `requests.InvalidRequest`, `requests.OverLimit`,
`TileTooLarge` and `StreamIdle`; the servicer turns them into status codes.

Memory: the inputs (`stream_inputs.py`) grow as their chunks arrive, and are dropped on
every way out — an error, a cancel, a deadline — not left to a GC pass. The tiles are
counted, and made one at a time as workers take them: never listed. Compute slots
(`admit`) are held only while the server works (planning, computing), never while it
waits on the client, and waiting longer than `idle_seconds` for a client's message ends
the call (`stream_inputs.StreamIdle`).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import logging
import threading
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from concurrent.futures import Executor
from typing import Any

import numpy as np
from ntkserve import kinds, tensor
from ntkserve.v1 import kernel_service_pb2 as ks
from ntkserve_engine.kernels.compile import CheckedShapes

from ntkserve_server import requests
from ntkserve_server.compute import Compiled
from ntkserve_server.requests import InvalidRequest, StreamHeader
from ntkserve_server.stream_inputs import check_finite, header_of, receive_inputs
from ntkserve_server.tile_programs import TiledKernel, TilePrograms, TileShape
from ntkserve_server.tiles import TileGrid, blocks, padded_rows

log = logging.getLogger("ntkserve.stream")
BLOCK_BYTES = 1 << 20  # each KernelTile message: about 1 MiB, well under gRPC's 4 MiB default
Array = np.ndarray[Any, Any]
Admit = Callable[[], contextlib.AbstractAsyncContextManager[None]]


@dataclasses.dataclass
class StreamStats:
    """What one call did, for its log line (bytes: the header, the plan and tensor data)."""

    tiles_done: int = 0  # sent
    tiles_planned: int = 0
    computed: dict[str, int] = dataclasses.field(default_factory=dict)  # tiles per device
    bytes_in: int = 0
    bytes_out: int = 0


@dataclasses.dataclass(frozen=True)
class Job:
    compiled: Compiled
    header: StreamHeader
    shapes: CheckedShapes
    kernel: TiledKernel
    grid: TileGrid
    selected: tuple[tuple[int, int], ...]  # the header's tiles; () for the whole grid
    tile_bytes: int

    @property
    def count(self) -> int:
        """How many tiles this call computes."""
        return len(self.selected) if self.selected else self.grid.count()

    def tiles(self) -> Iterator[tuple[int, int]]:
        """The tiles in order, made as they are taken."""
        return iter(self.selected) if self.selected else self.grid.all_tiles()

    def plan_message(self) -> ks.StreamKernelPlan:
        kfn = self.compiled.kfn
        return ks.StreamKernelPlan(
            tile_size=self.grid.size,
            grid_rows=self.grid.rows,
            grid_cols=self.grid.cols,
            mirrored=self.grid.symmetric,
            tiles=self.count,
            kernel_shape=self.shapes.kernel,
            tile_bytes=self.tile_bytes,
            position_pairs=kfn.position_pairs and len(self.shapes.kernel) > 2,
        )

    def shape(self, i: int, j: int) -> TileShape:
        """The padded shape tile (i, j) is computed at (diagonal tiles of x2 = x1 apart)."""
        return self.kernel.shape(self.grid.size, self.grid.symmetric and i == j)


def plan(header: StreamHeader, compiled: Compiled, programs: TilePrograms, device: Any) -> Job:
    """Checks the inputs against the architecture and picks the tile size (blocking)."""
    kfn = compiled.kfn
    shapes = kfn.check_inputs(
        header.x1_shape,
        header.x2_shape,
        header.dtype,
        (header.slot_shape("pattern1"), header.slot_shape("pattern2")),
    )
    n1 = header.x1_shape[0]
    kernel = TiledKernel(
        n1=n1,
        n2=n1 if header.x2_shape is None else header.x2_shape[0],
        features=header.x1_shape[1:],
        dtype=header.dtype.name,
        get=header.get,
        symmetric=header.x2_shape is None,
        masked=header.mask_constant is not None,
        patterns=header.patterns,
    )
    size, tile_bytes = programs.choose_size(kfn, kernel, header.tile_size, device)
    grid = TileGrid(kernel.n1, kernel.n2, size, kernel.symmetric)
    problem = grid.check(header.tiles)
    if problem is not None:
        raise InvalidRequest("header.tiles", problem)
    return Job(compiled, header, shapes, kernel, grid, header.tiles, tile_bytes)


def compute_tile(
    job: Job,
    programs: TilePrograms,
    device: Any,
    inputs: dict[str, Array | None],
    i: int,
    j: int,
) -> tuple[Array, ...]:
    """Tile (i, j), cropped to the kernel's edge (blocking)."""
    g, shape = job.grid, job.shape(i, j)
    rows, cols = g.rows_of(i), g.cols_of(j)

    def tile_rows(name: str, which: slice, size: int) -> Array | None:
        x = inputs[name]
        return None if x is None else padded_rows(x, which, size)

    second = "x1" if inputs["x2"] is None else "x2"
    second_pattern = "pattern1" if inputs["x2"] is None else "pattern2"
    a = tile_rows("x1", rows, shape.rows)
    b = None if shape.diagonal else tile_rows(second, cols, shape.cols)
    p1 = tile_rows("pattern1", rows, shape.rows)
    p2 = None if shape.diagonal else tile_rows(second_pattern, cols, shape.cols)
    assert a is not None
    values = programs.run(job.compiled.kfn, shape, device, a, b, job.header.mask_constant, (p1, p2))
    return tuple(v[: rows.stop - rows.start, : cols.stop - cols.start] for v in values)


def tile_messages(
    job: Job, i: int, j: int, values: Sequence[Array], stats: StreamStats
) -> list[ks.StreamKernelResponse]:
    """Tile (i, j) as KernelTile blocks of about BLOCK_BYTES, then its tile_done. Messages are
    built in place (a nested constructor would copy each block's bytes once more)."""
    out = []
    row0, col0 = i * job.grid.size, j * job.grid.size
    for name, v in zip(job.header.get, values, strict=True):
        for r, c, block in blocks(v, BLOCK_BYTES):
            message = ks.StreamKernelResponse()
            tile = message.tile
            tile.kind = kinds.CODES[name]
            tile.row_start = row0 + r
            tile.col_start = col0 + c
            stats.bytes_out += tensor.encode_into(tile.values, block, "values")
            out.append(message)
    out.append(ks.StreamKernelResponse(tile_done=ks.TileIndex(row=i, col=j)))
    return out


async def computed_tiles(
    job: Job,
    programs: TilePrograms,
    executor: Executor,
    devices: Sequence[Any],
    inputs: dict[str, Array | None],
    expired: Callable[[], bool],
    stats: StreamStats,
) -> AsyncIterator[tuple[int, int, tuple[Array, ...]]]:
    """Tiles as they finish, one worker per device pulling from one shared, lazy sequence of
    tiles (the workers are tasks of one event loop: `next` needs no lock). Leaving early
    (cancellation, an error) stops every worker before its next tile."""
    loop = asyncio.get_running_loop()
    pending = job.tiles()
    done: asyncio.Queue[tuple[int, int, tuple[Array, ...]] | BaseException] = asyncio.Queue(
        maxsize=len(devices)
    )
    stop = threading.Event()

    async def worker(device: Any) -> None:
        try:
            while not stop.is_set() and not expired():
                tile = next(pending, None)
                if tile is None:
                    return
                run = functools.partial(compute_tile, job, programs, device, inputs, *tile)
                values = await loop.run_in_executor(executor, run)
                name = f"{device.platform}:{device.id}"
                stats.computed[name] = stats.computed.get(name, 0) + 1
                await done.put((*tile, values))
        except Exception as e:  # handed to the consumer, which raises it
            await done.put(e)

    workers = [asyncio.create_task(worker(d)) for d in devices]
    try:
        for _ in range(job.count):
            if expired():
                raise asyncio.CancelledError("deadline passed")
            item = await done.get()
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        for w in workers:
            w.cancel()


@dataclasses.dataclass(frozen=True)
class StreamServer:
    """What every StreamKernel call of a server shares: where its work runs, and its limits."""

    programs: TilePrograms
    executor: Executor
    devices: Sequence[Any]
    max_input_bytes: int
    idle_seconds: float


async def stream_kernel(
    messages: AsyncIterator[ks.StreamKernelRequest],
    compiled_for: Callable[[str], Compiled],
    server: StreamServer,
    admit: Admit,
    expired: Callable[[], bool],
    stats: StreamStats,
) -> AsyncIterator[ks.StreamKernelResponse]:
    """The whole call: header, plan, inputs, tiles. A compute slot (`admit`) is held while
    planning (compiling) and again while computing, never while waiting on the client."""
    loop = asyncio.get_running_loop()

    async def blocking(fn: Callable[..., Any], *args: Any) -> Any:
        return await loop.run_in_executor(server.executor, functools.partial(fn, *args))

    first = await header_of(messages, server.idle_seconds, "StreamKernelHeader")
    stats.bytes_in += first.ByteSize()
    header = requests.stream_header(first.header, server.max_input_bytes)
    async with admit():
        compiled = await blocking(compiled_for, header.architecture_id)
        job: Job = await blocking(plan, header, compiled, server.programs, server.devices[0])
    stats.tiles_planned = job.count
    plan_message = ks.StreamKernelResponse(plan=job.plan_message())
    stats.bytes_out += plan_message.ByteSize()
    yield plan_message
    if header.plan_only:
        return
    inputs = await receive_inputs(header, messages, stats, server.idle_seconds)
    try:
        async with admit():
            await blocking(check_finite, inputs, header.mask_constant)
            async for i, j, values in computed_tiles(
                job, server.programs, server.executor, server.devices, inputs, expired, stats
            ):
                for message in await blocking(tile_messages, job, i, j, values, stats):
                    yield message
                stats.tiles_done += 1
    finally:
        inputs.clear()  # the arrays go now, whatever still holds this frame
