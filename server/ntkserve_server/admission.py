"""Admission control for compute calls: how many run at once, how many wait, per tenant.

`async with admission.slot(tenant):` waits for one of `max_running` slots; a call that finds
`max_queue` calls already waiting, or its tenant already holding `max_per_tenant` calls
(running or waiting), is refused at once with `Busy` (RESOURCE_EXHAUSTED with RetryInfo).
Event-loop only: no locks, since every method runs on the loop.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
from collections.abc import AsyncIterator

RETRY_SECONDS = 1.0


class Busy(Exception):
    """The server or the tenant is at its limit now; retrying after `retry_seconds` may work."""

    def __init__(self, message: str, retry_seconds: float = RETRY_SECONDS) -> None:
        super().__init__(message)
        self.retry_seconds = retry_seconds


class Admission:
    def __init__(self, max_running: int, max_queue: int, max_per_tenant: int = 0) -> None:
        if max_running < 1 or max_queue < 0 or max_per_tenant < 0:
            raise ValueError("max_running >= 1, max_queue >= 0, max_per_tenant >= 0 (0: none)")
        self.max_running = max_running
        self.max_queue = max_queue
        self.max_per_tenant = max_per_tenant
        self._running = 0
        self._waiting: collections.deque[asyncio.Future[None]] = collections.deque()
        self._per_tenant: collections.Counter[str] = collections.Counter()

    @property
    def running(self) -> int:
        return self._running

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    @contextlib.asynccontextmanager
    async def slot(self, tenant: str) -> AsyncIterator[None]:
        if self.max_per_tenant and self._per_tenant[tenant] >= self.max_per_tenant:
            raise Busy(
                f"tenant {tenant!r} already has {self._per_tenant[tenant]} compute calls in "
                f"progress, this server's limit per tenant (--max-jobs-per-tenant "
                f"{self.max_per_tenant}); wait for one to finish and retry"
            )
        if self._running >= self.max_running and len(self._waiting) >= self.max_queue:
            raise Busy(
                f"the server is busy: {self._running} compute calls running (limit "
                f"{self.max_running}) and {len(self._waiting)} waiting (limit {self.max_queue}); "
                "retry after the delay in RetryInfo, or raise --max-concurrent-jobs/--max-queue"
            )
        self._per_tenant[tenant] += 1
        try:
            if self._running >= self.max_running:
                turn = asyncio.get_running_loop().create_future()
                self._waiting.append(turn)
                try:
                    await turn  # `_release` hands its slot over: `_running` stays counted
                except BaseException:
                    if turn.done() and not turn.cancelled():
                        self._release()  # handed a slot just as we left: pass it on
                    else:
                        self._waiting.remove(turn)
                    raise
            else:
                self._running += 1
            try:
                yield
            finally:
                self._release()
        finally:
            self._per_tenant[tenant] -= 1
            if not self._per_tenant[tenant]:
                del self._per_tenant[tenant]

    def _release(self) -> None:
        while self._waiting:
            turn = self._waiting.popleft()
            if not turn.done():
                turn.set_result(None)  # the slot passes to the next waiter
                return
        self._running -= 1
