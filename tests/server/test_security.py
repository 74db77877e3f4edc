"""Bearer tokens, the loopback-only rule and (mutual) TLS, against real server processes.

Two servers serve every test here: `locked` (tokens + TLS + client certificates) and
`open_tls` (0.0.0.0 with --insecure, TLS without client certificates). Certificates are
made at test time, with SANs for localhost and 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import ipaddress
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from ntkserve import Client, errors, stax
from ntkserve_server import auth

from tests.conftest import ServerProcess

ALICE = "alice-token-0123456789abcdef"
BOB = "bob-token-fedcba9876543210"
WRONG = "not-a-token-of-anyone-000000"
ARCH = stax.serial(stax.Dense(8), stax.Relu(), stax.Dense(1))
X = np.random.default_rng(0).standard_normal((10, 3)).astype(np.float32)


# -- certificates --------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Issued:
    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey

    @property
    def cert_pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    @property
    def key_pem(self) -> bytes:
        return self.key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )


def _issue(name: str, issuer: Issued | None, *, server: bool = False) -> Issued:
    """A CA (issuer None: self-signed) or a leaf certificate signed by `issuer`."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject if issuer is None else issuer.cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=issuer is None, path_length=None), critical=True)
    )
    if issuer is not None:
        usage = ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH
        builder = builder.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    if server:
        names: list[x509.GeneralName] = [
            x509.DNSName("localhost"),
            x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
        ]
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    signer = key if issuer is None else issuer.key
    return Issued(builder.sign(signer, hashes.SHA256()), key)


@dataclasses.dataclass(frozen=True)
class Pki:
    dir: Path
    server_ca: Issued
    client: Issued  # signed by the client CA the locked server trusts
    stranger: Issued  # a client certificate signed by a CA nobody trusts

    def path(self, name: str) -> str:
        return str(self.dir / name)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    d = tmp_path_factory.mktemp("pki")
    server_ca = _issue("test server CA", None)
    client_ca = _issue("test client CA", None)
    server_cert = _issue("localhost", server_ca, server=True)
    files = {
        "server.pem": server_cert.cert_pem,
        "server.key": server_cert.key_pem,
        "client-ca.pem": client_ca.cert_pem,
        "tokens.txt": f"# lab tokens\n\n{ALICE} alice\n  {BOB}   bob  \n".encode(),
    }
    for name, data in files.items():
        (d / name).write_bytes(data)
    stranger = _issue("stranger", _issue("other CA", None))
    return Pki(d, server_ca, _issue("client", client_ca), stranger)


# -- servers -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def locked(pki: Pki, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """Tokens + TLS + client certificates."""
    proc = ServerProcess(
        tmp_path_factory.mktemp("locked-data"),
        *("--auth-tokens", pki.path("tokens.txt")),
        *("--tls-cert", pki.path("server.pem"), "--tls-key", pki.path("server.key")),
        *("--tls-client-ca", pki.path("client-ca.pem")),
    )
    yield proc
    proc.terminate()


