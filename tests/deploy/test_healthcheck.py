"""The image's health check (deploy/healthcheck.py) against a real gRPC health server:
serving status, nothing listening, a wildcard host, TLS, and run as a program."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import ModuleType

import grpc
import pytest
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from tests.deploy.support import DEPLOY, SERVICE


def _healthcheck() -> ModuleType:
    spec = importlib.util.spec_from_file_location("ntkserve_healthcheck", DEPLOY / "healthcheck.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture()
def health_server() -> Iterator[tuple[int, health.HealthServicer]]:
    """A plaintext gRPC server with only the health service, on a free loopback port."""
    server = grpc.server(ThreadPoolExecutor(max_workers=2))
    servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield port, servicer
    server.stop(None)


def _env_for(port: int, **extra: str) -> dict[str, str]:
    return {"NTKSERVE_HOST": "0.0.0.0", "NTKSERVE_PORT": str(port), **extra}


def test_healthcheck_follows_the_serving_status(
    health_server: tuple[int, health.HealthServicer],
) -> None:
    port, servicer = health_server
    check = _healthcheck().main
    env = _env_for(port)
    servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    servicer.set(SERVICE, health_pb2.HealthCheckResponse.SERVING)
    assert check([], env) == 0
    assert check([SERVICE], env) == 0
    servicer.set(SERVICE, health_pb2.HealthCheckResponse.NOT_SERVING)  # draining
    assert check([SERVICE], env) == 1
    assert check(["no.such.Service"], env) == 1
    assert check(["--help"], env) == 2


def test_healthcheck_fails_when_nothing_listens(
    health_server: tuple[int, health.HealthServicer],
) -> None:
    port, _ = health_server
    check = _healthcheck().main
    assert check([], _env_for(port, NTKSERVE_PORT="1", NTKSERVE_HEALTHCHECK_TIMEOUT="1")) == 1


def test_healthcheck_dials_loopback_for_a_wildcard_host() -> None:
    target = _healthcheck().target
    assert target({"NTKSERVE_HOST": "0.0.0.0", "NTKSERVE_PORT": "7"}) == "127.0.0.1:7"
    assert target({"NTKSERVE_HOST": "[::]"}) == "127.0.0.1:50051"
    assert target({"NTKSERVE_HOST": "10.1.2.3", "NTKSERVE_PORT": "7"}) == "10.1.2.3:7"
    assert target({"NTKSERVE_HOST": "::1", "NTKSERVE_PORT": "7"}) == "[::1]:7"


def _self_signed(tmp: Path) -> tuple[Path, Path]:
    """A self-signed certificate for localhost and its key, as PEM files."""
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp / "tls.crt", tmp / "tls.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


def test_healthcheck_speaks_tls_where_the_kubelet_cannot(tmp_path: Path) -> None:
    """Why components/tls swaps the native gRPC probes for ntkserve-healthcheck: a
    plaintext health check (what the kubelet sends) fails against a TLS port."""
    cert, key = _self_signed(tmp_path)
    server = grpc.server(ThreadPoolExecutor(max_workers=2))
    servicer = health.HealthServicer()
    servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    credentials = grpc.ssl_server_credentials([(key.read_bytes(), cert.read_bytes())])
    port = server.add_secure_port("127.0.0.1:0", credentials)
    server.start()
    try:
        check = _healthcheck().main
        plaintext = _env_for(port, NTKSERVE_HEALTHCHECK_TIMEOUT="2")
        assert check([], plaintext) == 1
        assert check([], {**plaintext, "NTKSERVE_TLS_CERT": str(cert)}) == 0
        wrong_name = {**plaintext, "NTKSERVE_TLS_CERT": str(cert)}
        wrong_name["NTKSERVE_HEALTHCHECK_SERVER_NAME"] = "elsewhere.example"
        assert check([], wrong_name) == 1
    finally:
        server.stop(None)


def test_healthcheck_runs_as_a_program(
    health_server: tuple[int, health.HealthServicer],
) -> None:
    """As the image runs it: a script on PATH whose exit status is the verdict."""
    port, servicer = health_server
    servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    env = {**os.environ, **_env_for(port)}
    script = str(DEPLOY / "healthcheck.py")
    result = subprocess.run(
        [sys.executable, script], env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SERVING" in result.stdout
    assert (DEPLOY / "healthcheck.py").read_text().startswith("#!/usr/bin/env python3\n")
