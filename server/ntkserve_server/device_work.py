"""Device work started from the event loop, ending truthfully for a caller that leaves.

A started XLA computation cannot be interrupted in-process. So: work whose caller was
cancelled (or whose deadline passed) before a worker picked it up never starts; a caller
cancelled after it started waits for its end before leaving, so that an admission slot held
around the call stays held while the device is busy (the slot count tells the truth, and a
tenant cannot cancel its way past its limit). How long such work runs is bounded by the
unary time budget (`unary_programs`, --max-call-seconds), not here.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from concurrent.futures import Executor
from typing import Any, TypeVar

_T = TypeVar("_T")


class Dropped(Exception):
    """The work was not started: no caller wanted it any more."""


class DeviceWork:
    """Runs device work on `executor`; counts what ran and what was dropped before it ran."""

    def __init__(self, executor: Executor) -> None:
        self._executor = executor
        self._lock = threading.Lock()
        self.started = 0  # work that ran (or began to)
        self.dropped = 0  # work dropped before it started: its callers had left

    def _begin(self, wanted: Callable[[], bool] | None) -> bool:
        """In the worker, before the work: whether to run it (counted either way)."""
        run = wanted is None or wanted()
        with self._lock:
            if run:
                self.started += 1
            else:
                self.dropped += 1
        return run

    def _skip(self) -> None:
        with self._lock:
            self.dropped += 1

    def submit(
        self, fn: Callable[..., _T], *args: Any, wanted: Callable[[], bool] | None = None
    ) -> asyncio.Future[_T]:
        """`fn(*args)` on a worker unless `wanted()` says, when a worker picks it up, that
        nobody wants it any more (then the future fails with `Dropped`)."""

        def job() -> _T:
            if not self._begin(wanted):
                raise Dropped
            return fn(*args)

        return asyncio.wrap_future(self._executor.submit(job))

    async def run(self, fn: Callable[..., _T], *args: Any) -> _T:
        """`fn(*args)` on a worker, for one caller: dropped if the caller leaves before it
        starts; if it has started, the caller's cancellation waits for its end."""
        job = self._executor.submit(self._counted, fn, *args)
        try:
            return await asyncio.wrap_future(job)
        except asyncio.CancelledError:
            if job.cancel():  # still queued: it never starts
                self._skip()
            else:
                await asyncio.wait({asyncio.wrap_future(job)})
            raise

    def _counted(self, fn: Callable[..., _T], *args: Any) -> _T:
        self._begin(None)
        return fn(*args)
