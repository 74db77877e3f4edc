"""server.build/start/stop, in process: the assembled server binds a free port, serves every
service once started (health SERVING, KernelService answering), stops cleanly and frees its
port; a port in use is CannotListen. (`serve`, with its signals, is test_lifecycle's.)"""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import grpc
import pytest
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


def test_a_built_server_serves_once_started_and_frees_its_port_when_stopped(
    tmp_path: Path,
) -> None:
    async def main() -> int:
        built = server.build(_config(tmp_path / "data"))
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
            with pytest.raises(grpc.aio.AioRpcError) as missing:
                await stub.GetArchitecture(ks.GetArchitectureRequest(architecture_id="x"))
            assert missing.value.code() == grpc.StatusCode.NOT_FOUND
        await server.stop(built)
        assert built.executor._shutdown  # the workers are gone
        return built.port

    port = asyncio.run(main())
    assert (tmp_path / "data" / "registry.sqlite3").exists()
    assert _nothing_listens(port)


def test_a_port_in_use_is_cannot_listen(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]

        async def main() -> None:
            with pytest.raises(server.CannotListen, match=f"cannot listen on 127.0.0.1:{port}"):
                server.build(_config(tmp_path / "data", port))

        asyncio.run(main())
