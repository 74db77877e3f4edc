"""The hostile-tenant harness (issue 17): a real server capped in memory with two tenants, and a
probe that measures how long the other tenant's small calls and the health check take while
one tenant attacks.

A test starts `lab_server(tmp_path, *flags)`, runs its attack as `ATTACKER` inside
`with Probe(server.target) as probe:`, and asserts `probe.worst() < PROBE_BOUND_SECONDS`
(and whatever the attack itself must answer). The bound is the aim of the issue (p99 under
500 ms on an idle 2-core machine) times the busy-machine factor of `tests/conftest.py`: a
frozen server (the findings froze it for 114 s, or for good) fails it by far, a busy CI
machine does not. `probe.summary()` is printed, so a run shows the figure.
"""

from __future__ import annotations

import resource
import threading
import time
from pathlib import Path
from typing import Any, Self

import grpc
import numpy as np
from grpc_health.v1 import health_pb2, health_pb2_grpc
from ntkserve import Client, stax
from ntkserve_server.testing import ServerProcess

from tests.conftest import BUSY_FACTOR

ATTACKER = "attacker-token-hostile-0123456789"
NEIGHBOUR = "neighbour-token-hostile-987654321"
# The server's address space: a bomb shows as an error, not as the test machine swapping.
MEMORY_CAP_BYTES = 6 << 30
PROBE_AIM_SECONDS = 0.5
PROBE_BOUND_SECONDS = BUSY_FACTOR * PROBE_AIM_SECONDS
PROBE_NETWORK = stax.serial(stax.Dense(16), stax.Relu(), stax.Dense(1))
PROBE_X = np.random.default_rng(17).standard_normal((4, 3)).astype(np.float32)


def _cap_memory(limit: int) -> None:
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


def lab_server(
    directory: Path, *flags: str, memory_cap_bytes: int = MEMORY_CAP_BYTES
) -> ServerProcess:
    """A server for a lab of two tenants (`ATTACKER`, `NEIGHBOUR`), default limits plus
    `flags`, its address space capped at `memory_cap_bytes`."""
    directory.mkdir(parents=True, exist_ok=True)
    tokens = directory / "tokens.txt"
    tokens.write_text(f"{ATTACKER} attacker\n{NEIGHBOUR} neighbour\n")
    return ServerProcess(
        directory / "data",
        "--auth-tokens",
        str(tokens),
        *flags,
        preexec=lambda: _cap_memory(memory_cap_bytes),
    )


class Probe:
    """A thread that, until stopped, alternates the health check and a small ComputeKernel of
    the neighbour tenant, and records each call's latency (and any failure)."""

    def __init__(self, target: str, interval_seconds: float = 0.05) -> None:
        self._target = target
        self._interval = interval_seconds
        self._stop = threading.Event()
        self.latencies: list[float] = []
        self.failures: list[str] = []
        self._client = Client(target, token=NEIGHBOUR, timeout=600)
        self._architecture_id = self._client.register(PROBE_NETWORK)
        self._client.kernel(self._architecture_id, PROBE_X, get="nngp")  # compiled before
        self._channel = grpc.insecure_channel(target)
        self._health = health_pb2_grpc.HealthStub(self._channel)
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._started = 0.0

    def _one(self, call: Any) -> None:
        start = time.monotonic()
        try:
            call()
        except Exception as e:  # recorded, the probe goes on
            self.failures.append(f"{type(e).__name__}: {e}")
        self.latencies.append(time.monotonic() - start)

    def _run(self) -> None:
        request = health_pb2.HealthCheckRequest()
        while not self._stop.is_set():
            self._one(lambda: self._health.Check(request, timeout=600))
            self._one(lambda: self._client.kernel(self._architecture_id, PROBE_X, get="nngp"))
            self._stop.wait(self._interval)

    def worst(self) -> float:
        """The slowest probe call (seconds), counting one still waiting when stopped."""
        return max([*self.latencies, 0.0])

    def p99(self) -> float:
        return float(np.percentile(self.latencies, 99)) if self.latencies else 0.0

    def summary(self) -> str:
        return (
            f"probe: {len(self.latencies)} calls, p99 {self.p99() * 1e3:.0f} ms, "
            f"worst {self.worst() * 1e3:.0f} ms, failures {len(self.failures)}"
        )

    def __enter__(self) -> Self:
        self._started = time.monotonic()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=PROBE_BOUND_SECONDS * 4)
        if self._thread.is_alive():  # a call still hangs: that is the worst latency
            self.latencies.append(time.monotonic() - self._started)
        self._channel.close()
        self._client.close()
        print(self.summary())
