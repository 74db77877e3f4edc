"""The server's limits: tensor elements, unary kernel entries, running and queued compute
calls (RESOURCE_EXHAUSTED, with RetryInfo where waiting helps), on one server with tiny ones."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import grpc
import numpy as np
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from ntkserve import Client, errors, stax, tensor
from ntkserve.v1 import kernel_service_pb2 as ks
from ntkserve.v1 import kernel_service_pb2_grpc
from ntkserve_server.admission import Admission, Busy

from tests.conftest import WAIT_SECONDS, HeldStream, ServerProcess, jobs_running, wait_until

NET = stax.serial(stax.Dense(16, b_std=0.1), stax.Relu(), stax.Dense(1))


@pytest.fixture(scope="module")
def limited(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    proc = ServerProcess(
        tmp_path_factory.mktemp("limits-data"),
        "--max-tensor-elements=1000",
        "--max-unary-kernel-entries=500",
        "--max-concurrent-jobs=1",
        "--max-queue=1",
        "--batch-window-ms=0",
        "--metrics-port=0",  # ntkserve_jobs_running says when a held stream has its slot
    )
    yield proc
    proc.terminate()


@pytest.fixture(scope="module")
def channel(limited: ServerProcess) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(limited.target) as ch:
        yield ch


@pytest.fixture(scope="module")
def stub(channel: grpc.Channel) -> kernel_service_pb2_grpc.KernelServiceStub:
    return kernel_service_pb2_grpc.KernelServiceStub(channel)


@pytest.fixture(scope="module")
def arch_id(stub: kernel_service_pb2_grpc.KernelServiceStub) -> str:
    request = ks.RegisterArchitectureRequest(architecture=NET.to_proto())
    return str(stub.RegisterArchitecture(request).architecture_id)


def _x(rows: int) -> Any:
    return np.random.default_rng(rows).standard_normal((rows, 4))


def _kernel(arch_id: str, rows: int) -> ks.ComputeKernelRequest:
    return ks.ComputeKernelRequest(architecture_id=arch_id, x1=tensor.encode(_x(rows), "x1"))


def _exhausted(call: Any, request: Any) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as info:
        call(request, timeout=30)
    assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, info.value.details()
    return info.value


def _retry_seconds(error: grpc.RpcError) -> float | None:
    status = rpc_status.from_call(error)  # type: ignore[arg-type]
    if status is None:
        return None
    for detail in status.details:
        info = error_details_pb2.RetryInfo()
        if detail.Unpack(info):
            return float(info.retry_delay.ToNanoseconds()) / 1e9
    return None


def test_tensor_over_the_element_limit(stub: Any, arch_id: str) -> None:
    error = _exhausted(stub.ComputeKernel, _kernel(arch_id, 300))  # 1200 elements
    assert "x1" in error.details() and "1200" in error.details() and "1000" in error.details()
    assert _retry_seconds(error) is None  # waiting does not help
    request = ks.ComputeValueAndGradRequest(
        architecture_id=arch_id,
        x1=tensor.encode(_x(2), "x1"),
        ntk_cotangent=tensor.encode(np.ones((40, 40)), "ntk_cotangent"),
    )
    assert "ntk_cotangent" in _exhausted(stub.ComputeValueAndGrad, request).details()


def test_kernel_over_the_entry_limit_says_to_stream(stub: Any, arch_id: str) -> None:
    error = _exhausted(stub.ComputeKernel, _kernel(arch_id, 30))  # 900 entries
    assert "900" in error.details() and "StreamKernel" in error.details()
    batch = ks.ComputeKernelBatchRequest(requests=[_kernel(arch_id, 20), _kernel(arch_id, 20)])
    assert "batch" in _exhausted(stub.ComputeKernelBatch, batch).details()  # 400 + 400
    small = stub.ComputeKernel(_kernel(arch_id, 20), timeout=30)
    assert tensor.decode(small.ntk, "ntk").shape == (20, 20)


def test_big_kernels_still_stream(limited: ServerProcess, stub: Any, arch_id: str) -> None:
    with Client(limited.target, timeout=60) as client:
        k = np.asarray(client.kernel(NET, _x(30), tile=16))
    assert k.shape == (30, 30)
    part = stub.ComputeKernel(
        ks.ComputeKernelRequest(architecture_id=arch_id, x1=tensor.encode(_x(30)[:20], "x1")),
        timeout=30,
    )
    np.testing.assert_allclose(k[:20, :20], tensor.decode(part.ntk, "ntk"), rtol=1e-6)


def test_a_burst_past_the_queue_is_refused_with_retry_info(
    limited: ServerProcess, stub: Any, arch_id: str
) -> None:
    held = HeldStream(limited.target, arch_id)  # the one running slot
    try:
        wait_until(lambda: jobs_running(limited) == 1, "the held stream takes the running slot")
        with ThreadPoolExecutor(9) as pool:
            futures = [
                pool.submit(stub.ComputeKernel, _kernel(arch_id, 8), timeout=WAIT_SECONDS)
                for _ in range(9)
            ]
            wait_until(lambda: sum(f.done() for f in futures) >= 8, "eight calls are refused")
            refused = [f for f in futures if f.done()]
            assert len(refused) == 8  # one queued behind the held stream, eight refused at once
            for future in refused:
                error = future.exception()
                assert isinstance(error, grpc.RpcError)
                assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
                assert "--max-queue" in error.details()
                assert _retry_seconds(error) == 1.0
            with Client(limited.target, timeout=30) as client:  # the client reads RetryInfo
                with pytest.raises(errors.ResourceExhaustedError) as raised:
                    client.kernel(arch_id, _x(8))
                assert raised.value.retry_delay == 1.0
            held.cancel()  # its slot passes to the queued call, which now runs
            (queued,) = [f for f in futures if f not in refused]
            assert queued.result(timeout=30).HasField("ntk")
    finally:
        held.cancel()
    assert stub.ComputeKernel(_kernel(arch_id, 8), timeout=30).HasField("ntk")


def test_admission_per_tenant_and_cancelled_waiters() -> None:
    async def main() -> None:
        admission = Admission(max_running=1, max_queue=2, max_per_tenant=1)
        entered = asyncio.Event()
        leave = asyncio.Event()

        async def hold(tenant: str) -> None:
            async with admission.slot(tenant):
                entered.set()
                await leave.wait()

        first = asyncio.create_task(hold("a"))
        await entered.wait()
        with pytest.raises(Busy, match="--max-jobs-per-tenant 1"):
            async with admission.slot("a"):
                pass
        waiter = asyncio.create_task(hold("b"))
        await asyncio.sleep(0)
        assert admission.waiting == 1
        waiter.cancel()  # a waiter that leaves frees its place in the queue
        with pytest.raises(asyncio.CancelledError):
            await waiter
        assert admission.waiting == 0
        leave.set()
        await first
        assert admission.running == 0
        async with admission.slot("a"):
            assert admission.running == 1

    asyncio.run(main())


def test_limits_are_flags() -> None:
    from ntkserve_server import cli

    args = cli._parser().parse_args(
        ["serve", "--max-tensor-elements=7", "--max-queue=3", "--max-jobs-per-tenant=2"]
    )
    assert (args.max_tensor_elements, args.max_queue, args.max_jobs_per_tenant) == (7, 3, 2)
    assert args.max_concurrent_jobs is None and args.max_unary_kernel_entries == 1 << 26
