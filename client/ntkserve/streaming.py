"""One streamed kernel (StreamKernel) on one endpoint, and the pieces every stream shares.

The request is a StreamKernelHeader followed by x1's and then x2's raw bytes (little-endian,
C order) in InputChunks of `CHUNK_BYTES`, cut lazily from a memoryview of the inputs so
that no second copy of a large input is made. The answer is a StreamKernelPlan, then
KernelTile blocks, each tile closed by a `tile_done`; the blocks go straight into an
`Assembler` (memory or .npy files). `replicas` runs the same calls on several endpoints.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import grpc
import numpy as np

from ntkserve import errors, kinds, tensor
from ntkserve.assembly import Assembler, check_plan
from ntkserve.endpoints import ArchLike, Endpoint
from ntkserve.progress import TileProgress
from ntkserve.v1 import kernel_service_pb2 as ks

Array = np.ndarray[Any, Any]
Tile = tuple[int, int]
# Called after every finished tile with (target, row, col): progress for monitoring, and the
# tests' way to act in the middle of a job.
TileHook = Callable[[str, int, int], None]

# Bytes of input per InputChunk: well under gRPC's default 4 MiB message limit.
CHUNK_BYTES = 1024 * 1024
# `Client.kernel` streams (instead of one ComputeKernel call) when the inputs or the
# kernels it returns (N1 * N2 * kinds * itemsize, positions not counted) exceed this, or
# when `tile` or `out` is given.
STREAM_THRESHOLD_BYTES = 32 * 1024 * 1024


@dataclasses.dataclass(frozen=True)
class StreamJob:
    """The inputs and options of one streamed kernel, ready for the wire."""

    x1: Array  # C-contiguous, little-endian float32/float64
    x2: Array | None
    names: tuple[str, ...]
    tile_size: int  # 0: the server chooses
    mask_constant: float | None = None
    pattern1: Array | None = None  # Aggregate patterns, (N, *spatial, *spatial)
    pattern2: Array | None = None

    @property
    def dtype(self) -> np.dtype[Any]:
        return np.dtype(self.x1.dtype)

    @property
    def mirrored(self) -> bool:
        return self.x2 is None

    @property
    def n1(self) -> int:
        return int(self.x1.shape[0])

    @property
    def n2(self) -> int:
        return self.n1 if self.x2 is None else int(self.x2.shape[0])

    def header(
        self,
        architecture_id: str,
        tile_size: int | None = None,
        tiles: Sequence[Tile] = (),
        plan_only: bool = False,
    ) -> ks.StreamKernelHeader:
        header = ks.StreamKernelHeader(
            architecture_id=architecture_id,
            get=kinds.to_codes(self.names),
            dtype=tensor.dtype_code(self.dtype),  # type: ignore[arg-type]
            x1_shape=list(self.x1.shape),
            x2_shape=[] if self.x2 is None else list(self.x2.shape),
            tile_size=self.tile_size if tile_size is None else tile_size,
            tiles=[ks.TileIndex(row=r, col=c) for r, c in tiles],
            plan_only=plan_only,
        )
        if self.mask_constant is not None:
            header.mask_constant = self.mask_constant
        header.patterns = self.pattern1 is not None
        return header


def _wire(array: Any, field: str) -> Array:
    arr = np.asarray(array)
    try:
        tensor.dtype_code(arr.dtype)
    except TypeError as e:
        raise tensor.TensorError(field, str(e)) from None
    # float32 or float64, little-endian, C order: no copy when it already is.
    return np.ascontiguousarray(arr, dtype=np.dtype(f"<f{arr.dtype.itemsize}"))


def prepare(
    x1: Any,
    x2: Any,
    names: Sequence[str],
    tile: int | None,
    mask_constant: float | None = None,
    pattern: tuple[Any, Any] | None = None,
) -> StreamJob:
    """Checks what the client can check and lays the inputs out for the wire."""
    if tile is not None and (isinstance(tile, bool) or not isinstance(tile, int) or tile < 1):
        raise ValueError(f"tile: expected a positive number of rows and columns, got {tile!r}")
    a1 = _wire(x1, "x1")
    a2 = None if x2 is None else _wire(x2, "x2")
    if a2 is not None and a2.dtype != a1.dtype:
        raise tensor.TensorError("x2.dtype", f"{a2.dtype} differs from x1's {a1.dtype}")
    mask = None if mask_constant is None else float(mask_constant)
    p1, p2 = (None, None) if pattern is None else pattern
    patterns = [
        None if p is None else _wire(np.asarray(p, a1.dtype), f"pattern{i + 1}")
        for i, p in enumerate((p1, p2))
    ]
    return StreamJob(a1, a2, tuple(names), tile or 0, mask, *patterns)


def input_chunks(slot: int, array: Array) -> Iterator[ks.InputChunk]:
    """The array's bytes (C order) as InputChunks of CHUNK_BYTES, made one at a time: the
    chunks of a StreamKernel call and of a model's Fit."""
    data = np.ascontiguousarray(array).reshape(-1).data.cast("B")
    for offset in range(0, len(data), CHUNK_BYTES):
        piece = bytes(data[offset : offset + CHUNK_BYTES])
        yield ks.InputChunk(slot=slot, offset=offset, data=piece)  # type: ignore[arg-type]


