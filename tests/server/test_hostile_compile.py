"""Issue 17, "what to build": a compile that dies is contained (finding 5: a 10,000-layer
network's compile aborted the whole server with std::bad_alloc).

One lab server (tests/server/hostile.py) with one compile worker whose address space is
capped 200 MiB above what a warmed-up worker holds (measured here, in a worker-like process,
as it depends on the machine's cores): a 2-layer network's compile needs ~20 MiB more, a
written-out 100-pair Dense+Relu network's (~28,000 operations, under every budget) ~440 MiB,
so compiling it takes the worker down (XLA aborts: a real death, not a Python error).
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from ntkserve import Client, stax
from ntkserve.errors import ResourceExhaustedError
from ntkserve_server.testing import ServerProcess

from tests.conftest import timeout_for
from tests.server.hostile import ATTACKER, PROBE_BOUND_SECONDS, Probe, lab_server

HEADROOM_MB = 200
X = np.random.default_rng(7).standard_normal((4, 3)).astype(np.float32)
_WARM_SIZE = (
    "from ntkserve_server.compile_workers import warm_up; warm_up(); "
    "print(next(line.split()[1] for line in open('/proc/self/status') "
    "if line.startswith('VmSize')))"
)


def _chain(pairs: int, width: int = 8) -> Any:
    layers = [layer for _ in range(pairs) for layer in (stax.Dense(width), stax.Relu())]
    return stax.serial(*layers, stax.Dense(1))


def _warm_worker_mb() -> int:
    """The address space of a warmed-up compile worker on this machine, in MiB."""
    out = subprocess.run(
        [sys.executable, "-c", _WARM_SIZE], capture_output=True, text=True, check=True
    )
    return int(out.stdout.split()[-1]) // 1024


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    directory: Path = tmp_path_factory.mktemp("hostile-compile")
    cap = str(_warm_worker_mb() + HEADROOM_MB)
    flags = ("--compile-workers", "1", "--compile-memory-mb", cap)
    with lab_server(directory, *flags) as proc:
        yield proc


@timeout_for(30)
def test_a_compile_that_dies_costs_its_call_alone(server: ServerProcess) -> None:
    """The call gets RESOURCE_EXHAUSTED naming the cause; the server and the neighbour's
    calls go on; the refusal is remembered; the worker comes back for the next compile."""
    with Client(server.target, token=ATTACKER, timeout=600) as attacker:
        bomb = attacker.register(_chain(100))
        with Probe(server.target) as probe, pytest.raises(ResourceExhaustedError) as refused:
            attacker.kernel(bomb, X, get="ntk")
        message = str(refused.value)
        print(message)
        assert "took the compile worker down" in message, message
        assert "killed by SIG" in message or "out of memory" in message, message
        assert "--compile-memory-mb" in message and "simplify the network" in message
        assert probe.worst() < PROBE_BOUND_SECONDS, probe.summary()
        assert not probe.failures, probe.failures
        assert server.proc.poll() is None  # the server is up

        started = time.monotonic()
        with pytest.raises(ResourceExhaustedError, match="took the compile worker down"):
            attacker.kernel(bomb, X, get="ntk")  # remembered: not compiled again
        assert time.monotonic() - started < PROBE_BOUND_SECONDS

        small = attacker.register(_chain(2))
        kernel = attacker.kernel(small, X, get="ntk")  # compiled by the worker that came back
        assert kernel.shape == (4, 4) and np.all(np.isfinite(kernel))
