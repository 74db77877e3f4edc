"""What operators see: request ids in log lines, errors and trailers; Prometheus metrics.

One real server process with `--metrics-port 0 --log-format json`; the tests scrape its
/metrics over HTTP and read its JSON log lines.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import grpc
import numpy as np
import pytest
from ntkserve import Client, errors, stax
from ntkserve.v1 import kernel_service_pb2 as ks
from ntkserve.v1 import kernel_service_pb2_grpc

from tests.conftest import HeldStream, ServerProcess, jobs_running, metric, scrape, wait_until

NET = stax.serial(stax.Dense(8, b_std=0.1), stax.Relu(), stax.Dense(1))
X = np.random.default_rng(0).standard_normal((5, 3)).astype(np.float32)


@pytest.fixture(scope="module")
def observed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    proc = ServerProcess(
        tmp_path_factory.mktemp("observed-data"), "--metrics-port=0", "--log-format=json"
    )
    yield proc
    proc.terminate()


@pytest.fixture(scope="module")
def client(observed: ServerProcess) -> Iterator[Client]:
    with Client(observed.target, timeout=60) as c:
        yield c


def _log_entries(server: ServerProcess) -> list[dict[str, Any]]:
    return [json.loads(x) for x in server.log_text().splitlines() if x.startswith("{")]


def _call_entry(server: ServerProcess, request_id: str) -> dict[str, Any]:
    """The call line logged under `request_id` (waits for the stderr reader)."""
    assert server.wait_for_log(f'"request_id": "{request_id}"')
    entries = [e for e in _log_entries(server) if e.get("request_id") == request_id]
    assert len(entries) == 1, entries
    return entries[0]


def test_device_memory_is_not_preallocated(observed: ServerProcess) -> None:
    """A shared GPU hosts other jobs too: the start-up line says jax allocates as needed."""
    assert observed.wait_for_log("device memory preallocate=false")


def test_a_request_id_sent_is_logged_and_echoed(observed: ServerProcess, client: Client) -> None:
    with client.request_id("job-42.a"):
        k = client.kernel(NET, X)
        with pytest.raises(errors.NotFoundError) as raised:
            client.kernel("0" * 32, X)
    assert k.shape == (5, 5)
    error = raised.value
    assert error.request_id == "job-42.a" and "(request id job-42.a)" in error.message
    assert observed.wait_for_log('"code": "NOT_FOUND"')
    entries = [e for e in _log_entries(observed) if e.get("request_id") == "job-42.a"]
    codes = {(e["method"], e["code"]) for e in entries}
    assert ("ComputeKernel", "OK") in codes and ("ComputeKernel", "NOT_FOUND") in codes
    assert all(e["level"] == "INFO" and e["ms"] >= 0 for e in entries)


def test_without_one_the_server_makes_one(observed: ServerProcess, client: Client) -> None:
    with pytest.raises(errors.InvalidArgumentError) as raised:
        client.kernel(NET, np.full((2, 3), np.nan))
    error = raised.value
    assert error.request_id and re.fullmatch(r"[0-9a-f]{16}", error.request_id)
    assert error.request_id in error.message
    assert [f for f, _ in error.field_violations] == ["x1"]
    entry = _call_entry(observed, error.request_id)
    assert (entry["method"], entry["code"]) == ("ComputeKernel", "INVALID_ARGUMENT")


def test_a_streamed_call_carries_its_request_id(observed: ServerProcess, client: Client) -> None:
    # Registered first, so the stream is the only call under its id, whichever test of this
    # file ran before (in CI the RegisterArchitecture call was logged under it once).
    client.register(NET)
    with client.request_id("stream-7"):
        k = client.kernel(NET, X, tile=2, progress=False)
    assert k.shape == (5, 5)
    entry = _call_entry(observed, "stream-7")
    assert (entry["method"], entry["code"], entry["tiles"]) == ("StreamKernel", "OK", "6/6")


def test_a_malformed_request_id_is_refused(observed: ServerProcess) -> None:
    with pytest.raises(ValueError, match="request_id"):
        Client.request_id("two words")
    with grpc.insecure_channel(observed.target) as channel:
        stub = kernel_service_pb2_grpc.KernelServiceStub(channel)
        with pytest.raises(grpc.RpcError) as raised:
            stub.ListArchitectures(
                ks.ListArchitecturesRequest(),
                metadata=(("x-request-id", "a code=OK forged=1"),),
                timeout=30,
            )
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "metadata x-request-id" in raised.value.details()
    assert "forged" not in raised.value.details()


def test_metrics_count_calls_compilations_and_tiles(
    observed: ServerProcess, client: Client
) -> None:
    net = stax.serial(stax.Dense(4), stax.Erf(), stax.Dense(1))  # a topology new to the server
    before = scrape(observed)
    client.kernel(net, X)
    client.kernel(net, X)
    with pytest.raises(errors.NotFoundError):
        client.kernel("1" * 32, X)
    client.kernel(net, X, tile=2, progress=False)  # 3 x 3 tiles, 6 of them computed
    after = scrape(observed)

    def grew(name: str, **labels: str) -> float:
        return metric(after, name, **labels) - metric(before, name, **labels)

    assert grew("ntkserve_calls_total", method="ComputeKernel", code="OK") == 2
    assert grew("ntkserve_calls_total", method="ComputeKernel", code="NOT_FOUND") == 1
    assert grew("ntkserve_calls_total", method="StreamKernel", code="OK") == 1
    assert grew("ntkserve_call_seconds_count", method="ComputeKernel") == 3
    assert grew("ntkserve_compile_cache_misses_total", cache="topology") == 1
    assert grew("ntkserve_compile_cache_hits_total", cache="topology") >= 2
    assert grew("ntkserve_xla_compile_seconds_count") >= 1
    assert grew("ntkserve_xla_compile_seconds_sum") > 0
    assert grew("ntkserve_tiles_computed_total", device="0") == 6
    assert metric(after, "ntkserve_jobs_running") == 0
    assert metric(after, "ntkserve_queue_depth") == 0


def test_metrics_show_a_running_job(observed: ServerProcess, client: Client) -> None:
    """A stream that holds its slot is a running job until it ends."""
    with HeldStream(observed.target, client.register(NET)):
        wait_until(lambda: jobs_running(observed) == 1, "the held stream shows as running")
    wait_until(lambda: jobs_running(observed) == 0, "the cancelled stream stops showing")
