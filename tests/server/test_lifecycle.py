"""Server processes we own: persistence across restarts, health, reflection, graceful stop."""

from __future__ import annotations

import re
import threading
import time
from pathlib import Path
from typing import Any

import grpc
import numpy as np
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from ntkserve import Client, stax

ARCH = stax.serial(stax.Dense(32, W_std=1.2, b_std=0.1), stax.Erf(), stax.Dense(1))


def test_registration_survives_restart(start_server: Any) -> None:
    first = start_server()
    x = np.random.RandomState(0).randn(3, 4)
    with Client(first.target, timeout=60) as c:
        arch_id = c.register(ARCH)
        before = c.kernel(arch_id, x)
    assert first.terminate() == 0
    cache = first.data_dir / "jax-cache"
    compiled_before = {f.name for f in cache.iterdir()}
    assert compiled_before, "jax's persistent compilation cache lives in the data dir"
    second = start_server(first.data_dir)
    with Client(second.target, timeout=60) as c:
        assert [i.id for i in c.list_architectures()] == [arch_id]
        np.testing.assert_array_equal(c.kernel(arch_id, x), before)
    # The restarted server loaded its program from the cache: nothing new was compiled.
    assert {f.name for f in cache.iterdir()} == compiled_before


def test_servers_share_a_compile_cache(start_server: Any, tmp_path: Path) -> None:
    """--compile-cache DIR: programs go there, not to the data dir, and a second server
    (another data dir) loads them instead of compiling them again."""
    shared = tmp_path / "shared-cache"
    x = np.random.RandomState(1).randn(3, 4)
    first = start_server(tmp_path / "a", "--compile-cache", str(shared))
    with Client(first.target, timeout=60) as c:
        before = c.kernel(c.register(ARCH), x)
    assert first.terminate() == 0
    compiled_before = {f.name for f in shared.iterdir()}
    assert compiled_before and not (first.data_dir / "jax-cache").exists()
    second = start_server(tmp_path / "b", "--compile-cache", str(shared))
    with Client(second.target, timeout=60) as c:
        np.testing.assert_array_equal(c.kernel(c.register(ARCH), x), before)
    assert {f.name for f in shared.iterdir()} == compiled_before


def test_registration_survives_sigkill(start_server: Any) -> None:
    first = start_server()
    with Client(first.target, timeout=60) as c:
        arch_id = c.register(ARCH)  # acknowledged = committed
    first.kill()
    second = start_server(first.data_dir)
    with Client(second.target, timeout=60) as c:
        assert arch_id in [i.id for i in c.list_architectures()]


def test_health_and_reflection(server: Any) -> None:
    with grpc.insecure_channel(server.target) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        for service in ("", "ntkserve.v1.KernelService"):
            response = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=10)
            assert response.status == health_pb2.HealthCheckResponse.SERVING
        # What `grpcurl -plaintext HOST:PORT list` asks for.
        reflect = reflection_pb2_grpc.ServerReflectionStub(channel)
        request = reflection_pb2.ServerReflectionRequest(list_services="")
        (response,) = list(reflect.ServerReflectionInfo(iter([request]), timeout=10))
        names = {s.name for s in response.list_services_response.service}
        assert {"ntkserve.v1.KernelService", "grpc.health.v1.Health"} <= names
        # And `grpcurl describe`: the file descriptor of KernelService is served.
        request = reflection_pb2.ServerReflectionRequest(
            file_containing_symbol="ntkserve.v1.KernelService"
        )
        (response,) = list(reflect.ServerReflectionInfo(iter([request]), timeout=10))
        assert response.file_descriptor_response.file_descriptor_proto


def test_sigterm_drains_in_flight_calls(start_server: Any) -> None:
    proc = start_server(None, "--log-level", "DEBUG")
    x = np.random.RandomState(1).randn(1500, 200)  # float64: takes a moment on 2 cores
    results: dict[str, Any] = {}

    def long_call() -> None:
        with Client(proc.target, timeout=120) as c:
            try:
                results["k"] = c.kernel(ARCH, x, get=("nngp", "ntk"))
            except Exception as e:  # pragma: no cover - reported below
                results["error"] = e

    thread = threading.Thread(target=long_call)
    thread.start()
    deadline = time.monotonic() + 60
    started = re.compile(r"rpc start method=(ComputeKernel|StreamKernel)")  # unary or streamed
    while not started.search(proc.log_text()) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert proc.terminate() == 0
    thread.join(60)
    assert "error" not in results, (
        results.get("error"),
        [l for l in proc.log_text().splitlines() if "ntkserve" in l],
    )
    assert results["k"][0].shape == (1500, 1500)
    log = proc.log_text()
    match = started.search(log)
    assert match is not None
    assert log.index("shutting down") < log.index(f"rpc method={match.group(1)} code=OK")
