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

A batch of one runs `compiled.forward`, the unbatched program, so a lone call returns bit
for bit what `ComputeEngine.kernel` returns. Larger batches are padded up to a power of
two (repeating the last request) so few programs are compiled; programs are kept per
(topology, batch size, shapes, dtype, get) in an LRU of `max_programs`. An error in a batch
reaches every waiter of it; a waiter that is cancelled is dropped without disturbing the
others.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import functools
import math
import threading
from collections.abc import Callable, Hashable
from concurrent.futures import Executor
from typing import Any

import jax
import numpy as np
from ntkserve_engine.kernels import KernelFn

from ntkserve_server.compute import CheckedInputs, Compiled, run_forward

Array = np.ndarray[Any, Any]
Result = tuple[Array, ...]
Key = tuple[Hashable, ...]


@dataclasses.dataclass
class _Waiter:
    inputs: CheckedInputs
    future: asyncio.Future[Result]


@dataclasses.dataclass
class _Open:
    """Requests of one key gathering for their device call."""

    compiled: Compiled
    get: tuple[str, ...]
    waiters: list[_Waiter] = dataclasses.field(default_factory=list)
    timer: asyncio.TimerHandle | None = None


def _vmapped(kfn: KernelFn, get: tuple[str, ...], with_x2: bool) -> Callable[..., Any]:
    def one(params: Any, x1: Any, x2: Any) -> Any:
        return kfn.apply(params, x1, x2, get)

    return jax.jit(jax.vmap(one, in_axes=(None, 0, 0 if with_x2 else None)))


class DynamicBatcher:
    """Asyncio-side batcher; device work runs on `executor`. Use from one event loop."""

    def __init__(
        self,
        executor: Executor,
        *,
        window_seconds: float = 0.002,
        max_batch: int = 64,
        max_entries: int = 65536,
        eager: bool = True,
        max_programs: int = 64,
    ) -> None:
        self.window_seconds = window_seconds
        self.max_batch = max_batch
        self.max_entries = max_entries
        self.eager = eager
        self.max_programs = max_programs
        self.device_calls = 0  # programs run (batched, alone, or bypassing)
        self.batched_requests = 0  # requests served by a batch of two or more
        self._executor = executor
        self._open: dict[Key, _Open] = {}
        self._in_flight: collections.Counter[Key] = collections.Counter()
        self._tasks: set[asyncio.Task[None]] = set()
        self._batched: collections.OrderedDict[Key, Callable[..., Any]] = collections.OrderedDict()
        self._batched_lock = threading.Lock()

    def wants(self, inputs: CheckedInputs) -> bool:
        """Whether a request of these inputs is small enough to be batched (and batching is on)."""
        if self.window_seconds <= 0 or self.max_batch < 2:
            return False
        return math.prod(inputs.kernel_shape) <= self.max_entries

    async def kernel(self, inputs: CheckedInputs) -> Result:
        """The kernels named in `inputs.get`, as `ComputeEngine.kernel` computes them, of
        inputs checked where the call came in. Requests with a mask constant or Aggregate
        patterns run alone (each would need its own batched along)."""
        loop = asyncio.get_running_loop()
        extras = inputs.mask_constant is not None or inputs.patterns[0] is not None
        if extras or not self.wants(inputs):
            self.device_calls += 1
            return await loop.run_in_executor(self._executor, run_forward, inputs)
        x1, x2 = inputs.x1, inputs.x2
        key: Key = (
            inputs.compiled.kfn.id,
            inputs.compiled.kfn.topology_id,  # per tenant when tenants are isolated
            x1.shape,
            x1.dtype.str,
            None if x2 is None else (x2.shape, x2.dtype.str),
            inputs.get,
        )
        batch = self._open.get(key)
        if batch is None:
            batch = self._open[key] = _Open(inputs.compiled, inputs.get)
            if not self.eager or self._in_flight[key]:
                batch.timer = loop.call_later(self.window_seconds, self._dispatch, key)
        future: asyncio.Future[Result] = loop.create_future()
        batch.waiters.append(_Waiter(inputs, future))
        if batch.timer is None or len(batch.waiters) >= self.max_batch:
            self._dispatch(key)
        return await future

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
        self._in_flight[key] += 1
        self.device_calls += 1
        if len(live) > 1:
            self.batched_requests += len(live)
        task = asyncio.get_running_loop().create_task(self._run(key, batch, live))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(self, key: Key, batch: _Open, live: list[_Waiter]) -> None:
        loop = asyncio.get_running_loop()
        inputs = [w.inputs for w in live]
        call = functools.partial(self._compute, batch.compiled, batch.get, inputs)
        try:
            results = await loop.run_in_executor(self._executor, call)
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
        self, compiled: Compiled, get: tuple[str, ...], inputs: list[CheckedInputs]
    ) -> list[Result]:
        """One device call for all `inputs` (worker thread)."""
        if len(inputs) == 1:
            return [run_forward(inputs[0])]
        n = len(inputs)
        size = max(n, min(self.max_batch, 1 << (n - 1).bit_length()))
        padded = inputs + [inputs[-1]] * (size - n)
        x1 = np.stack([a.x1 for a in padded])
        x2s = [a.x2 for a in padded if a.x2 is not None]
        x2 = np.stack(x2s) if x2s else None  # the key has x2 for all or for none
        program = self._program(compiled.kfn, get, x1, x2)
        out = [np.asarray(k) for k in program(compiled.kfn.params, x1, x2)]
        return [compiled.kfn.to_host([k[i] for k in out], x2 is None) for i in range(n)]

    def _program(
        self, kfn: KernelFn, get: tuple[str, ...], x1: Array, x2: Array | None
    ) -> Callable[..., Any]:
        key: Key = (
            kfn.topology_id,
            x1.shape,
            x1.dtype.str,
            None if x2 is None else (x2.shape, x2.dtype.str),
            get,
        )
        with self._batched_lock:
            program = self._batched.get(key)
            if program is not None:
                self._batched.move_to_end(key)
                return program
            program = _vmapped(kfn, get, x2 is not None)
            self._batched[key] = program
            while len(self._batched) > self.max_programs:
                self._batched.popitem(last=False)
            return program
