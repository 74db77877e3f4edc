"""What the service benchmark measures with, shared by its measurement modules: the sizes
(full and --quick), the networks and their titles, the random inputs, the kernel bytes a
streamed job puts on the wire, and a timed call's wall and CPU seconds with their medians.
"""

from __future__ import annotations

import dataclasses
import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from benchmarks.service_support import cpu_seconds

ROOT = Path(__file__).resolve().parents[1]
BYTES = 4  # float32
MESSAGE_BYTES = 1 << 20  # the raw stream's messages; the server's KernelTile blocks are ~1 MiB
GIB = 1 << 30


@dataclasses.dataclass(frozen=True)
class Sizes:
    big_n: int
    big_warmup_n: int
    features: int
    cheap_n: int
    cheap_features: int
    triangle_n: int
    triangle_tile: int
    clients: int
    requests: int  # per client, timed
    warmup_requests: int  # per client
    small_n: int


FULL = Sizes(
    big_n=20_000, big_warmup_n=4096, features=784, cheap_n=20_000, cheap_features=64,
    triangle_n=8000, triangle_tile=1024, clients=32, requests=200, warmup_requests=30,
    small_n=10,
)  # fmt: skip
QUICK = Sizes(
    big_n=3000, big_warmup_n=2100, features=784, cheap_n=3000, cheap_features=64,
    triangle_n=2000, triangle_tile=512, clients=8, requests=30, warmup_requests=10,
    small_n=10,
)  # fmt: skip


def fc3() -> Any:
    from ntkserve import stax

    hidden = [layer for _ in range(3) for layer in (stax.Dense(512), stax.Relu())]
    return stax.serial(*hidden, stax.Dense(1))


def dense1() -> Any:
    from ntkserve import stax

    return stax.Dense(1)


NETWORKS: dict[str, Callable[[], Any]] = {"fc3": fc3, "dense1": dense1}
TITLES = {
    "fc3": "3x[Dense(512)-Relu]-Dense(1)",
    "dense1": "Dense(1)",
}


def inputs(n: int, d: int, seed: int = 0) -> Any:
    import numpy as np

    return np.random.default_rng(seed).standard_normal((n, d), dtype=np.float32)


def wire_bytes(n1: int, n2: int, tile: int, mirrored: bool) -> int:
    """Kernel bytes the server sends: every tile, or those on and above the diagonal."""
    rows = [min(tile, n1 - s) for s in range(0, n1, tile)]
    cols = [min(tile, n2 - s) for s in range(0, n2, tile)]
    total = sum(
        r * c for i, r in enumerate(rows) for j, c in enumerate(cols) if j >= i or not mirrored
    )
    return total * BYTES


@dataclasses.dataclass(frozen=True)
class Run:
    """One timed call: wall seconds and the CPU seconds the server and this process used."""

    wall_s: float
    server_cpu_s: float
    client_cpu_s: float


def timed(fn: Callable[[], Any], server_pid: int) -> Run:
    s0, c0 = cpu_seconds(server_pid), cpu_seconds()
    start = time.perf_counter()
    fn()
    wall = time.perf_counter() - start
    return Run(wall, cpu_seconds(server_pid) - s0, cpu_seconds() - c0)


def medians(runs: Sequence[Run]) -> dict[str, Any]:
    return {
        "times_s": [r.wall_s for r in runs],
        "wall_s": statistics.median(r.wall_s for r in runs),
        "server_cpu_s": statistics.median(r.server_cpu_s for r in runs),
        "client_cpu_s": statistics.median(r.client_cpu_s for r in runs),
    }
