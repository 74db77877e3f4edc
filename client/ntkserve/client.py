"""`Client`: the Python face of the KernelService.

Takes numpy arrays and spec objects, speaks protobuf over gRPC, returns numpy arrays, and
turns every gRPC failure into a typed exception from `ntkserve.errors` (keeping the cause).
Imports no jax.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import grpc
import numpy as np

from ntkserve import errors, tensor
from ntkserve.spec import Architecture
from ntkserve.v1 import architecture_pb2, kernel_service_pb2, kernel_service_pb2_grpc

ArchLike = str | Architecture | architecture_pb2.Architecture
Get = str | Sequence[str]
_R = TypeVar("_R")

MAX_MESSAGE_BYTES = 256 * 1024 * 1024
_KINDS = {"nngp": kernel_service_pb2.KERNEL_KIND_NNGP, "ntk": kernel_service_pb2.KERNEL_KIND_NTK}


@dataclasses.dataclass(frozen=True)
class ArchitectureInfo:
    """A registered architecture as the server stores it (canonical form)."""

    id: str
    architecture: Architecture
    create_time: float


def _kinds(get: Get) -> tuple[list[str], bool]:
    """Normalises `get` into a list of names and whether a single array is wanted."""
    names = [get] if isinstance(get, str) else list(get)
    if not names:
        raise ValueError("get must name at least one of 'nngp', 'ntk'")
    for name in names:
        if name not in _KINDS:
            raise ValueError(f"get: unknown kernel {name!r}; expected 'nngp' or 'ntk'")
    return names, isinstance(get, str)


def _info(record: kernel_service_pb2.ArchitectureRecord) -> ArchitectureInfo:
    return ArchitectureInfo(
        id=record.architecture_id,
        architecture=Architecture.from_proto(record.architecture),
        create_time=record.create_time,
    )


class Client:
    """A connection to an ntkserve server.

    Args:
      target: "host:port" of the server.
      token: a bearer token sent as `authorization` metadata with every call.
      root_certificates: PEM bytes; when given, the channel uses TLS.
      timeout: default deadline in seconds for each call (None: no deadline).
    """

    def __init__(
        self,
        target: str,
        *,
        token: str | None = None,
        root_certificates: bytes | None = None,
        timeout: float | None = None,
    ) -> None:
        options = [
            ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
            ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
        ]
        if root_certificates is not None:
            creds = grpc.ssl_channel_credentials(root_certificates=root_certificates)
            self._channel = grpc.secure_channel(target, creds, options=options)
        else:
            self._channel = grpc.insecure_channel(target, options=options)
        self._stub = kernel_service_pb2_grpc.KernelServiceStub(self._channel)
        self._metadata = (("authorization", f"Bearer {token}"),) if token else ()
        self._timeout = timeout
        self._ids: dict[bytes, str] = {}
        self._ids_lock = threading.Lock()

    # -- lifecycle ---------------------------------------------------------------------------

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- plumbing ----------------------------------------------------------------------------

    def _call(self, method: Callable[..., _R], request: Any) -> _R:
        try:
            return method(request, timeout=self._timeout, metadata=self._metadata)
        except grpc.RpcError as e:
            raise errors.from_rpc_error(e) from e

    def _register_proto(self, arch: architecture_pb2.Architecture) -> str:
        key = arch.SerializeToString(deterministic=True)
        request = kernel_service_pb2.RegisterArchitectureRequest(architecture=arch)
        response: kernel_service_pb2.RegisterArchitectureResponse = self._call(
            self._stub.RegisterArchitecture, request
        )
        with self._ids_lock:
            self._ids[key] = response.architecture_id
        return response.architecture_id

    def _with_id(self, arch: ArchLike, call: Callable[[str], _R]) -> _R:
        """Runs call(id); a spec is registered on first use and again if the server lost it."""
        if isinstance(arch, str):
            return call(arch)
        proto = arch.to_proto() if isinstance(arch, Architecture) else arch
        with self._ids_lock:
            known = self._ids.get(proto.SerializeToString(deterministic=True))
        if known is None:
            return call(self._register_proto(proto))
        try:
            return call(known)
        except errors.NotFoundError:
            return call(self._register_proto(proto))

    # -- registry ----------------------------------------------------------------------------

    def register(self, arch: Architecture | architecture_pb2.Architecture) -> str:
        """Registers a network and returns its id (the same id for the same network)."""
        proto = arch.to_proto() if isinstance(arch, Architecture) else arch
        return self._register_proto(proto)

    def get_architecture(self, architecture_id: str) -> ArchitectureInfo:
        request = kernel_service_pb2.GetArchitectureRequest(architecture_id=architecture_id)
        return _info(self._call(self._stub.GetArchitecture, request).record)

    def list_architectures(self) -> list[ArchitectureInfo]:
        response = self._call(
            self._stub.ListArchitectures, kernel_service_pb2.ListArchitecturesRequest()
        )
        return [_info(r) for r in response.records]

    def delete_architecture(self, architecture_id: str) -> None:
        request = kernel_service_pb2.DeleteArchitectureRequest(architecture_id=architecture_id)
        self._call(self._stub.DeleteArchitecture, request)
        with self._ids_lock:
            self._ids = {k: v for k, v in self._ids.items() if v != architecture_id}

    # -- kernels -----------------------------------------------------------------------------

    def kernel(
        self, arch: ArchLike, x1: Any, x2: Any = None, get: Get = "ntk"
    ) -> np.ndarray[Any, Any] | tuple[np.ndarray[Any, Any], ...]:
        """The kernel(s) between x1 and x2 (x2=None: x2 = x1), in the inputs' dtype.

        `get` is "nngp", "ntk", or a tuple of them; a tuple returns a tuple in that order.
        """
        names, single = _kinds(get)
        t1 = tensor.encode(x1, "x1")
        t2 = None if x2 is None else tensor.encode(x2, "x2")

        def compute(architecture_id: str) -> kernel_service_pb2.ComputeKernelResponse:
            request = kernel_service_pb2.ComputeKernelRequest(
                architecture_id=architecture_id, x1=t1, x2=t2, get=[_KINDS[n] for n in names]
            )
            response: kernel_service_pb2.ComputeKernelResponse = self._call(
                self._stub.ComputeKernel, request
            )
            return response

        response = self._with_id(arch, compute)
        out = tuple(tensor.decode(getattr(response, n), n) for n in names)
        return out[0] if single else out

    def value_and_grad(
        self,
        arch: ArchLike,
        x1: Any,
        x2: Any = None,
        get: Get = "ntk",
        cotangent: Any = None,
        hyper_parameters: Sequence[str] | None = None,
    ) -> tuple[Any, tuple[Any, ...]]:
        """`(K, (dL/dx1, dL/dx2))` for L = sum(C * K), C = `cotangent` (default all ones).

        With a tuple `get`, K is a tuple and `cotangent` a matching tuple (or None). The
        kernel values equal `kernel(...)`'s exactly. With x2=None, dL/dx1 counts x1 on both
        sides of the kernel and dL/dx2 is None.

        `hyper_parameters` names hyper-parameters by their path in the canonical architecture
        (`["architecture.layers[0].dense.w_std"]`, or `["*"]` for all); the gradients then
        end with a third entry, `{path: dL/dtheta}`.
        """
        names, single = _kinds(get)
        if cotangent is None:
            cotangents: tuple[Any, ...] = (None,) * len(names)
        elif single:
            cotangents = (cotangent,)
        else:
            cotangents = tuple(cotangent)
            if len(cotangents) != len(names):
                raise ValueError(f"cotangent: expected {len(names)} arrays, one per kernel in get")
        fields = {
            f"{n}_cotangent": tensor.encode(c, f"{n}_cotangent")
            for n, c in zip(names, cotangents, strict=True)
            if c is not None
        }
        t1 = tensor.encode(x1, "x1")
        t2 = None if x2 is None else tensor.encode(x2, "x2")

        def compute(architecture_id: str) -> kernel_service_pb2.ComputeValueAndGradResponse:
            request = kernel_service_pb2.ComputeValueAndGradRequest(
                architecture_id=architecture_id,
                x1=t1,
                x2=t2,
                get=[_KINDS[n] for n in names],
                hyper_parameters=list(hyper_parameters or ()),
                **fields,
            )
            response: kernel_service_pb2.ComputeValueAndGradResponse = self._call(
                self._stub.ComputeValueAndGrad, request
            )
            return response

        response = self._with_id(arch, compute)
        values = tuple(tensor.decode(getattr(response, n), n) for n in names)
        g1 = tensor.decode(response.grad_x1, "grad_x1")
        g2 = tensor.decode(response.grad_x2, "grad_x2") if response.HasField("grad_x2") else None
        kernels = values[0] if single else values
        if hyper_parameters is None:
            return kernels, (g1, g2)
        return kernels, (g1, g2, dict(response.hyper_parameter_grads))
