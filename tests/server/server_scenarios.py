"""Scenarios of server.build/start/stop, each run in a fresh interpreter by test_server.py.

Why a child process: building the whole server imports the KServe v2 messages (proto package
`inference`), and tritonclient, which test_kserve.py uses as an independent client, registers
messages of the same names in the same default descriptor pool; protobuf refuses the second
set. A pytest worker runs many files in one process, so the in-process build runs here.

    python -m tests.server.server_scenarios serves DATA_DIR
    python -m tests.server.server_scenarios port-in-use DATA_DIR
Each exits 0 when every check holds (an AssertionError's traceback otherwise).
"""

from __future__ import annotations

import asyncio
import socket
import sys
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from ntkserve.v1 import kernel_service_pb2 as ks
from ntkserve.v1 import kernel_service_pb2_grpc
from ntkserve_server import server
from ntkserve_server.config import ServerConfig


def _config(data_dir: Path, port: int = 0) -> ServerConfig:
    return ServerConfig(port=port, data_dir=data_dir, workers=1, grace_seconds=1.0)


def _nothing_listens(port: int) -> bool:
    """Whether a connection to the port is refused (binding it could still fail for a while:
    the closed connections linger in TIME_WAIT)."""
    with socket.socket() as s:
        try:
            s.connect(("127.0.0.1", port))
        except ConnectionRefusedError:
            return True
        return False


async def _serves(data_dir: Path) -> int:
    built = server.build(_config(data_dir))
    assert built.port > 0 and built.target == f"127.0.0.1:{built.port}"
    await server.start(built)
    async with grpc.aio.insecure_channel(built.target) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        for service in server.HEALTH_SERVICES:
            request = health_pb2.HealthCheckRequest(service=service)
            response = await health.Check(request, timeout=30)
            assert response.status == health_pb2.HealthCheckResponse.SERVING, service
        stub = kernel_service_pb2_grpc.KernelServiceStub(channel)
        listed = await stub.ListArchitectures(ks.ListArchitecturesRequest(), timeout=30)
        assert list(listed.records) == []
        try:
            await stub.GetArchitecture(ks.GetArchitectureRequest(architecture_id="0" * 32))
        except grpc.aio.AioRpcError as missing:
            assert missing.code() == grpc.StatusCode.NOT_FOUND, missing
        else:
            raise AssertionError("GetArchitecture of an unknown id succeeded")
    await server.stop(built)
    assert built.executor._shutdown  # the workers are gone
    return built.port


def serves(data_dir: Path) -> None:
    """A built server serves every service once started, stops, and frees its port."""
    port = asyncio.run(_serves(data_dir))
    assert (data_dir / "registry.sqlite3").exists()
    assert _nothing_listens(port)


def port_in_use(data_dir: Path) -> None:
    """A port in use is CannotListen, naming it."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        try:
            server.build(_config(data_dir, port))
        except server.CannotListen as e:
            assert f"cannot listen on 127.0.0.1:{port}" in str(e), e
        else:
            raise AssertionError("building on a port in use succeeded")


SCENARIOS = {"serves": serves, "port-in-use": port_in_use}  # test_server.py names them too

if __name__ == "__main__":
    SCENARIOS[sys.argv[1]](Path(sys.argv[2]))
    print("ok")
