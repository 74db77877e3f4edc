"""Spreads one streamed kernel over several replicas, and survives losing some of them.

A `plan_only` call learns the tiling, and from then on every call names that tile size, so
replicas with different device memory still cut the kernel the same way. The job's tiles
(the upper triangle when the kernel is mirrored) are cut into work units, about
`UNITS_PER_LANE` per lane. A lane is a thread making one StreamKernel call at a time on one
endpoint (one per explicit target; several on a balanced resolver target), each call
computing one unit: header.tiles names its tiles, and the whole of x1 and x2 is sent.

A call that fails for a transient reason (UNAVAILABLE, a CANCELLED the client did not
cause, DEADLINE_EXCEEDED before the job's own deadline) hands the tiles it had not finished
back to the queue (finished tiles are kept), and its lane retires: at once on an explicit
target, after as many failures in a row as the target has backends on a resolver target
(round robin sends the next call elsewhere). Any other error fails the job and cancels the
other calls. When every lane has retired with work left, the job fails with
UnavailableError. Every tile is computed by the same program wherever it runs, so the
result equals a single replica's.
"""

from __future__ import annotations

import collections
import contextlib
import contextvars
import functools
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import grpc

from ntkserve import errors
from ntkserve.assembly import Assembler
from ntkserve.endpoints import ArchLike, Endpoint
from ntkserve.progress import TileProgress
from ntkserve.streaming import (
    Array,
    LaneReport,
    StreamJob,
    StreamReport,
    Tile,
    TileHook,
    first_plan,
    open_call,
    plan_only,
    receive,
)
from ntkserve.v1 import kernel_service_pb2 as ks

# Work units per lane: more than one, so that a fast lane takes over a slow one's share
# and a failure hands back little; few, so that x1 and x2 are not sent too many times.
UNITS_PER_LANE = 3
_TRANSIENT = (
    grpc.StatusCode.UNAVAILABLE,
    grpc.StatusCode.CANCELLED,
    grpc.StatusCode.DEADLINE_EXCEEDED,
)


def job_tiles(plan: ks.StreamKernelPlan) -> list[Tile]:
    """Every tile of the plan's grid, row by row; only row <= col when mirrored."""
    return [
        (i, j)
        for i in range(plan.grid_rows)
        for j in range(i if plan.mirrored else 0, plan.grid_cols)
    ]


def split(tiles: Sequence[Tile], units: int) -> list[list[Tile]]:
    """`tiles` cut into min(units, len(tiles)) runs of consecutive tiles, sizes within one."""
    n = max(1, min(len(tiles), units))
    size, extra = divmod(len(tiles), n)
    out, start = [], 0
    for k in range(n):
        end = start + size + (1 if k < extra else 0)
        out.append(list(tiles[start:end]))
        start = end
    return out


class _Deadline:
    def __init__(self, timeout: float | None) -> None:
        self.timeout = timeout
        self._at = None if timeout is None else time.monotonic() + timeout

    def passed(self) -> bool:
        return self._at is not None and time.monotonic() >= self._at

    def remaining(self) -> float | None:
        """Seconds left for a call; DeadlineExceededError once none are."""
        if self._at is None:
            return None
        left = self._at - time.monotonic()
        if left <= 0:
            raise errors.DeadlineExceededError(f"the job took longer than {self.timeout} s")
        return left


class _Units:
    """Units waiting and units out; `take` blocks while a unit out may still come back."""

    def __init__(self, units: list[list[Tile]]) -> None:
        self._waiting: collections.deque[list[Tile]] = collections.deque(units)
        self._out = 0
        self._stopped = False
        self._cond = threading.Condition()

    def take(self) -> list[Tile] | None:
        """The next unit, or None when there is nothing left to do (or the job stopped)."""
        with self._cond:
            while not self._waiting and self._out and not self._stopped:
                self._cond.wait()
            if self._stopped or not self._waiting:
                return None
            self._out += 1
            return self._waiting.popleft()

    def finish(self, rest: list[Tile]) -> None:
        """A unit is back: done, or with the tiles in `rest` still to do (for other lanes)."""
        with self._cond:
            self._out -= 1
            if rest:
                self._waiting.appendleft(rest)
            self._cond.notify_all()

    def stop(self) -> None:
        with self._cond:
            self._stopped = True
            self._cond.notify_all()


