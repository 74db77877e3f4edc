"""Admission control for compute calls: how many run at once, how many wait, per tenant;
and how many streams each tenant may hold open.

`async with admission.slot(tenant):` waits for one of `max_running` slots; a call that finds
`max_queue` calls already waiting, or its tenant already holding `max_per_tenant` calls
(running or waiting), is refused at once with `Busy` (RESOURCE_EXHAUSTED with RetryInfo).
`async with admission.open_stream(tenant):` counts a StreamKernel call from its first byte
to its end, refused with `Busy` past `max_streams_per_tenant`: a stream takes its compute
slot only when its compute starts, so an open stream waiting for its client costs a count,
not a slot (slowloris: idle streams cannot lock the other tenants out).
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
    def __init__(
        self,
        max_running: int,
        max_queue: int,
        max_per_tenant: int = 0,
        max_streams_per_tenant: int = 0,
    ) -> None:
        if min(max_queue, max_per_tenant, max_streams_per_tenant) < 0 or max_running < 1:
            raise ValueError(
                "max_running >= 1, max_queue >= 0, max_per_tenant >= 0 and "
                "max_streams_per_tenant >= 0 (0: none)"
            )
        self.max_running = max_running
        self.max_queue = max_queue
        self.max_per_tenant = max_per_tenant
        self.max_streams_per_tenant = max_streams_per_tenant
        self._running = 0
        self._waiting: collections.deque[asyncio.Future[None]] = collections.deque()
        self._per_tenant: collections.Counter[str] = collections.Counter()
        self._streams: collections.Counter[str] = collections.Counter()

    @property
    def running(self) -> int:
        return self._running

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    def open_streams(self, tenant: str) -> int:
        return self._streams[tenant]

    @contextlib.asynccontextmanager
    async def open_stream(self, tenant: str) -> AsyncIterator[None]:
        """One open StreamKernel call of `tenant`, until it ends (Busy past the limit)."""
        held = self._streams[tenant]
        if self.max_streams_per_tenant and held >= self.max_streams_per_tenant:
            raise Busy(
                f"tenant {tenant!r} already has {held} streams open, this server's limit per "
                f"tenant (--max-streams-per-tenant {self.max_streams_per_tenant}); finish or "
                "cancel one and retry"
            )
        self._streams[tenant] += 1
        try:
            yield
        finally:
            self._streams[tenant] -= 1
            if not self._streams[tenant]:
                del self._streams[tenant]

    @contextlib.asynccontextmanager
    async def slot(self, tenant: str) -> AsyncIterator[None]:
        # The server-wide refusal first: when both apply, raising the server's limits is
        # what helps.
        if self._running >= self.max_running and len(self._waiting) >= self.max_queue:
            raise Busy(
                f"the server is busy: {self._running} compute calls running (limit "
                f"{self.max_running}) and {len(self._waiting)} waiting (limit {self.max_queue}); "
                "retry after the delay in RetryInfo, or raise --max-concurrent-jobs/--max-queue"
            )
        if self.max_per_tenant and self._per_tenant[tenant] >= self.max_per_tenant:
            raise Busy(
                f"tenant {tenant!r} already has {self._per_tenant[tenant]} compute calls in "
                f"progress, this server's limit per tenant (--max-jobs-per-tenant "
                f"{self.max_per_tenant}); wait for one to finish and retry"
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
