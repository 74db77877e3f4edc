"""`Client`: the Python face of the KernelService.

Takes numpy arrays and spec objects, speaks protobuf over gRPC, returns numpy arrays, and
turns every gRPC failure into a typed exception from `ntkserve.errors` (keeping the cause).
Imports no jax.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from ntkserve import endpoints, kinds, replicas, streaming, tensor
from ntkserve.assembly import check_fits_in_memory, output_paths
from ntkserve.endpoints import MAX_MESSAGE_BYTES, ArchLike, Endpoint, normalize_targets, proto_of
from ntkserve.model_methods import ModelMethods
from ntkserve.spec import Architecture
from ntkserve.streaming import STREAM_THRESHOLD_BYTES, StreamReport, TileHook
from ntkserve.v1 import architecture_pb2, kernel_service_pb2

Get = str | Sequence[str]
__all__ = [
    "MAX_MESSAGE_BYTES",
    "STREAM_THRESHOLD_BYTES",
    "ArchLike",
    "ArchitectureInfo",
    "Client",
    "Get",
]


@dataclasses.dataclass(frozen=True)
class ArchitectureInfo:
    """A registered architecture as the server stores it (canonical form)."""

    id: str
    architecture: Architecture
    create_time: float


def _kinds(get: Get) -> tuple[tuple[str, ...], bool]:
    """The kinds `get` names (`ntkserve.kinds`), and whether a single array is wanted."""
    return kinds.from_names(get), isinstance(get, str)


def _kernel_bytes(x1: np.ndarray[Any, Any], x2: np.ndarray[Any, Any] | None, count: int) -> int:
    """Bytes of `count` kernels between x1 and x2 (N1 * N2 * count * itemsize; positions kept
    by spatial networks multiply it further, which only the server's plan says)."""
    n1 = int(x1.shape[0]) if x1.ndim else 1
    n2 = n1 if x2 is None else int(x2.shape[0]) if x2.ndim else 1
    return n1 * n2 * count * int(x1.dtype.itemsize)


def _large(x1: np.ndarray[Any, Any], x2: np.ndarray[Any, Any] | None, count: int) -> bool:
    """Whether the inputs or `count` kernels are too large for one unary call."""
    request = int(x1.nbytes) + (0 if x2 is None else int(x2.nbytes))
    return max(request, _kernel_bytes(x1, x2, count)) > STREAM_THRESHOLD_BYTES


def _patterns(pattern: tuple[Any, Any] | None, dtype: np.dtype[Any]) -> dict[str, Any]:
    """The request fields of Aggregate patterns, in the inputs' dtype."""
    if pattern is None:
        return {}
    return {
        f"pattern{i + 1}": tensor.encode(np.asarray(p, dtype), f"pattern{i + 1}")
        for i, p in enumerate(pattern)
        if p is not None
    }


def _info(record: kernel_service_pb2.ArchitectureRecord) -> ArchitectureInfo:
    return ArchitectureInfo(
        id=record.architecture_id,
        architecture=Architecture.from_proto(record.architecture),
        create_time=record.create_time,
    )


class Client(ModelMethods):
    """A connection to one ntkserve server, or to several replicas of it.

    Args:
      target: "host:port" of the server; or a sequence of them (replicas): one channel each,
        and a streamed kernel is spread over all of them (see `kernel`). A single target with
        a gRPC resolver scheme ("dns:///ntkserve:50051", "ipv4:10.0.0.1:50051,10.0.0.2:50051")
        is balanced round robin, call by call, so a streamed kernel is spread over its
        backends too (a Kubernetes headless Service). Everything other than streamed kernels
        goes to the first target.
      token: a bearer token sent as `authorization` metadata with every call (a server
        started with --auth-tokens answers UNAUTHENTICATED without one).
      root_certificates: PEM bytes of the CA that signed the server's certificate; when
        given, the channels use TLS.
      client_certificate, client_key: PEM bytes of this client's certificate (chain) and
        its private key, for a server that requires them (--tls-client-ca, mutual TLS);
        they turn TLS on too (with the system's CAs if root_certificates is None).
      timeout: default deadline in seconds for each call, and for a streamed kernel as a
        whole (None: no deadline).

    Served models and likelihoods (`fit`, `model`, `models`, `gp_inference`,
    `marginal_likelihood`, `tune`) are `model_methods.ModelMethods`'.
    """

    def __init__(
        self,
        target: str | Sequence[str],
        *,
        token: str | None = None,
        root_certificates: bytes | None = None,
        client_certificate: bytes | None = None,
        client_key: bytes | None = None,
        timeout: float | None = None,
    ) -> None:
        metadata = (("authorization", f"Bearer {token}"),) if token else ()
        self._endpoints = [
            Endpoint(
                t,
                metadata=metadata,
                timeout=timeout,
                root_certificates=root_certificates,
                client_certificate=client_certificate,
                client_key=client_key,
            )
            for t in normalize_targets(target)
        ]
        self._first = self._endpoints[0]
        self._stub = self._first.stub
        # Called with (target, row, col) after each tile of a streamed kernel (tests use it).
        self._on_tile_done: TileHook | None = None
        # How the last streamed kernel went: tile size, tiles, which target did how many.
        self.last_stream: StreamReport | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    def close(self) -> None:
        for endpoint in self._endpoints:
            endpoint.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @staticmethod
    def request_id(value: str) -> contextlib.AbstractContextManager[None]:
        """`with client.request_id("job-42"): ...` sends x-request-id "job-42" with every
        call inside the block, so the server's log lines and errors carry it. Without one
        the server makes an id per call; errors carry it as `error.request_id` either way."""
        return endpoints.request_id(value)

    # -- registry ----------------------------------------------------------------------------

    def register(self, arch: Architecture | architecture_pb2.Architecture) -> str:
        """Registers a network and returns its id (the same id for the same network).

        On the first target (on each of its backends, for a resolver target); a streamed
        kernel registers a spec on every replica it uses by itself."""
        return self._first.register_everywhere(proto_of(arch))

    def get_architecture(self, architecture_id: str) -> ArchitectureInfo:
        request = kernel_service_pb2.GetArchitectureRequest(architecture_id=architecture_id)
        return _info(self._first.call(self._stub.GetArchitecture, request).record)

    def list_architectures(self) -> list[ArchitectureInfo]:
        response = self._first.call(
            self._stub.ListArchitectures, kernel_service_pb2.ListArchitecturesRequest()
        )
        return [_info(r) for r in response.records]

    def delete_architecture(self, architecture_id: str) -> None:
        request = kernel_service_pb2.DeleteArchitectureRequest(architecture_id=architecture_id)
        self._first.call(self._stub.DeleteArchitecture, request)
        for endpoint in self._endpoints:
            endpoint.forget(architecture_id)

    # -- kernels -----------------------------------------------------------------------------

    def _stream(
        self,
        arch: ArchLike,
        x1: np.ndarray[Any, Any],
        x2: np.ndarray[Any, Any] | None,
        names: Sequence[str],
        single: bool,
        tile: int | None,
        out: str | os.PathLike[str] | None,
        progress: bool | None,
        mask_constant: float | None,
        pattern: tuple[Any, Any] | None,
    ) -> list[np.ndarray[Any, Any]]:
        job = streaming.prepare(x1, x2, names, tile, mask_constant, pattern)
        paths = None if out is None else output_paths(out, names, single)
        if len(self._endpoints) > 1 or self._first.resolver:
            kernels, report = replicas.stream_spread(
                self._endpoints, arch, job, paths, progress, self._on_tile_done
            )
        else:
            kernels, report = streaming.stream_one(
                self._first, arch, job, paths, progress, self._on_tile_done
            )
        self.last_stream = report
        return kernels

    def kernel(
        self,
        arch: ArchLike,
        x1: Any,
        x2: Any = None,
        get: Get = "ntk",
        *,
        tile: int | None = None,
        out: str | os.PathLike[str] | None = None,
        progress: bool | None = None,
        mask_constant: float | None = None,
        pattern: tuple[Any, Any] | None = None,
    ) -> np.ndarray[Any, Any] | tuple[np.ndarray[Any, Any], ...]:
        """The kernel(s) between x1 and x2 (x2=None: x2 = x1), in the inputs' dtype.

        `get` is "nngp", "ntk", or a tuple of them; a tuple returns a tuple in that order.

        Large kernels are streamed in tiles (StreamKernel): when `tile` or `out` is given, or
        when the inputs or the kernels exceed `STREAM_THRESHOLD_BYTES` (32 MiB). The result
        is the same as one ComputeKernel call's.

        Args:
          tile: rows and columns per tile (None: the server chooses for its device memory).
          out: a path: the kernel is written to this .npy file as it arrives and returned as
            a `numpy.memmap` (flushed), so it may be larger than memory. With a tuple `get`,
            one file per kernel, its name before the suffix ("k.npy": "k.nngp.npy",
            "k.ntk.npy").
            Without it, a kernel larger than the memory available (N1 * N2 * kinds *
            itemsize against /proc/meminfo's MemAvailable; `assembly.check_fits_in_memory`)
            is a ValueError raised before anything is sent.
          progress: a progress bar on stderr (tiles done, rate, time left); None shows it
            when stderr is a terminal and there is more than one tile.
          mask_constant: input entries equal to it (NaN: NaN entries) are masked, as in
            neural-tangents: a position whose every channel is masked is absent, and
            pooling, LayerNorm and attention average over the positions present (padding of
            variable-length sequences, missing pixels).
          pattern: `(pattern1, pattern2)`, the graphs of x1's and x2's examples for
            Aggregate layers, (N, *spatial, *spatial) each (pattern2 None when x2 is None),
            as neural-tangents' `kernel_fn(..., pattern=...)`.

        With several targets (or a resolver target) a streamed kernel is spread over the
        replicas, tiles from a replica that fails are recomputed by the others, and a spec
        is registered on each replica used.
        """
        names, single = _kinds(get)
        x1 = np.asarray(x1)
        x2 = None if x2 is None else np.asarray(x2)
        if out is None:
            check_fits_in_memory(_kernel_bytes(x1, x2, len(names)))
        if tile is not None or out is not None or _large(x1, x2, len(names)):
            kernels = self._stream(
                arch, x1, x2, names, single, tile, out, progress, mask_constant, pattern
            )
            return kernels[0] if single else tuple(kernels)
        t1 = tensor.encode(x1, "x1")
        t2 = None if x2 is None else tensor.encode(x2, "x2")
        patterns = _patterns(pattern, x1.dtype)

        def compute(architecture_id: str) -> kernel_service_pb2.ComputeKernelResponse:
            request = kernel_service_pb2.ComputeKernelRequest(
                architecture_id=architecture_id,
                x1=t1,
                x2=t2,
                get=kinds.to_codes(names),
                mask_constant=mask_constant,
                **patterns,
            )
            response: kernel_service_pb2.ComputeKernelResponse = self._first.call(
                self._stub.ComputeKernel, request
            )
            return response

        response = self._first.with_id(arch, compute)
        values = tuple(tensor.decode(getattr(response, n), n) for n in names)
        return values[0] if single else values

    def kernel_batch(
        self,
        arch: ArchLike,
        inputs: Sequence[tuple[Any, Any]],
        get: Get = "ntk",
        mask_constant: float | None = None,
    ) -> list[Any]:
        """Several small kernels of one architecture in one call (ComputeKernelBatch):
        `inputs` is a sequence of (x1, x2 or None); returns one result per pair, each shaped
        as `kernel` would return it. `mask_constant` (as in `kernel`) applies to every pair."""
        names, single = _kinds(get)
        codes = kinds.to_codes(names)
        encoded = [
            (
                tensor.encode(a, f"inputs[{i}][0]"),
                None if b is None else tensor.encode(b, f"inputs[{i}][1]"),
            )
            for i, (a, b) in enumerate(inputs)
        ]

        def compute(architecture_id: str) -> kernel_service_pb2.ComputeKernelBatchResponse:
            request = kernel_service_pb2.ComputeKernelBatchRequest(
                requests=[
                    kernel_service_pb2.ComputeKernelRequest(
                        architecture_id=architecture_id,
                        x1=t1,
                        x2=t2,
                        get=codes,
                        mask_constant=mask_constant,
                    )
                    for t1, t2 in encoded
                ]
            )
            response: kernel_service_pb2.ComputeKernelBatchResponse = self._first.call(
                self._stub.ComputeKernelBatch, request
            )
            return response

        response = self._first.with_id(arch, compute)
        out = []
        for item in response.responses:
            values = tuple(tensor.decode(getattr(item, n), n) for n in names)
            out.append(values[0] if single else values)
        return out

    def value_and_grad(
        self,
        arch: ArchLike,
        x1: Any,
        x2: Any = None,
        get: Get = "ntk",
        cotangent: Any = None,
        hyper_parameters: Sequence[str] | None = None,
        mask_constant: float | None = None,
        pattern: tuple[Any, Any] | None = None,
    ) -> tuple[Any, tuple[Any, ...]]:
        """`(K, (dL/dx1, dL/dx2))` for L = sum(C * K), C = `cotangent` (default all ones).

        With a tuple `get`, K is a tuple and `cotangent` a matching tuple (or None). The
        kernel values equal `kernel(...)`'s exactly. With x2=None, dL/dx1 counts x1 on both
        sides of the kernel and dL/dx2 is None.

        `hyper_parameters` names hyper-parameters by their path in the canonical architecture
        (`["architecture.layers[0].dense.w_std"]`, or `["*"]` for all); the gradients then
        end with a third entry, `{path: dL/dtheta}`. `mask_constant`, `pattern` as in
        `kernel`.
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
                get=kinds.to_codes(names),
                hyper_parameters=list(hyper_parameters or ()),
                mask_constant=mask_constant,
                **_patterns(pattern, np.asarray(x1).dtype),
                **fields,
            )
            response: kernel_service_pb2.ComputeValueAndGradResponse = self._first.call(
                self._stub.ComputeValueAndGrad, request
            )
            return response

        response = self._first.with_id(arch, compute)
        values = tuple(tensor.decode(getattr(response, n), n) for n in names)
        g1 = tensor.decode(response.grad_x1, "grad_x1")
        g2 = tensor.decode(response.grad_x2, "grad_x2") if response.HasField("grad_x2") else None
        kernels = values[0] if single else values
        if hyper_parameters is None:
            return kernels, (g1, g2)
        return kernels, (g1, g2, dict(response.hyper_parameter_grads))
