"""The StreamKernel tests' server (test_streaming.py, test_streaming_errors.py), one per file.

It sees two CPU devices (XLA's host-platform device count), has a 64 MiB tile-memory budget
and a 1 MiB limit on streamed inputs, so the limits can be reached with small inputs.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import grpc
import pytest
from ntkserve import Client
from ntkserve.v1 import kernel_service_pb2_grpc

from tests.conftest import ServerProcess


@pytest.fixture(scope="module")
def stream_server(
    tmp_path_factory: pytest.TempPathFactory, _module_env: Any
) -> Iterator[ServerProcess]:
    _module_env.setenv("XLA_FLAGS", "--xla_force_host_platform_device_count=2")
    proc = ServerProcess(
        tmp_path_factory.mktemp("stream"),
        "--tile-memory-mb",
        "64",
        "--max-stream-input-mb",
        "1",
    )
    yield proc
    proc.kill()


@pytest.fixture(scope="module")
def _module_env() -> Iterator[pytest.MonkeyPatch]:
    with pytest.MonkeyPatch.context() as mp:
        yield mp


@pytest.fixture(scope="module")
def stream_client(stream_server: ServerProcess) -> Iterator[Client]:
    with Client(stream_server.target) as c:
        yield c


@pytest.fixture(scope="module")
def stream_stub(
    stream_server: ServerProcess,
) -> Iterator[kernel_service_pb2_grpc.KernelServiceStub]:
    with grpc.insecure_channel(stream_server.target) as channel:
        yield kernel_service_pb2_grpc.KernelServiceStub(channel)
