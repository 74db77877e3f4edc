"""Memory readings for the benchmarks: /proc/PID/status, a peak sampler for this process,
and a time series of another process's resident memory."""

from __future__ import annotations

import statistics
import threading
import time
from pathlib import Path


def proc_status(pid: int | str = "self") -> dict[str, int]:
    """VmHWM, VmRSS, RssAnon, RssFile, ... of a process from /proc/PID/status, in bytes."""
    found: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        parts = value.split()
        if len(parts) == 2 and parts[1] == "kB":
            found[name] = int(parts[0]) * 1024
    return found


class AnonSampler:
    """Samples this process's anonymous resident memory (RssAnon) in a thread and keeps the
    peak. VmHWM counts the pages of a memory-mapped output file as well (page cache that
    the kernel can write back and drop); RssAnon is what the process itself holds."""

    def __init__(self, interval: float = 0.02) -> None:
        self.interval = interval
        self.peak_anon = 0
        self.peak_file = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _sample(self) -> None:
        status = proc_status()
        self.peak_anon = max(self.peak_anon, status.get("RssAnon", 0))
        self.peak_file = max(self.peak_file, status.get("RssFile", 0))

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self._sample()

    def __enter__(self) -> AnonSampler:
        self._sample()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()


class RssSeries:
    """Another process's resident memory (VmRSS) over time: (perf_counter, bytes) every
    `interval` seconds, in a thread, until the process ends or the block is left."""

    def __init__(self, pid: int, interval: float = 0.25) -> None:
        self.pid = pid
        self.interval = interval
        self.samples: list[tuple[float, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.samples.append((time.perf_counter(), proc_status(self.pid)["VmRSS"]))
            except (OSError, KeyError):
                return  # the process has ended

    def median(self, start: float, end: float) -> tuple[float, int]:
        """The median of the samples from `start` to `end` (or the nearest), and their count."""
        inside = [rss for t, rss in self.samples if start <= t <= end]
        nearest = min(self.samples, key=lambda s: abs(s[0] - start))[1]
        return statistics.median(inside or [nearest]), len(inside)

    def __enter__(self) -> RssSeries:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
