"""One gRPC channel per server target, and what the client knows about each one.

A `Client` talks to one or more replicas. Each `Endpoint` owns a channel, its stub, the
call options (deadline, auth metadata) and the ids of the architectures registered through
it: ids are content hashes, so the same network has the same id on every replica, but each
replica has to have been told about it before it can compute with it.

A target that names a gRPC resolver scheme ("dns:///name:port", "ipv4:10.0.0.1:50051,
10.0.0.2:50051", "ipv6:...") is one channel over several backends, balanced round robin, so
successive calls can land on different backends (a Kubernetes headless Service).
"""

from __future__ import annotations

import contextlib
import contextvars
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar

import grpc

from ntkserve import errors, request_ids
from ntkserve.spec import Architecture
from ntkserve.v1 import (
    architecture_pb2,
    kernel_service_pb2,
    kernel_service_pb2_grpc,
    model_service_pb2_grpc,
)

ArchLike = str | Architecture | architecture_pb2.Architecture
_R = TypeVar("_R")

MAX_MESSAGE_BYTES = 256 * 1024 * 1024
# Schemes whose resolver can return several addresses for one target string.
RESOLVER_SCHEMES = ("dns:", "ipv4:", "ipv6:")
# Concurrent calls a streamed job keeps open on a resolver target whose backend count the
# client cannot see (dns): enough to keep a handful of replicas busy.
RESOLVER_LANES = 4


_REQUEST_ID: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "ntkserve_request_id", default=None
)


def request_id(value: str) -> contextlib.AbstractContextManager[None]:
    """Sends `value` as the x-request-id of every call made inside the block (in this
    thread or context), so the server logs them under it and its errors echo it."""
    if not request_ids.is_valid(value):
        raise ValueError(f"request_id: must be {request_ids.RULE}, got {value!r}")
    return _request_id_block(value)


@contextlib.contextmanager
def _request_id_block(value: str) -> Iterator[None]:
    token = _REQUEST_ID.set(value)
    try:
        yield
    finally:
        _REQUEST_ID.reset(token)


def is_resolver_target(target: str) -> bool:
    """True for "dns:///...", "ipv4:a,b", "ipv6:..." targets: one channel, many backends."""
    return target.startswith(RESOLVER_SCHEMES)


def backend_count(target: str) -> int:
    """How many backends a target stands for, as far as the client can tell."""
    if target.startswith(("ipv4:", "ipv6:")):
        return max(1, len([a for a in target.split(":", 1)[1].split(",") if a]))
    if target.startswith("dns:"):
        return RESOLVER_LANES
    return 1


def normalize_targets(target: str | Sequence[str]) -> list[str]:
    """A list of targets from one string or a sequence of them; at least one."""
    targets = [target] if isinstance(target, str) else list(target)
    if not targets or not all(isinstance(t, str) and t for t in targets):
        raise ValueError(f"target: expected 'host:port' or a sequence of them, got {target!r}")
    return targets


def proto_of(arch: Architecture | architecture_pb2.Architecture) -> architecture_pb2.Architecture:
    return arch.to_proto() if isinstance(arch, Architecture) else arch


class Endpoint:
    """A channel to one target (one server, or a balanced set of them), with its call options
    and the architectures registered through it."""

    def __init__(
        self,
        target: str,
        *,
        metadata: tuple[tuple[str, str], ...],
        timeout: float | None,
        root_certificates: bytes | None,
        client_certificate: bytes | None = None,
        client_key: bytes | None = None,
    ) -> None:
        self.target = target
        self.resolver = is_resolver_target(target)
        self.backends = backend_count(target)
        options: list[tuple[str, Any]] = [
            ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
            ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
        ]
        if self.resolver:
            options.append(("grpc.lb_policy_name", "round_robin"))
        if (client_certificate is None) != (client_key is None):
            raise ValueError("client_certificate and client_key go together: pass both or neither")
        if root_certificates is not None or client_certificate is not None:
            creds = grpc.ssl_channel_credentials(
                root_certificates=root_certificates,
                private_key=client_key,
                certificate_chain=client_certificate,
            )
            self.channel = grpc.secure_channel(target, creds, options=options)
        else:
            self.channel = grpc.insecure_channel(target, options=options)
        self.stub = kernel_service_pb2_grpc.KernelServiceStub(self.channel)
        self.models = model_service_pb2_grpc.ModelServiceStub(self.channel)
        self._metadata = metadata
        self.timeout = timeout
        self._ids: dict[bytes, str] = {}
        self._ids_lock = threading.Lock()

    def close(self) -> None:
        self.channel.close()

    @property
    def metadata(self) -> tuple[tuple[str, str], ...]:
        """The metadata of a call made now: auth, and the request id of a `request_id` block."""
        current = _REQUEST_ID.get()
        return self._metadata if current is None else (*self._metadata, (request_ids.KEY, current))

    def call(self, method: Callable[..., _R], request: Any, timeout: float | None = None) -> _R:
        """A unary call with this endpoint's deadline and metadata; typed errors."""
        try:
            return method(
                request,
                timeout=self.timeout if timeout is None else timeout,
                metadata=self.metadata,
            )
        except grpc.RpcError as e:
            raise errors.from_rpc_error(e) from e

    def register(self, arch: architecture_pb2.Architecture, timeout: float | None = None) -> str:
        """Registers `arch` through this endpoint and remembers its id."""
        request = kernel_service_pb2.RegisterArchitectureRequest(architecture=arch)
        response: kernel_service_pb2.RegisterArchitectureResponse = self.call(
            self.stub.RegisterArchitecture, request, timeout
        )
        with self._ids_lock:
            self._ids[arch.SerializeToString(deterministic=True)] = response.architecture_id
        return response.architecture_id

    def register_everywhere(
        self, arch: architecture_pb2.Architecture, timeout: float | None = None
    ) -> str:
        """Registers `arch` once per backend, in a row: on a balanced target round robin
        takes the registrations to every backend (as far as `backend_count` knows them)."""
        architecture_id = self.register(arch, timeout)
        for _ in range(self.backends - 1):
            architecture_id = self.register(arch, timeout)
        return architecture_id

    def known_id(self, arch: architecture_pb2.Architecture) -> str | None:
        with self._ids_lock:
            return self._ids.get(arch.SerializeToString(deterministic=True))

    def forget(self, architecture_id: str) -> None:
        with self._ids_lock:
            self._ids = {k: v for k, v in self._ids.items() if v != architecture_id}

    def with_id(
        self, arch: ArchLike, call: Callable[[str], _R], timeout: float | None = None
    ) -> _R:
        """Runs call(id). A spec is registered on first use and again whenever the server
        says NOT_FOUND (it lost it). On a balanced target each registration is made once per
        backend, in a row, so that round robin takes it to every backend (as far as the
        client knows them), and NOT_FOUND is retried once more."""
        if isinstance(arch, str):
            return call(arch)
        proto = proto_of(arch)
        known = self.known_id(proto)
        rounds = 3 if self.resolver else 2
        for attempt in range(rounds):
            architecture_id = (
                self.register_everywhere(proto, timeout) if attempt or known is None else known
            )
            try:
                return call(architecture_id)
            except errors.NotFoundError:
                if attempt == rounds - 1:
                    raise
        raise AssertionError("unreachable")  # pragma: no cover
