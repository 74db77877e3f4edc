"""Tenants: each sees, lists, uses and deletes only its own registrations.

One server process with a token file of two tenants (plaintext on loopback: tokens alone
are enough there). Another tenant's id answers NOT_FOUND, word for word what an id nobody
registered answers, so ids cannot be probed. The registry migration runs without a server.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from ntkserve import Client, errors, stax
from ntkserve.endpoints import proto_of
from ntkserve_server.registry import DEFAULT_TENANT, SCHEMA_VERSION, Registry

from tests.conftest import WAIT_SECONDS, HeldStream, ServerProcess

ALICE = "alice-token-tenants-0123456789"
BOB = "bob-token-tenants-9876543210ab"
X = np.random.default_rng(1).standard_normal((6, 3)).astype(np.float32)


def _net(w_std: float) -> Any:
    """A small network; each w_std is another network, so another id."""
    return stax.serial(stax.Dense(8, W_std=w_std), stax.Relu(), stax.Dense(1))


@pytest.fixture(scope="module")
def tenants_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    data = tmp_path_factory.mktemp("tenants-data")
    tokens = data / "tokens.txt"
    tokens.write_text(f"{ALICE} alice\n{BOB} bob\n")
    proc = ServerProcess(data / "server", "--auth-tokens", str(tokens), "--max-jobs-per-tenant=1")
    yield proc
    proc.terminate()


@pytest.fixture()
def alice(tenants_server: ServerProcess) -> Iterator[Client]:
    with Client(tenants_server.target, token=ALICE, timeout=30) as c:
        yield c


@pytest.fixture()
def bob(tenants_server: ServerProcess) -> Iterator[Client]:
    with Client(tenants_server.target, token=BOB, timeout=30) as c:
        yield c


def _ids(client: Client) -> list[str]:
    return [i.id for i in client.list_architectures()]


def test_the_same_network_gets_the_same_id_for_both(alice: Client, bob: Client) -> None:
    shared, private = _net(1.1), _net(1.2)
    shared_id = alice.register(shared)
    assert bob.register(shared) == shared_id
    private_id = alice.register(private)
    assert shared_id in _ids(alice) and shared_id in _ids(bob)
    assert private_id in _ids(alice) and private_id not in _ids(bob)


def test_another_tenants_id_is_not_found(alice: Client, bob: Client) -> None:
    """Every RPC that takes an id; the network is compiled (alice used it) before bob asks,
    so the check must come before the server's compiled cache."""
    private_id = alice.register(_net(1.3))
    expected = alice.kernel(private_id, X)
    # Another network's id, registered by nobody: what an unknown id answers.
    unknown_id = alice.register(_net(1.4))
    alice.delete_architecture(unknown_id)
    calls: dict[str, Callable[[str], object]] = {
        "GetArchitecture": bob.get_architecture,
        "ComputeKernel": lambda i: bob.kernel(i, X),
        "ComputeValueAndGrad": lambda i: bob.value_and_grad(i, X),
        "ComputeKernelBatch": lambda i: bob.kernel_batch(i, [(X, None), (X[:2], X)]),
        "StreamKernel": lambda i: bob.kernel(i, X, tile=4, progress=False),
        "DeleteArchitecture": bob.delete_architecture,
    }
    for name, call in calls.items():
        messages = []
        for architecture_id in (private_id, unknown_id):
            with pytest.raises(errors.NotFoundError) as raised:
                call(architecture_id)
            error = raised.value
            assert error.request_id and error.request_id in error.message
            messages.append(
                error.message.replace(architecture_id, "ID").replace(error.request_id, "RID")
            )
        assert messages[0] == messages[1], name
    assert private_id in _ids(alice)  # bob's delete did not touch it
    np.testing.assert_array_equal(alice.kernel(private_id, X), expected)


def test_one_tenant_at_its_job_limit_leaves_the_other_served(
    tenants_server: ServerProcess, alice: Client, bob: Client
) -> None:
    """--max-jobs-per-tenant 1: alice's second compute call is refused with a retry delay
    while her first (a stream that holds its slot) runs; bob is not held up by her."""
    architecture_id = alice.register(_net(1.6))
    assert bob.register(_net(1.6)) == architecture_id
    token = (("authorization", f"Bearer {ALICE}"),)
    alice.kernel(architecture_id, X)  # compiled before the race below starts
    held = HeldStream(tenants_server.target, architecture_id, token)
    try:
        deadline = time.monotonic() + WAIT_SECONDS
        while True:  # until the stream holds alice's slot
            if held.call.done():  # it lost the race to one of her calls and was refused
                held = HeldStream(tenants_server.target, architecture_id, token)
            try:
                alice.kernel(architecture_id, X)
            except errors.ResourceExhaustedError as e:
                refused = e
                break
            assert time.monotonic() < deadline, "alice was never at her limit"
            time.sleep(0.05)
        assert "--max-jobs-per-tenant 1" in refused.message
        assert refused.retry_delay == 1.0
        assert bob.kernel(architecture_id, X).shape == (6, 6)
    finally:
        held.cancel()
    assert alice.kernel(architecture_id, X).shape == (6, 6)  # her slot was given back


