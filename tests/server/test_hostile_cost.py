"""Issue 17, findings 5 and 8: unary calls admitted by their cost before they run.

One lab server (tests/server/hostile.py) with the compile and time budgets lowered so the
attacks stay small (--max-program-ops 20000, --max-call-seconds 0.05 at the CPU's default
rates) and the memory budget at
its default (a quarter of the 6 GiB address-space cap). Each attack runs as the attacker
while the probe times the neighbour's health checks and small compiled calls.
"""

from __future__ import annotations

import re
import threading
import urllib.request
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

MAX_PROGRAM_OPS = 20_000
MAX_CALL_SECONDS = 0.05


def _chain(pairs: int, width: int = 8) -> Any:
    """`pairs` Dense+Relu written out (not repeated): about 245 lowered operations each."""
    layers = [layer for _ in range(pairs) for layer in (stax.Dense(width), stax.Relu())]
    return stax.serial(*layers, stax.Dense(1))


X = np.random.default_rng(5).standard_normal((4, 3)).astype(np.float32)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    directory: Path = tmp_path_factory.mktemp("hostile-cost")
    flags = ("--max-program-ops", str(MAX_PROGRAM_OPS), "--max-call-seconds", str(MAX_CALL_SECONDS))
    with lab_server(directory, *flags, "--metrics-port", "0") as proc:
        yield proc


@pytest.fixture(scope="module")
def attacker(server: ServerProcess) -> Iterator[Client]:
    with Client(server.target, token=ATTACKER, timeout=600) as client:
        yield client