def chunks(slot: int, array: Array) -> Iterator[ks.StreamKernelRequest]:
    for chunk in input_chunks(slot, array):
        yield ks.StreamKernelRequest(chunk=chunk)


def requests(job: StreamJob, header: ks.StreamKernelHeader) -> Iterator[ks.StreamKernelRequest]:
    yield ks.StreamKernelRequest(header=header)
    if header.plan_only:
        return
    yield from chunks(ks.INPUT_SLOT_X1, job.x1)
    if job.x2 is not None:
        yield from chunks(ks.INPUT_SLOT_X2, job.x2)
    if job.pattern1 is not None:
        yield from chunks(ks.INPUT_SLOT_PATTERN1, job.pattern1)
    if job.pattern2 is not None:
        yield from chunks(ks.INPUT_SLOT_PATTERN2, job.pattern2)


def open_call(
    endpoint: Endpoint, job: StreamJob, header: ks.StreamKernelHeader, timeout: float | None
) -> Any:
    """Starts a StreamKernel call; the result iterates over the answers and has .cancel()."""
    return endpoint.stub.StreamKernel(
        requests(job, header), timeout=timeout, metadata=endpoint.metadata
    )


def first_plan(answers: Iterator[ks.StreamKernelResponse]) -> ks.StreamKernelPlan:
    first = next(answers, None)
    if first is None or first.WhichOneof("payload") != "plan":
        got = "nothing" if first is None else first.WhichOneof("payload")
        raise errors.InternalError(f"StreamKernel answered {got} before its plan")
    return first.plan


def receive(
    answers: Iterator[ks.StreamKernelResponse],
    assembler: Assembler,
    on_done: Callable[[Tile], None],
) -> None:
    """Places every block and reports every finished tile until the answer ends."""
    for answer in answers:
        kind = answer.WhichOneof("payload")
        if kind == "tile":
            assembler.place(answer.tile)
        elif kind == "tile_done":
            on_done((int(answer.tile_done.row), int(answer.tile_done.col)))
        else:
            raise errors.InternalError(f"StreamKernel sent a {kind} after its plan")


def plan_only(
    endpoint: Endpoint, job: StreamJob, architecture_id: str, timeout: float | None
) -> ks.StreamKernelPlan:
    """The plan the server would follow for this job; nothing is sent or computed."""
    call = open_call(endpoint, job, job.header(architecture_id, plan_only=True), timeout)
    try:
        plan = first_plan(iter(call))
    except grpc.RpcError as e:
        raise errors.from_rpc_error(e) from e
    finally:
        call.cancel()
    check_plan(plan, job.n1, job.n2, job.mirrored)
    return plan


@dataclasses.dataclass
class LaneReport:
    """What one lane (a sequence of calls to one target) did for a job."""

    target: str
    tiles_done: int = 0
    calls: int = 0
    # The transient error that retired this lane, if one did.
    error: errors.NtkServeError | None = None


@dataclasses.dataclass
class StreamReport:
    """How a streamed job went: its tiling, and who computed what (`Client.last_stream`)."""

    tile_size: int
    tiles: int
    lanes: list[LaneReport]
    # Tiles of failed calls that were handed to other lanes.
    requeued_tiles: int = 0


def stream_one(
    endpoint: Endpoint,
    arch: ArchLike,
    job: StreamJob,
    out: Sequence[Path] | None,
    progress: bool | None,
    on_tile_done: TileHook | None = None,
) -> tuple[list[Array], StreamReport]:
    """The whole job as one StreamKernel call to one endpoint."""
    lane = LaneReport(endpoint.target)
    report = StreamReport(tile_size=0, tiles=0, lanes=[lane])

    def run(architecture_id: str) -> list[Array]:
        call = open_call(endpoint, job, job.header(architecture_id), endpoint.timeout)
        lane.calls += 1
        assembler: Assembler | None = None
        try:
            answers = iter(call)
            plan = first_plan(answers)
            check_plan(plan, job.n1, job.n2, job.mirrored)
            report.tile_size, report.tiles = int(plan.tile_size), int(plan.tiles)
            assembler = Assembler(plan, job.names, job.dtype, out)
            with TileProgress(report.tiles, progress) as bar:

                def done(tile: Tile) -> None:
                    lane.tiles_done += 1
                    bar.done()
                    if on_tile_done is not None:
                        on_tile_done(endpoint.target, *tile)

                receive(answers, assembler, done)
            if lane.tiles_done != report.tiles:
                raise errors.InternalError(
                    f"StreamKernel ended after {lane.tiles_done} of {report.tiles} tiles"
                )
            return assembler.result()
        except grpc.RpcError as e:
            raise errors.from_rpc_error(e) from e
        finally:
            call.cancel()  # a no-op once the call has ended; stops the server otherwise
            if assembler is not None and lane.tiles_done != report.tiles:
                assembler.close()

    return endpoint.with_id(arch, run), report
