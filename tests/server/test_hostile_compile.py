"""Issue 17, "what to build": a compile that dies is contained (finding 5: a 10,000-layer
network's compile aborted the whole server with std::bad_alloc).

One lab server (tests/server/hostile.py) whose engine processes' compiles may add 200 MiB of
address space (--compile-memory-mb): a 2-layer network's compile needs ~20 MiB (its
process's VmSize grew 17 MiB here), a written-out 100-pair Dense+Relu network's (~28,000
operations, under every budget) ~430 MiB, so compiling it takes its process down (XLA aborts,
SIGABRT: a real death, not a Python error). On main the same compile, with the server's own
address space 200 MiB above its size, aborted the server (std::bad_alloc).
"""

from __future__ import annotations

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

COMPILE_MEMORY_MB = 200
X = np.random.default_rng(7).standard_normal((4, 3)).astype(np.float32)


def _chain(pairs: int, width: int = 8) -> Any:
    layers = [layer for _ in range(pairs) for layer in (stax.Dense(width), stax.Relu())]
    return stax.serial(*layers, stax.Dense(1))


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    directory: Path = tmp_path_factory.mktemp("hostile-compile")
    flags = ("--compile-workers", "1", "--compile-memory-mb", str(COMPILE_MEMORY_MB))
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
        assert "took its engine process down" in message, message
        assert "killed by SIG" in message or "out of memory" in message, message
        assert "--compile-memory-mb" in message and "simplify the network" in message
        assert probe.worst() < PROBE_BOUND_SECONDS, probe.summary()
        assert not probe.failures, probe.failures
        assert server.proc.poll() is None  # the server is up

        started = time.monotonic()
        with pytest.raises(ResourceExhaustedError, match="took its engine process down"):
            attacker.kernel(bomb, X, get="ntk")  # remembered: not compiled again
        assert time.monotonic() - started < PROBE_BOUND_SECONDS

        small = attacker.register(_chain(2))
        kernel = attacker.kernel(small, X, get="ntk")  # compiled by the process that came back
        assert kernel.shape == (4, 4) and np.all(np.isfinite(kernel))


@timeout_for(30)
def test_a_tile_program_that_dies_costs_its_stream_alone(server: ServerProcess) -> None:
    """Streamed tiles' programs are compiled in engine processes too (before: in the server's
    process, where this compile aborted the whole server: the stream ended UNAVAILABLE,
    "Socket closed"): the stream gets RESOURCE_EXHAUSTED naming the cause, the neighbour's
    calls go on, the refusal is remembered, and the next stream's tile program comes from the
    process that came back."""
    with Client(server.target, token=ATTACKER, timeout=600) as attacker:
        bomb = attacker.register(_chain(100))
        with Probe(server.target) as probe, pytest.raises(ResourceExhaustedError) as refused:
            attacker.kernel(bomb, X, get="ntk", tile=2, progress=False)
        message = str(refused.value)
        assert "took its engine process down" in message, message
        assert probe.worst() < PROBE_BOUND_SECONDS, probe.summary()
        assert not probe.failures, probe.failures
        assert server.proc.poll() is None

        started = time.monotonic()
        with pytest.raises(ResourceExhaustedError, match="took its engine process down"):
            attacker.kernel(bomb, X, get="ntk", tile=2, progress=False)  # remembered
        assert time.monotonic() - started < PROBE_BOUND_SECONDS

        small = attacker.register(_chain(3))
        streamed = attacker.kernel(small, X, get="ntk", tile=2, progress=False)
        np.testing.assert_array_equal(streamed, attacker.kernel(small, X, get="ntk"))