@pytest.fixture(scope="module")
def open_tls(pki: Pki, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """0.0.0.0 with --insecure, TLS without client certificates; yields a 127.0.0.1 target."""
    proc = ServerProcess(
        tmp_path_factory.mktemp("open-data"),
        *("--host", "0.0.0.0", "--insecure"),
        *("--tls-cert", pki.path("server.pem"), "--tls-key", pki.path("server.key")),
    )
    assert proc.target.startswith("0.0.0.0:")
    assert proc.wait_for_log("--insecure") and "WARNING" in proc.log_text()
    yield "127.0.0.1:" + proc.target.rsplit(":", 1)[1]
    proc.terminate()


def _client(target: str, pki: Pki, token: str | None, cert: Issued | None = None) -> Client:
    cert = cert or pki.client
    return Client(
        target,
        token=token,
        root_certificates=pki.server_ca.cert_pem,
        client_certificate=cert.cert_pem,
        client_key=cert.key_pem,
        timeout=30,
    )


@pytest.fixture(scope="module")
def arch_id(locked: ServerProcess, pki: Pki) -> str:
    with _client(locked.target, pki, ALICE) as c:
        return c.register(ARCH)


def _tls_channel(target: str, pki: Pki) -> grpc.Channel:
    creds = grpc.ssl_channel_credentials(
        pki.server_ca.cert_pem, pki.client.key_pem, pki.client.cert_pem
    )
    return grpc.secure_channel(target, creds)


# -- tokens --------------------------------------------------------------------------------


@pytest.mark.parametrize("token", [None, WRONG], ids=["no-token", "wrong-token"])
def test_every_kind_of_call_needs_a_valid_token(
    locked: ServerProcess, pki: Pki, arch_id: str, token: str | None
) -> None:
    """Unary, streamed and batched calls are refused before they run; the token is never
    echoed, and the message says what to send."""
    calls = {
        "ComputeKernel": lambda c: c.kernel(arch_id, X),
        "StreamKernel": lambda c: c.kernel(arch_id, X, tile=4, progress=False),
        "ComputeKernelBatch": lambda c: c.kernel_batch(arch_id, [(X, None), (X[:3], X)]),
        "ListArchitectures": lambda c: c.list_architectures(),
    }
    with _client(locked.target, pki, token) as c:
        for name, call in calls.items():
            with pytest.raises(errors.UnauthenticatedError) as raised:
                call(c)
            message = raised.value.message
            assert "authorization: Bearer <token>" in message, name
            assert WRONG not in message, name
    assert locked.wait_for_log(
        "method=/ntkserve.v1.KernelService/StreamKernel code=UNAUTHENTICATED"
    )


def test_both_tenants_tokens_work_for_every_kind_of_call(
    locked: ServerProcess, pki: Pki, arch_id: str
) -> None:
    with _client(locked.target, pki, ALICE) as alice, _client(locked.target, pki, BOB) as bob:
        whole = alice.kernel(ARCH, X)
        # By spec: arch_id is alice's registration, which bob does not see (test_tenants.py).
        streamed = bob.kernel(ARCH, X, tile=4, progress=False)
        assert bob.last_stream is not None and bob.last_stream.tiles > 1
        batch = alice.kernel_batch(arch_id, [(X, None), (X[:3], X)])
    np.testing.assert_allclose(streamed, whole, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(batch[0], whole, rtol=1e-6, atol=1e-6)
    assert batch[1].shape == (3, 10)


def test_a_non_bearer_authorization_is_refused(locked: ServerProcess, pki: Pki) -> None:
    from ntkserve.v1 import kernel_service_pb2, kernel_service_pb2_grpc

    with _tls_channel(locked.target, pki) as channel:
        stub = kernel_service_pb2_grpc.KernelServiceStub(channel)
        with pytest.raises(grpc.RpcError) as raised:
            stub.ListArchitectures(
                kernel_service_pb2.ListArchitecturesRequest(),
                metadata=(("authorization", f"Basic {ALICE}"),),
                timeout=30,
            )
    assert raised.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert "not a bearer token" in raised.value.details()
    assert ALICE not in raised.value.details()


def test_health_and_reflection_need_no_token(locked: ServerProcess, pki: Pki) -> None:
    with _tls_channel(locked.target, pki) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        status = health.Check(health_pb2.HealthCheckRequest(service=""), timeout=30).status
        assert status == health_pb2.HealthCheckResponse.SERVING
        reflect = reflection_pb2_grpc.ServerReflectionStub(channel)
        request = reflection_pb2.ServerReflectionRequest(list_services="")
        (answer,) = list(reflect.ServerReflectionInfo(iter([request]), timeout=30))
    names = {s.name for s in answer.list_services_response.service}
    assert "ntkserve.v1.KernelService" in names


# -- TLS -----------------------------------------------------------------------------------


def test_mutual_tls_needs_a_certificate_from_the_client_ca(locked: ServerProcess, pki: Pki) -> None:
    stranger = _client(locked.target, pki, ALICE, cert=pki.stranger)
    with stranger, pytest.raises(errors.UnavailableError):
        stranger.list_architectures()
    no_cert = Client(
        locked.target, token=ALICE, root_certificates=pki.server_ca.cert_pem, timeout=30
    )
    with no_cert, pytest.raises(errors.UnavailableError):
        no_cert.list_architectures()
    plain = Client(locked.target, token=ALICE, timeout=30)
    with plain, pytest.raises(errors.UnavailableError):
        plain.list_architectures()


def test_tls_without_client_certificates(open_tls: str, pki: Pki) -> None:
    with Client(open_tls, root_certificates=pki.server_ca.cert_pem, timeout=30) as c:
        np.testing.assert_array_equal(c.kernel(ARCH, X).shape, (10, 10))
    with Client(open_tls, timeout=30) as plain, pytest.raises(errors.UnavailableError):
        plain.list_architectures()


def test_client_certificate_and_key_go_together(pki: Pki) -> None:
    with pytest.raises(ValueError, match="together"):
        Client("127.0.0.1:1", client_certificate=pki.client.cert_pem)


# -- start-up rules ------------------------------------------------------------------------


def _serve(tmp_path: Path, *flags: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "ntkserve_server", "serve", "--port", "0"]
    command += ["--data-dir", str(tmp_path / "data"), *flags]
    return subprocess.run(command, capture_output=True, text=True, timeout=120)


def test_start_up_refusals(tmp_path: Path) -> None:
    """A non-loopback host without tokens, and a malformed token file, stop the server at
    start-up with a message that says what to do."""
    out = _serve(tmp_path, "--host", "0.0.0.0")
    assert out.returncode != 0
    assert "--auth-tokens" in out.stderr and "--insecure" in out.stderr
    bad = tmp_path / "tokens.txt"
    bad.write_text(f"# ok\n{ALICE} alice\n{BOB}\n")
    out = _serve(tmp_path, "--auth-tokens", str(bad))
    assert out.returncode != 0
    assert f"{bad}:3: expected 'TOKEN TENANT'" in out.stderr
    assert BOB not in out.stderr


def test_without_tokens_the_server_says_loopback_only(server: ServerProcess) -> None:
    assert server.wait_for_log("no --auth-tokens: loopback only")


# -- in-process: the token table and the tenant a handler sees ------------------------------


def test_token_file_rules() -> None:
    table = auth.parse_tokens(f"# c\n\n{ALICE} alice\n{BOB} bob\n", "f")
    assert table.tenants == ["alice", "bob"]
    assert table.tenant_for(BOB) == "bob" and table.tenant_for(WRONG) is None
    for text, message in [
        (f"{ALICE} alice extra\n", "f:1: expected 'TOKEN TENANT'"),
        ("short alice\n", "f:1: the token is shorter than 16"),
        (f"{ALICE} al/ice\n", "f:1: tenant name 'al/ice'"),
        (f"{ALICE} alice\n{ALICE} bob\n", "f:2: the same token as line 1"),
        ("# nothing\n", "f: no tokens"),
    ]:
        with pytest.raises(auth.TokenFileError) as raised:
            auth.parse_tokens(text, "f")
        assert message in str(raised.value)
        assert ALICE not in str(raised.value)


def test_handlers_see_the_tenant_of_their_own_call() -> None:
    async def scenario() -> list[bytes]:
        async def who(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
            await asyncio.sleep(0.01)  # calls overlap: each must keep its own tenant
            return str(auth.current_tenant()).encode()

        async def who_stream(
            request: bytes, context: grpc.aio.ServicerContext
        ) -> AsyncIterator[bytes]:
            for _ in range(2):
                await asyncio.sleep(0.01)
                yield str(auth.current_tenant()).encode()

        table = auth.TokenTable.from_pairs([(ALICE, "alice"), (BOB, "bob")])
        server = grpc.aio.server(interceptors=[auth.BearerTokenInterceptor(table)])
        handlers = {
            "Who": grpc.unary_unary_rpc_method_handler(who),
            "WhoStream": grpc.unary_stream_rpc_method_handler(who_stream),
        }
        server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("t.T", handlers),))
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        try:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:

                def bearer(token: str) -> tuple[tuple[str, str], ...]:
                    return (("authorization", f"Bearer {token}"),)

                unary = channel.unary_unary("/t.T/Who")
                stream = channel.unary_stream("/t.T/WhoStream")
                answers: list[bytes] = list(
                    await asyncio.gather(
                        *(unary(b"", metadata=bearer(t)) for t in (ALICE, BOB, ALICE, BOB))
                    )
                )
                answers += [m async for m in stream(b"", metadata=bearer(BOB))]
                with pytest.raises(grpc.aio.AioRpcError) as raised:
                    await unary(b"", metadata=bearer(WRONG))
                assert raised.value.code() == grpc.StatusCode.UNAUTHENTICATED
                return answers
        finally:
            await server.stop(None)

    assert asyncio.run(scenario()) == [b"alice", b"bob", b"alice", b"bob", b"bob", b"bob"]
