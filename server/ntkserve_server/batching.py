"""Dynamic batching: merges small concurrent kernel requests into one device call.

Requests with the same key (architecture id, x1 and x2 shapes and dtypes, `get`) are
stacked along a new leading axis and run through a jitted `jax.vmap` of `KernelFn.apply`
(hyper-parameters not batched), then split back to their callers. Requests whose kernel has
more than `max_entries` entries (N1 * N2 * positions) bypass the batcher: batching pays off
for calls dominated by dispatch overhead, not for calls dominated by arithmetic.

Latency policy (per key):
- eager (default): a request whose key has nothing on the device runs at once, alone, so a
  lone caller pays no waiting. Requests arriving while a call of their key is on the
  device gather; they start together when that call ends, after at most `window_seconds`,
  or as soon as `max_batch` of them wait, whichever comes first. Under load the device
  is thus never idle for a window and batches grow with the load.
- not eager: the first request of a key opens a window of `window_seconds`; requests
  arriving in it join; it runs at the window's end or at `max_batch` requests.
- `window_seconds <= 0` disables batching: every call runs alone.

Every program is made by `unary_programs.UnaryPrograms`: compiled ahead of time and admitted
by its cost. A request's own (unbatched) program is made before it joins a batch, so a
request over a budget is refused alone; a batch of one runs it, so a lone call returns bit
for bit what `ComputeEngine.kernel` returns. Larger batches are padded up to a power of two
(repeating the last request) so few programs are compiled, and merge only as many requests
as fit the memory budget together (n times one request's memory).

An error in a batch reaches every waiter of it; a waiter that is cancelled is dropped
without disturbing the others. A batch whose waiters all left before a worker picked it up
never runs; a waiter that leaves once its batch runs waits for the batch's end (its
admission slot stays held while the device is busy: `device_work.py`).
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import math
from collections.abc import Hashable
from concurrent.futures import Executor, ThreadPoolExecutor
from typing import Any

import jax
import numpy as np

from ntkserve_server.compute import CheckedInputs, Compiled, run_forward
from ntkserve_server.device_work import DeviceWork, Dropped
from ntkserve_server.program_recipes import Program
from ntkserve_server.requests import OverLimit
from ntkserve_server.unary_programs import Budgets, UnaryPrograms

Array = np.ndarray[Any, Any]
Result = tuple[Array, ...]
Key = tuple[Hashable, ...]


@dataclasses.dataclass
class _Waiter:
    inputs: CheckedInputs
    future: asyncio.Future[Result]
    dropped: bool = False  # its caller left (read by the worker before the batch starts)


@dataclasses.dataclass
class _Open:
    """Requests of one key gathering for their device call."""

    compiled: Compiled
    get: tuple[str, ...]
    single: Program  # the unbatched program of one request of this key
    tenant: str  # whose request opened it (the merged program's compile counts for them)
    waiters: list[_Waiter] = dataclasses.field(default_factory=list)
    timer: asyncio.TimerHandle | None = None
    started: bool = False  # a worker took the batch up (set before it checks the waiters)
    task: asyncio.Task[None] | None = None


def _stacked(size: int, x: Array | None) -> Any:
    """The shape of `size` arrays like `x` stacked (what the merged program is lowered for)."""
    return None if x is None else jax.ShapeDtypeStruct((size, *x.shape), x.dtype)  # type: ignore[no-untyped-call]


class DynamicBatcher:
    """Asyncio-side batcher; device work runs on `executor`. Use from one event loop.

    `programs` makes (and admits) every program; `work` runs them on `executor`. Both
    default to ones of the batcher's own with no budgets (for use in process)."""

    def __init__(
        self,
        executor: Executor,
        *,
        programs: UnaryPrograms | None = None,
        work: DeviceWork | None = None,
        window_seconds: float = 0.002,
        max_batch: int = 64,
        max_entries: int = 65536,
        eager: bool = True,
    ) -> None:
        self.window_seconds = window_seconds
        self.max_batch = max_batch
        self.max_entries = max_entries
        self.eager = eager
        self.device_calls = 0  # programs run (batched, alone, or bypassing)
        self.batched_requests = 0  # requests served by a batch of two or more
        self.programs = programs or UnaryPrograms(Budgets(), ThreadPoolExecutor(1))
        self.work = work or DeviceWork(executor)
        self._open: dict[Key, _Open] = {}
        self._in_flight: dict[Key, int] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    def wants(self, inputs: CheckedInputs) -> bool:
        """Whether a request of these inputs is small enough to be batched (and batching is on)."""
        if self.window_seconds <= 0 or self.max_batch < 2:
            return False
        return math.prod(inputs.kernel_shape) <= self.max_entries

    def _cap(self, single: Program) -> int:
        """The most requests of `single`'s program one merged call takes: `max_batch`, or the
        largest power of two below it whose merged call fits the memory budget."""
        if self.programs.fits(single, self.max_batch):
            return self.max_batch
        cap = 1 << (self.max_batch.bit_length() - 1)
        while cap > 1 and not self.programs.fits(single, cap):
            cap //= 2
        return cap

    async def kernel(self, inputs: CheckedInputs, tenant: str = "") -> Result:
        """The kernels named in `inputs.get`, as `ComputeEngine.kernel` computes them, of
        inputs checked where the call came in, for `tenant` (OverLimit past a budget).
        Requests with a mask constant or Aggregate patterns run alone (each would need its
        own batched along)."""
        single = await self.programs.forward(inputs, tenant)
        extras = inputs.mask_constant is not None or inputs.patterns[0] is not None
        cap = self._cap(single)
        if extras or cap < 2 or not self.wants(inputs):
            self.device_calls += 1
            return await self.work.run(run_forward, inputs, single.executable)
        x1, x2 = inputs.x1, inputs.x2
        key: Key = (
            inputs.compiled.kfn.id,
            inputs.compiled.kfn.topology_id,  # per tenant when tenants are isolated
            x1.shape,
            x1.dtype.str,
            None if x2 is None else (x2.shape, x2.dtype.str),
            inputs.get,
        )
        loop = asyncio.get_running_loop()
        batch = self._open.get(key)
        if batch is None:
            batch = self._open[key] = _Open(inputs.compiled, inputs.get, single, tenant)
            if not self.eager or self._in_flight.get(key):
                batch.timer = loop.call_later(self.window_seconds, self._dispatch, key)
        waiter = _Waiter(inputs, loop.create_future())
        batch.waiters.append(waiter)
        if batch.timer is None or len(batch.waiters) >= cap:
            self._dispatch(key)
        try:
            return await waiter.future
        except asyncio.CancelledError:
            waiter.dropped = True
            if batch.started and batch.task is not None:
                await asyncio.wait({batch.task})  # running: the slot is held to its end
            raise

    def _dispatch(self, key: Key) -> None:
        """Starts the open batch of `key` on the executor (event loop thread)."""
        batch = self._open.pop(key, None)
        if batch is None:
            return
        if batch.timer is not None:
            batch.timer.cancel()
        live = [w for w in batch.waiters if not w.future.done()]  # drop the cancelled
        if not live:
            return
        self._in_flight[key] = self._in_flight.get(key, 0) + 1
        self.device_calls += 1
        if len(live) > 1:
            self.batched_requests += len(live)
        task = asyncio.get_running_loop().create_task(self._run(key, batch, live))
        batch.task = task
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _merged(self, batch: _Open, live: list[_Waiter]) -> Program | None:
        """The merged program for `live` (None: they run one by one, each its own program,
        when the merged one is over a budget after all)."""
        if len(live) == 1:
            return None
        size = self._padded(len(live))
        first = live[0].inputs
        x1, x2 = _stacked(size, first.x1), _stacked(size, first.x2)
        try:
            return await self.programs.batched(batch.compiled, batch.get, x1, x2, batch.tenant)
        except OverLimit:
            return None

    def _padded(self, n: int) -> int:
        """The size of the merged program for `n` requests: a power of two, or `max_batch`."""
        return max(n, min(self.max_batch, 1 << (n - 1).bit_length()))

    def _wanted(self, batch: _Open, live: list[_Waiter]) -> bool:
        """In the worker, as it takes the batch up: whether any waiter still wants it."""
        batch.started = True
        return any(not w.dropped for w in live)

    async def _run(self, key: Key, batch: _Open, live: list[_Waiter]) -> None:
        try:
            program = await self._merged(batch, live)
            inputs = [w.inputs for w in live]
            call = functools.partial(self._compute, batch, program, inputs)
            results = await self.work.submit(
                call, wanted=functools.partial(self._wanted, batch, live)
            )
        except Dropped:
            pass  # every waiter left before it started: nothing ran
        except asyncio.CancelledError:
            for w in live:
                w.future.cancel()
            raise
        except Exception as e:
            for w in live:
                if not w.future.done():
                    w.future.set_exception(e)
        else:
            for w, result in zip(live, results, strict=True):
                if not w.future.done():
                    w.future.set_result(result)
        finally:
            self._in_flight[key] -= 1
            if self._in_flight[key] <= 0:
                del self._in_flight[key]
                if key in self._open:  # gathered while this call ran: start them now
                    self._dispatch(key)

    def _compute(
        self, batch: _Open, program: Program | None, inputs: list[CheckedInputs]
    ) -> list[Result]:
        """One device call for all `inputs` (worker thread); without a merged program, one
        call each of the unbatched program."""
        if program is None:
            return [run_forward(one, batch.single.executable) for one in inputs]
        n = len(inputs)
        padded = inputs + [inputs[-1]] * (self._padded(n) - n)
        x1 = np.stack([a.x1 for a in padded])
        x2s = [a.x2 for a in padded if a.x2 is not None]
        x2 = np.stack(x2s) if x2s else None  # the key has x2 for all or for none
        kfn = batch.compiled.kfn
        out = [np.asarray(k) for k in program.executable(kfn.params, x1, x2)]
        return [kfn.to_host([k[i] for k in out], x2 is None) for i in range(n)]
