"""Issue 17, finding 9: a full data disk, and per-tenant quotas on stored architectures.

Before: registration on a full disk answered INTERNAL "disk is full", and after a restart the
server could not start at all (`_migrate` wrote `PRAGMA user_version` on every start, and
the real error hid behind "cannot rollback - no transaction is active"); a tenant could store
architectures until the disk was full. Now: RESOURCE_EXHAUSTED saying the registry is full
and what to do; a current registry is opened without a write, read-only where it cannot be
opened for writing (lookups and computes work, registrations refused); per-tenant quotas.

Full is reached here through SQLite's own `max_page_count` (`--max-registry-mb`, the genuine
SQLITE_FULL path, everywhere); test_hostile_disk.py fills a real file system.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from ntkserve import Client, errors, stax
from ntkserve.v1 import architecture_pb2 as pb
from ntkserve_server.registry import Quotas, Registry, RegistryFull

from tests.conftest import timeout_for
from tests.server.hostile import (
    ATTACKER,
    NEIGHBOUR,
    PROBE_NETWORK,
    PROBE_X,
    lab_server,
)

LAYERS = 2000  # ~25 KB canonical: a 1 MiB registry holds a few dozen
# Registration refuses networks of more layer messages than the compile budget allows
# (--max-program-layers, 400 by default): these servers test storage, so that check is off.
STORAGE_ONLY = ("--max-program-layers", "0")


def big_network(i: int) -> Any:
    return stax.serial(
        *[x for _ in range(LAYERS // 2) for x in (stax.Dense(8, W_std=1 + i / 1000), stax.Relu())]
    )


def register_until_refused(target: str) -> tuple[list[str], errors.ResourceExhaustedError]:
    """The attacker registers `big_network`s until refused (at most 200): the ids
    acknowledged, and the refusal."""
    acknowledged = []
    with (
        Client(target, token=ATTACKER, timeout=120) as attacker,
        pytest.raises(errors.ResourceExhaustedError) as full,
    ):
        for i in range(200):
            acknowledged.append(attacker.register(big_network(i)))
    return acknowledged, full.value


@timeout_for(60)
def test_a_full_registry_is_resource_exhausted_and_a_restart_serves_what_it_has(
    tmp_path: Path,
) -> None:
    flags = ("--max-registry-mb", "1", *STORAGE_ONLY)
    with lab_server(tmp_path, *flags) as first:
        with Client(first.target, token=NEIGHBOUR, timeout=120) as neighbour:
            probe = neighbour.register(PROBE_NETWORK)
        acknowledged, refusal = register_until_refused(first.target)
        assert "the registry is full" in refusal.message
        assert "delete some" in refusal.message
        assert 10 <= len(acknowledged) < 200
        first.proc.kill()  # SIGKILL: every acknowledged registration must be there
        first.proc.wait()
    with lab_server(tmp_path, *flags) as second:  # starts: nothing written on opening
        with Client(second.target, token=ATTACKER, timeout=120) as attacker:
            kept = {a.id for a in attacker.list_architectures()}
            assert set(acknowledged) <= kept
            with pytest.raises(errors.ResourceExhaustedError) as again:
                attacker.register(big_network(1000))
            assert "the registry is full" in again.value.message
            attacker.delete_architecture(acknowledged[0])
            attacker.register(big_network(1000))  # the space it freed
        with Client(second.target, token=NEIGHBOUR, timeout=120) as neighbour:
            assert neighbour.kernel(probe, PROBE_X, get="nngp").shape == (4, 4)


@timeout_for(30)
def test_a_tenant_over_its_quota_is_told_the_numbers_and_others_are_not(tmp_path: Path) -> None:
    with lab_server(tmp_path, "--max-architectures-per-tenant", "3") as server:
        with Client(server.target, token=ATTACKER, timeout=120) as attacker:
            ids = [attacker.register(small_network(i)) for i in range(3)]
            with pytest.raises(errors.ResourceExhaustedError) as over:
                attacker.register(small_network(3))
            assert "keeps 3 architectures" in over.value.message
            assert "delete some" in over.value.message
            assert attacker.register(small_network(0)) == ids[0]  # registered already: not refused
            attacker.delete_architecture(ids[0])
            attacker.register(small_network(3))
        with Client(server.target, token=NEIGHBOUR, timeout=120) as neighbour:
            neighbour.register(small_network(0))  # another tenant's quota


def small_network(i: int) -> Any:
    return stax.serial(stax.Dense(4, W_std=1 + i / 100), stax.Relu(), stax.Dense(1))


def _canonical(layers: int) -> pb.Architecture:
    arch = pb.Architecture()
    for i in range(layers):
        arch.layers.add().dense.out_dim = i + 1
    return arch


def test_the_byte_quota_counts_canonical_bytes_per_tenant(tmp_path: Path) -> None:
    registry = Registry(tmp_path / "r.sqlite3", Quotas(max_bytes_per_tenant=1500))
    registry.put("a", "1" * 64, _canonical(100))  # 600 bytes
    registry.put("a", "2" * 64, _canonical(100))
    with pytest.raises(RegistryFull) as over:
        registry.put("a", "3" * 64, _canonical(100))
    assert "take 1200 bytes and this one 600 more, over the 1500 bytes" in str(over.value)
    registry.put("b", "3" * 64, _canonical(100))
    registry.close()
