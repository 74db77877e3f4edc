"""The service benchmark's small-request measurement: rounds of small kernels from concurrent
client threads, each with its own Client, and the medians over rounds.
"""

from __future__ import annotations

import contextlib
import statistics
import threading
import time
from collections.abc import Sequence
from typing import Any

from benchmarks.service_cases import Sizes, fc3, inputs
from benchmarks.service_support import KernelServer, cpu_seconds


def _percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    k = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[k]


def measure_small(server: KernelServer, sizes: Sizes, warmup: int) -> dict[str, Any]:
    """One round: every thread its own Client; all start together after their warm-up."""
    from ntkserve import Client

    net = fc3()
    count = sizes.clients
    latencies: list[list[float]] = [[] for _ in range(count)]
    spans: list[tuple[float, float]] = [(0.0, 0.0)] * count
    errors: list[BaseException] = []
    barrier = threading.Barrier(count + 1)

    def worker(k: int) -> None:
        try:
            x1 = inputs(sizes.small_n, sizes.features, seed=100 + 2 * k)
            x2 = inputs(sizes.small_n, sizes.features, seed=101 + 2 * k)
            with Client(server.target) as client:
                for _ in range(warmup):
                    client.kernel(net, x1, x2, get="nngp")
                barrier.wait()
                mine = latencies[k]
                start = time.perf_counter()
                for _ in range(sizes.requests):
                    t = time.perf_counter()
                    client.kernel(net, x1, x2, get="nngp")
                    mine.append(time.perf_counter() - t)
                spans[k] = (start, time.perf_counter())
        except BaseException as e:
            errors.append(e)
            barrier.abort()

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(count)]
    for t in threads:
        t.start()
    with contextlib.suppress(threading.BrokenBarrierError):
        barrier.wait()  # every thread is warm: the timed part starts
    cpu = [server.cpu(), cpu_seconds()]
    for t in threads:
        t.join()
    cpu = [server.cpu() - cpu[0], cpu_seconds() - cpu[1]]
    if errors:
        raise errors[0]
    flat = [v for per in latencies for v in per]
    wall = max(e for _, e in spans) - min(s for s, _ in spans)
    return {
        "requests": len(flat),
        "wall_s": wall,
        "rps": len(flat) / wall,
        "p50_s": _percentile(flat, 50),
        "p99_s": _percentile(flat, 99),
        "mean_s": statistics.fmean(flat),
        "server_cpu_s": cpu[0],
        "client_cpu_s": cpu[1],
    }


def summarize_small(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    per_request = [
        (r["server_cpu_s"] / r["requests"], r["client_cpu_s"] / r["requests"]) for r in rounds
    ]
    return {
        "rounds": rounds,
        "rps": statistics.median(r["rps"] for r in rounds),
        "p50_s": statistics.median(r["p50_s"] for r in rounds),
        "p99_s": statistics.median(r["p99_s"] for r in rounds),
        "server_cpu_per_request_s": statistics.median(s for s, _ in per_request),
        "client_cpu_per_request_s": statistics.median(c for _, c in per_request),
    }