def _metric(server: ServerProcess, name: str, labels: str = "") -> float:
    """One sample of the server's /metrics (0 if absent)."""
    assert server.wait_for_log("metrics on http://")
    url = re.search(r"metrics on (http://\S+/metrics)", server.log_text())
    assert url is not None
    text = urllib.request.urlopen(url.group(1), timeout=30).read().decode()
    pattern = rf"^{re.escape(name)}(?:_total)?{re.escape(labels)} (\S+)$"
    found = re.search(pattern, text, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


@timeout_for(10)
def test_a_network_too_long_to_lower_is_refused_at_registration(
    server: ServerProcess, attacker: Client
) -> None:
    """600 written-out layers would take minutes to lower and compile; refused as sent."""
    with Probe(server.target) as probe, pytest.raises(ResourceExhaustedError) as refused:
        attacker.register(_chain(300))
    assert "--max-program-layers" in str(refused.value) and "601" in str(refused.value)
    assert "repeat(layer, n)" in str(refused.value)
    assert probe.worst() < PROBE_BOUND_SECONDS, probe.summary()


@timeout_for(15)
def test_a_program_too_large_to_compile_is_refused_once_and_remembered(
    server: ServerProcess, attacker: Client
) -> None:
    """100 layer pairs: ~24,500 operations, over 20,000: refused after lowering, before XLA
    compiles it; the next call is answered from the remembered refusal, compiling nothing."""
    architecture_id = attacker.register(_chain(100))
    with Probe(server.target) as probe:
        with pytest.raises(ResourceExhaustedError) as refused:
            attacker.kernel(architecture_id, X, get="nngp")
        message = str(refused.value)
        assert "--max-program-ops" in message and f"limit of {MAX_PROGRAM_OPS}" in message
        compiled = _metric(server, "ntkserve_compile_cache_misses", '{cache="unary_program"}')
        refusals = _metric(server, "ntkserve_unary_cost_refusals")
        with pytest.raises(ResourceExhaustedError) as again:
            attacker.kernel(architecture_id, X, get="nngp")
    assert str(again.value).split(" (request id")[0] == message.split(" (request id")[0]
    assert _metric(server, "ntkserve_compile_cache_misses", '{cache="unary_program"}') == compiled
    assert _metric(server, "ntkserve_unary_cost_refusals") == refusals + 1
    assert probe.worst() < PROBE_BOUND_SECONDS, probe.summary()


@timeout_for(30)
def test_expensive_compiles_do_not_starve_compiled_calls(
    server: ServerProcess, attacker: Client
) -> None:
    """Four different 40-pair networks (~9,800 operations each, allowed; seconds of compile
    each) compiled at once by one tenant: they used to take every compute worker."""
    ids = [attacker.register(_chain(40, width=8 + i)) for i in range(4)]
    errors: list[BaseException] = []

    def call(architecture_id: str) -> None:
        try:
            attacker.kernel(architecture_id, X, get="nngp")
        except BaseException as e:  # reported below
            errors.append(e)

    threads = [threading.Thread(target=call, args=(i,)) for i in ids]
    with Probe(server.target) as probe:
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert not errors
    assert probe.worst() < PROBE_BOUND_SECONDS, probe.summary()


@timeout_for(15)
def test_a_call_over_the_memory_budget_is_refused_before_it_runs(
    server: ServerProcess, attacker: Client
) -> None:
    """Global average pooling keeps every pair of positions: 12 images of 32x32 need ~2.5 GiB,
    over the default budget (a quarter of the 6 GiB cap); it used to run (or die) trying."""
    net = stax.serial(
        stax.Conv(4, (3, 3), padding="SAME"), stax.Relu(), stax.GlobalAvgPool(), stax.Dense(1)
    )
    x = np.random.default_rng(8).standard_normal((12, 32, 32, 1)).astype(np.float32)
    architecture_id = attacker.register(net)
    with Probe(server.target) as probe, pytest.raises(ResourceExhaustedError) as refused:
        attacker.kernel(architecture_id, x, get="nngp")
    message = str(refused.value)
    assert "--max-call-memory-mb" in message and "MiB" in message
    assert "stream" in message and "smaller batches" in message
    assert probe.worst() < PROBE_BOUND_SECONDS, probe.summary()


@timeout_for(10)
def test_a_call_over_the_time_budget_is_refused_before_it_runs(
    server: ServerProcess, attacker: Client
) -> None:
    """A repeated layer is a loop whose body XLA counts once: its cost is counted 20 times
    (~0.2 s estimated for these 1,000 rows, over 0.05 s), so the loop cannot hide a long
    computation."""
    net = stax.serial(
        stax.Dense(64), stax.repeat(stax.serial(stax.Dense(64), stax.Relu()), 20), stax.Dense(1)
    )
    x = np.random.default_rng(9).standard_normal((1000, 8)).astype(np.float32)
    architecture_id = attacker.register(net)
    with pytest.raises(ResourceExhaustedError) as refused:
        attacker.kernel(architecture_id, x, get="nngp")
    assert "--max-call-seconds" in str(refused.value) and "0.05 s" in str(refused.value)
    small = attacker.kernel(architecture_id, x[:8], get="nngp")  # the same network, fewer rows
    assert np.shape(small) == (8, 8)


@timeout_for(10)
def test_memory_traffic_counts_toward_a_calls_time(server: ServerProcess, attacker: Client) -> None:
    """Pooling keeps every pair of positions, so its kernel moves far more bytes than it
    computes: 32 images of 8x8 are ~15 ms of FLOPs at the CPU's rate, which FLOPs alone would
    admit, but ~0.1 s with their memory traffic (measured here: 0.2 s), over 0.05 s."""
    net = stax.serial(
        stax.Conv(8, (3, 3), padding="SAME"),
        stax.Relu(),
        stax.Conv(8, (3, 3), padding="SAME"),
        stax.Relu(),
        stax.AvgPool((2, 2)),
        stax.GlobalAvgPool(),
        stax.Dense(1),
    )
    x = np.random.default_rng(10).standard_normal((32, 8, 8, 3)).astype(np.float32)
    architecture_id = attacker.register(net)
    with pytest.raises(ResourceExhaustedError) as refused:
        attacker.kernel(architecture_id, x, get="nngp")
    found = re.search(r"([\d.e+-]+) FLOPs at ([\d.e+-]+)/s plus", str(refused.value))
    assert found is not None, refused.value
    flops_seconds = float(found.group(1)) / float(found.group(2))
    assert flops_seconds < MAX_CALL_SECONDS  # under the budget by FLOPs alone
    assert "bytes of memory traffic" in str(refused.value)
    fewer = attacker.kernel(architecture_id, x[:8], get="nngp")  # ~6 ms estimated: runs
    assert np.shape(fewer) == (8, 8)