class Spread:
    """One streamed job over several endpoints (see the module doc)."""

    def __init__(
        self,
        endpoints: Sequence[Endpoint],
        arch: ArchLike,
        job: StreamJob,
        out: Sequence[Path] | None,
        progress: bool | None,
        on_tile_done: TileHook | None = None,
    ) -> None:
        self._endpoints = list(endpoints)
        self._arch = arch
        self._job = job
        self._out = out
        self._progress = progress
        self._on_tile_done = on_tile_done
        self._deadline = _Deadline(self._endpoints[0].timeout)
        self._stopped = threading.Event()
        self._lock = threading.Lock()
        self._calls: set[Any] = set()
        self._error: BaseException | None = None
        self._last_transient: errors.NtkServeError | None = None
        self.report = StreamReport(tile_size=0, tiles=0, lanes=[])

    # -- the job -----------------------------------------------------------------------------

    def run(self) -> list[Array]:
        plan, live = self._plan()
        tiles = job_tiles(plan)
        self.report.tile_size, self.report.tiles = int(plan.tile_size), len(tiles)
        lanes = [(e, LaneReport(e.target)) for e in live for _ in range(_lanes_on(e))]
        self.report.lanes.extend(report for _, report in lanes)
        self._plan_msg = plan
        self._units = _Units(split(tiles, UNITS_PER_LANE * len(lanes)))
        self._assembler = Assembler(plan, self._job.names, self._job.dtype, self._out)
        self._bar = TileProgress(len(tiles), self._progress)
        with self._bar:
            threads = [
                threading.Thread(  # in the caller's context: its request id, if any
                    target=contextvars.copy_context().run,
                    args=(self._lane, *lane),
                    name=f"ntkserve-lane-{k}",
                    daemon=True,
                )
                for k, lane in enumerate(lanes)
            ]
            for thread in threads:
                thread.start()
            try:
                for thread in threads:
                    thread.join()
            except BaseException as e:  # KeyboardInterrupt: stop every call, then leave
                self._fail(e)
                for thread in threads:
                    thread.join()
                raise
        done = sum(lane.tiles_done for lane in self.report.lanes)
        if self._error is not None or done != len(tiles):
            self._assembler.close()
            if self._error is not None:
                raise self._error
            raise errors.UnavailableError(
                f"every replica failed with {len(tiles) - done} of {len(tiles)} tiles left; "
                f"last error: {self._last_transient}"
            ) from self._last_transient
        return self._assembler.result()

    def _plan(self) -> tuple[ks.StreamKernelPlan, list[Endpoint]]:
        """The job's plan from the first endpoint that answers, and the endpoints to use:
        those that failed to answer are left out."""
        plan: ks.StreamKernelPlan | None = None
        live: list[Endpoint] = []
        for endpoint in self._endpoints:
            if plan is None:
                plan = self._plan_from(endpoint)
                if plan is None:
                    self.report.lanes.append(
                        LaneReport(endpoint.target, error=self._last_transient)
                    )
                    continue
            live.append(endpoint)
        if plan is None:
            raise errors.UnavailableError(
                f"no replica answered; last error: {self._last_transient}"
            ) from self._last_transient
        return plan, live

    def _plan_from(self, endpoint: Endpoint) -> ks.StreamKernelPlan | None:
        for _ in range(_lanes_on(endpoint)):
            try:
                timeout = self._deadline.remaining()
                call = functools.partial(plan_only, endpoint, self._job, timeout=timeout)
                return endpoint.with_id(self._arch, call, timeout)
            except errors.NtkServeError as e:
                if not self._transient(e):
                    raise
                self._last_transient = e
        return None

    # -- lanes -------------------------------------------------------------------------------

    def _lane(self, endpoint: Endpoint, report: LaneReport) -> None:
        failures = 0
        while (unit := self._units.take()) is not None:
            done: set[Tile] = set()
            try:
                call = functools.partial(self._unit, endpoint, report, unit, done)
                endpoint.with_id(self._arch, call, self._deadline.remaining())
            except BaseException as e:
                rest = [t for t in unit if t not in done]
                with self._lock:
                    self.report.requeued_tiles += len(rest)
                self._units.finish(rest)
                if self._stopped.is_set():
                    return
                if isinstance(e, errors.NtkServeError) and self._transient(e):
                    report.error = self._last_transient = e
                    failures += 1
                    if failures >= _lanes_on(endpoint):
                        return
                    continue
                self._fail(e)
                return
            failures = 0
            self._units.finish([])

    def _unit(
        self,
        endpoint: Endpoint,
        report: LaneReport,
        unit: list[Tile],
        done: set[Tile],
        architecture_id: str,
    ) -> None:
        """One call computing the tiles of `unit` not yet in `done`; adds them as they end."""
        todo = [t for t in unit if t not in done]
        header = self._job.header(architecture_id, int(self._plan_msg.tile_size), todo)
        wanted = set(todo)
        call = open_call(endpoint, self._job, header, self._deadline.remaining())
        with self._tracked(call):
            report.calls += 1
            try:
                answers = iter(call)
                plan = first_plan(answers)
                if (
                    plan.tile_size != self._plan_msg.tile_size
                    or list(plan.kernel_shape) != list(self._plan_msg.kernel_shape)
                    or plan.tiles != len(todo)
                ):
                    raise errors.InternalError(
                        f"{endpoint.target} planned tile_size {plan.tile_size}, kernel_shape "
                        f"{list(plan.kernel_shape)}, {plan.tiles} tiles; asked for "
                        f"{self._plan_msg.tile_size}, {list(self._plan_msg.kernel_shape)}, "
                        f"{len(todo)}"
                    )

                def finished(tile: Tile) -> None:
                    if tile not in wanted or tile in done:
                        raise errors.InternalError(f"{endpoint.target} finished tile {tile}")
                    done.add(tile)
                    report.tiles_done += 1
                    self._bar.done()
                    if self._on_tile_done is not None:
                        self._on_tile_done(endpoint.target, *tile)

                receive(answers, self._assembler, finished)
            except grpc.RpcError as e:
                raise errors.from_rpc_error(e) from e
        if not wanted <= done:
            raise errors.InternalError(
                f"{endpoint.target} ended the call with {len(wanted - done)} tiles not done"
            )

    # -- stopping ----------------------------------------------------------------------------

    def _transient(self, error: errors.NtkServeError) -> bool:
        if error.code == grpc.StatusCode.DEADLINE_EXCEEDED:
            return not self._deadline.passed()
        return error.code in _TRANSIENT and not self._stopped.is_set()

    @contextlib.contextmanager
    def _tracked(self, call: Any) -> Iterator[None]:
        """The call, cancelled when the job stops and in any case when it is left."""
        with self._lock:
            self._calls.add(call)
        if self._stopped.is_set():
            call.cancel()
        try:
            yield
        finally:
            with self._lock:
                self._calls.discard(call)
            call.cancel()

    def _fail(self, error: BaseException) -> None:
        """The job fails with `error` (the first one wins); every call is cancelled."""
        with self._lock:
            if self._error is None:
                self._error = error
            self._stopped.set()
            calls = list(self._calls)
        self._units.stop()
        for call in calls:
            call.cancel()


def _lanes_on(endpoint: Endpoint) -> int:
    return endpoint.backends if endpoint.resolver else 1


def stream_spread(
    endpoints: Sequence[Endpoint],
    arch: ArchLike,
    job: StreamJob,
    out: Sequence[Path] | None,
    progress: bool | None,
    on_tile_done: TileHook | None = None,
) -> tuple[list[Array], StreamReport]:
    """The job spread over `endpoints`; its kernels and a report of who did what."""
    spread = Spread(endpoints, arch, job, out, progress, on_tile_done)
    return spread.run(), spread.report