def test_deleting_a_shared_network_leaves_it_to_the_other(alice: Client, bob: Client) -> None:
    shared = _net(1.5)
    shared_id = alice.register(shared)
    assert bob.register(shared) == shared_id
    expected = alice.kernel(shared_id, X)  # compiled, cached by id on the server
    alice.delete_architecture(shared_id)
    assert shared_id not in _ids(alice)
    with pytest.raises(errors.NotFoundError):
        alice.kernel(shared_id, X)
    assert shared_id in _ids(bob)
    assert bob.get_architecture(shared_id).id == shared_id
    np.testing.assert_array_equal(bob.kernel(shared_id, X), expected)
    streamed = bob.kernel(shared_id, X, tile=4, progress=False)
    np.testing.assert_allclose(streamed, expected, rtol=1e-6, atol=1e-6)
    # Registering it again gives alice her own registration back.
    assert alice.register(shared) == shared_id and shared_id in _ids(alice)


# -- the registry file: migration of the first schema (no tenant column) --------------------

_V1_TABLE = """
CREATE TABLE IF NOT EXISTS architectures (
    id          TEXT PRIMARY KEY,
    canonical   BLOB NOT NULL,
    create_time REAL NOT NULL
)
"""


def _v1_file(path: Path, rows: list[tuple[str, bytes | None, float]], table: str) -> None:
    """A registry file as the first schema's server left it (WAL, committed rows)."""
    db = sqlite3.connect(path)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute(table)
    db.executemany("INSERT INTO architectures VALUES (?, ?, ?)", rows)
    db.commit()
    db.close()


def test_a_first_schema_registry_is_migrated_on_open(tmp_path: Path) -> None:
    path = tmp_path / "registry.sqlite3"
    a, b = proto_of(_net(2.0)), proto_of(_net(3.0))
    rows = [("id-a", a.SerializeToString(), 100.0), ("id-b", b.SerializeToString(), 50.0)]
    _v1_file(path, rows, _V1_TABLE)
    registry = Registry(path)
    try:
        listed = registry.list(DEFAULT_TENANT)  # every old row: the no-token tenant's
        assert [(r.id, r.create_time) for r in listed] == [("id-b", 50.0), ("id-a", 100.0)]
        assert listed[1].architecture == a and listed[0].architecture == b
        assert registry.list("alice") == []
        assert registry.get("alice", "id-a") is None
        assert registry.holds(DEFAULT_TENANT, "id-a") and not registry.holds("alice", "id-a")
        assert registry.put("alice", "id-a", a)[0]  # alice's own row, beside the old one
        assert registry.known("alice", "id-a")
        assert registry.put(DEFAULT_TENANT, "id-a", a) == (False, 100.0)
        assert registry.delete(DEFAULT_TENANT, "id-a") and registry.anyone_holds("id-a")
        assert not registry.known(DEFAULT_TENANT, "id-a")
        assert not registry.holds(DEFAULT_TENANT, "id-a")
    finally:
        registry.close()
    reopened = Registry(path)  # a migrated file opens as it is
    try:
        assert [r.id for r in reopened.list(DEFAULT_TENANT)] == ["id-b"]
        assert [r.id for r in reopened.list("alice")] == ["id-a"]
    finally:
        reopened.close()
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION


def test_a_migration_that_fails_leaves_the_file_as_it_was(tmp_path: Path) -> None:
    """One transaction: a row the new table refuses (a NULL the first schema's own table
    would have refused too) rolls everything back."""
    path = tmp_path / "registry.sqlite3"
    loose = "CREATE TABLE architectures (id TEXT PRIMARY KEY, canonical BLOB, create_time REAL)"
    _v1_file(path, [("id-a", b"", 1.0), ("id-b", None, 2.0)], loose)
    with pytest.raises(sqlite3.IntegrityError):
        Registry(path)
    with sqlite3.connect(path) as db:
        columns = [r[1] for r in db.execute("PRAGMA table_info(architectures)")]
        assert columns == ["id", "canonical", "create_time"]
        assert db.execute("SELECT count(*) FROM architectures").fetchone()[0] == 2
        assert db.execute("PRAGMA user_version").fetchone()[0] == 0


def test_what_this_process_knows_is_only_a_cache(tmp_path: Path) -> None:
    """A registration made through another registry on the same file (another process) is
    found: `known` caches yes-answers only, and `holds` asks the file on a miss."""
    path = tmp_path / "registry.sqlite3"
    first, second = Registry(path), Registry(path)
    try:
        assert not second.holds("bob", "id-x")
        first.put("bob", "id-x", proto_of(_net(4.0)))
        assert not second.known("bob", "id-x")
        assert second.holds("bob", "id-x") and second.known("bob", "id-x")
        assert not second.holds("alice", "id-x")
    finally:
        first.close()
        second.close()


def test_a_later_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "registry.sqlite3"
    with sqlite3.connect(path) as db:
        db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    with pytest.raises(RuntimeError, match="run a newer ntkserve"):
        Registry(path)
