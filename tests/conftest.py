"""Shared fixtures: a real `ntkserve serve` process on a free loopback port (the harness is
`ntkserve_server.testing`, which the benchmarks use too)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from ntkserve_server.testing import ServerProcess

__all__ = ["HeldStream", "ServerProcess"]


class HeldStream:
    """A StreamKernel call that sends nothing until cancelled: it holds one of the server's
    running slots (and its tenant's) for as long as a test needs."""

    def __init__(self, target: str, metadata: tuple[tuple[str, str], ...] = ()) -> None:
        import grpc
        from ntkserve.v1 import kernel_service_pb2_grpc

        self._release = threading.Event()
        self._channel = grpc.insecure_channel(target)
        stub = kernel_service_pb2_grpc.KernelServiceStub(self._channel)
        self.call = stub.StreamKernel(self._nothing(), timeout=30, metadata=metadata)

    def _nothing(self) -> Iterator[Any]:
        self._release.wait(30)
        return
        yield

    def cancel(self) -> None:
        self.call.cancel()
        self._release.set()
        self._channel.close()

    def __enter__(self) -> HeldStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.cancel()


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """One server shared by the tests that only need a server, not a fresh one."""
    proc = ServerProcess(tmp_path_factory.mktemp("server-data"))
    yield proc
    proc.terminate()


@pytest.fixture()
def start_server(tmp_path: Path) -> Iterator[type[ServerProcess]]:
    """Starts servers the test owns (restarts, signals); all are stopped afterwards."""
    started: list[ServerProcess] = []

    class Owned(ServerProcess):
        def __init__(self, data_dir: Path | None = None, *extra: str) -> None:
            super().__init__(data_dir or tmp_path / "data", *extra)
            started.append(self)

    yield Owned
    for proc in started:
        proc.kill()
