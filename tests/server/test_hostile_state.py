"""Issue 17, findings 2 and 10: the compiled state a tenant can make the server keep, and what a
tenant can learn from another's compilations.

Finding 2: networks differing only in W_std share a topology, so the topology bound never
evicted them, while each id kept its own ~18 MiB per 10,000 layers: registrations alone grew
the server until it died. Now the compiled state is bounded in bytes (--max-compiled-mb),
ids share their topology's tree, and an evicted id is rebuilt from the registry.

Finding 10: by default a topology compiled for one tenant is compiled for all (documented
in compiled_state.py); --isolate-tenant-caches makes every tenant compile its own, which the
server's compile counters show (not timings).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from ntkserve import Client, stax

from tests.conftest import ServerProcess, metric, scrape, timeout_for
from tests.server.hostile import ATTACKER, NEIGHBOUR, lab_server

LAYERS = 200  # a 200-layer network compiles in ~5 s here; its ids cost ~0.5 MiB each before
VARIANTS = 300
X = np.random.default_rng(2).standard_normal((3, 4)).astype(np.float32)


def _deep(w_std: float) -> Any:
    return stax.serial(
        *[x for _ in range(LAYERS // 2) for x in (stax.Dense(8, W_std=w_std), stax.Relu())]
    )


def _rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


@pytest.fixture(scope="module")
def bounded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with lab_server(tmp_path_factory.mktemp("state"), "--max-compiled-mb", "32") as server:
        yield server


@timeout_for(60)
def test_w_std_variants_keep_memory_bounded_and_all_still_compute(bounded: ServerProcess) -> None:
    """Before: RSS grew ~0.5 MiB per 200-layer registration (300 of them: +150 MiB and more).
    After: what is kept is under the 32 MiB budget; the first variant, evicted long since,
    is rebuilt from the registry and gives the same bits; another gives other values."""
    with Client(bounded.target, token=ATTACKER, timeout=300) as client:
        first = client.register(_deep(1.0))
        before_values = client.kernel(first, X, get="nngp")  # compiles the topology once
        ids = [client.register(_deep(1.0 + i / 1000)) for i in range(1, 21)]
        start = _rss_mib(bounded.pid)
        began = time.monotonic()
        ids += [client.register(_deep(1.0 + i / 1000)) for i in range(21, VARIANTS)]
        grown = _rss_mib(bounded.pid) - start
        print(
            f"{VARIANTS - 21} registrations in {time.monotonic() - began:.1f} s: "
            f"RSS +{grown:.0f} MiB"
        )
        # The budget (32 MiB) plus the allocator's slack for one network's transient build.
        assert grown < 64, f"RSS grew {grown:.0f} MiB over {VARIANTS - 21} registrations"
        again = client.kernel(first, X, get="nngp")
        np.testing.assert_array_equal(again, before_values)
        middle, last = (client.kernel(i, X, get="nngp") for i in (ids[len(ids) // 2], ids[-1]))
        assert not np.array_equal(last, before_values)  # its own W_std, not the first's
        assert not np.array_equal(middle, last)


NET = stax.serial(stax.Dense(8, W_std=1.3), stax.Erf(), stax.Dense(1))


def _compiles_for_neighbour(directory: Path, *flags: str) -> tuple[float, float, float]:
    """(topology-program misses, XLA compilations, tile-program compilations) of NEIGHBOUR's
    first unary and streamed calls of a network and input shape that ATTACKER computed just
    before."""

    def calls(target: str, token: str) -> None:
        with Client(target, token=token, timeout=120) as client:
            architecture_id = client.register(NET)
            client.kernel(architecture_id, X, get="ntk")
            client.kernel(architecture_id, X, get="ntk", tile=2, progress=False)

    with lab_server(directory, "--metrics-port=0", *flags) as server:
        calls(server.target, ATTACKER)
        before = scrape(server)
        calls(server.target, NEIGHBOUR)
        after = scrape(server)

    def grew(name: str, **labels: str) -> float:
        return metric(after, name, **labels) - metric(before, name, **labels)

    return (
        grew("ntkserve_compile_cache_misses_total", cache="topology"),
        grew("ntkserve_xla_compile_seconds_count"),
        grew("ntkserve_compile_cache_misses_total", cache="tile_program"),
    )


@timeout_for(30)
def test_isolated_tenant_caches_compile_for_each_tenant(tmp_path: Path) -> None:
    misses, compilations, tile_programs = _compiles_for_neighbour(
        tmp_path, "--isolate-tenant-caches"
    )
    assert misses == 1 and compilations >= 2 and tile_programs >= 1


@timeout_for(30)
def test_shared_caches_by_default_compile_once_for_the_lab(tmp_path: Path) -> None:
    """The documented trade: a lab's tenants share compilations (so a first call can tell
    that some tenant ran this topology and input shape recently)."""
    assert _compiles_for_neighbour(tmp_path) == (0, 0, 0)


def test_the_engine_keeps_its_estimated_bytes_under_its_budget() -> None:
    """In process: the engine's own account. Ids of one topology cost their values and
    architecture only (its tree is shared); past the budget the least recently used go."""
    from ntkserve_engine.kernels import KernelFn
    from ntkserve_server.compiled_state import id_bytes
    from ntkserve_server.compute import ComputeEngine

    kfns = [KernelFn(_deep(1.0 + i / 1000)) for i in range(12)]
    per_id = id_bytes(kfns[0])
    alone = ComputeEngine()
    alone.compiled(kfns[0])
    tree = alone.state_bytes() - per_id  # the topology, no program compiled yet
    budget = tree + 5 * per_id
    engine = ComputeEngine(max_bytes=budget)
    for kfn in kfns:
        engine.compiled(kfn)
        assert engine.state_bytes() <= budget
    assert engine.lookup(kfns[0].id) is None  # evicted, the oldest
    last, before_last = engine.lookup(kfns[-1].id), engine.lookup(kfns[-2].id)
    assert last is not None and before_last is not None
    assert last.kfn.params is kfns[-1].params  # its own values
    assert last.kfn._network is before_last.kfn._network  # on one shared tree
