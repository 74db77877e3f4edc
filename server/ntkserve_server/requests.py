"""Decoding and validating KernelService requests into numpy inputs, before any compute.

Checks what needs no architecture: required fields, tensor encoding, finiteness, dtype
agreement, `get`, cotangent shapes. Shape against the architecture is the engine's
`KernelFn.check_inputs`. Problems raise `InvalidRequest` with the field's path, and requests
over a configured limit `OverLimit`, with the field over it as data.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from ntkserve import kinds, tensor
from ntkserve.field_errors import FieldError
from ntkserve.v1 import kernel_service_pb2 as ks
from ntkserve.v1 import tensor_pb2
from ntkserve_engine.kernels.canonical import ID_FORM, is_architecture_id
from ntkserve_engine.kernels.compile import batch_shape

Array = np.ndarray[Any, Any]


class InvalidRequest(FieldError):
    """A request that is not valid (INVALID_ARGUMENT, with a BadRequest of its violations)."""


class OverLimit(FieldError):
    """A valid request over one of the server's configured limits (RESOURCE_EXHAUSTED); its
    field is the one over the limit, or "" when the request as a whole is."""


def check_elements(message: Any, fields: Sequence[str], max_elements: int) -> None:
    """OverLimit for a tensor field with more than `max_elements` elements (0: no limit),
    from its declared shape, before anything is decoded or allocated (Python ints: an int64
    shape's product could overflow)."""
    for field in fields:
        if not max_elements or not message.HasField(field):
            continue
        shape = [int(s) for s in getattr(message, field).shape]
        elements = math.prod(max(s, 0) for s in shape)
        if elements > max_elements:
            raise OverLimit(
                field,
                f"shape {shape} holds {elements} elements, over this server's limit of "
                f"{max_elements} per tensor (--max-tensor-elements); send fewer rows per call, "
                "or stream the kernel with StreamKernel",
            )


def check_entries(
    shape: Sequence[int], get: Sequence[str], max_entries: int, what: str = "the kernel"
) -> int:
    """The entries a unary call would return (N1 * N2 * positions * kernels); OverLimit past
    `max_entries` (0: no limit)."""
    entries = math.prod(int(s) for s in shape) * len(get)
    shown = f" (shape {list(shape)} x {len(get)} kernels)" if len(shape) > 1 else ""
    if max_entries and entries > max_entries:
        raise OverLimit(
            "",
            f"{what} would hold {entries} entries{shown}, "
            f"over this server's limit of {max_entries} for one unary call "
            "(--max-unary-kernel-entries); use StreamKernel (the client's Client.kernel "
            "streams on its own, with tile= and out=), or send fewer rows per call",
        )
    return entries


# What a response message carries besides its tensors' bytes (field tags, shapes, dtypes),
# with room to spare.
RESPONSE_OVERHEAD_BYTES = 4096


def check_response_bytes(payload: int, max_bytes: int, what: str = "the kernel") -> None:
    """OverLimit when a response carrying `payload` tensor bytes would exceed the largest
    message this server may send (0: no check): refused before computing, not after."""
    if max_bytes and payload + RESPONSE_OVERHEAD_BYTES > max_bytes:
        raise OverLimit(
            "",
            f"{what} would be {payload} bytes, over this server's largest message of "
            f"{max_bytes} bytes (--max-message-mb); use StreamKernel (the client's "
            "Client.kernel streams on its own, with tile= and out=), or send fewer rows per call",
        )


@dataclasses.dataclass(frozen=True)
class KernelInputs:
    architecture_id: str
    x1: Array
    x2: Array | None
    get: tuple[str, ...]
    mask_constant: float | None = None
    pattern1: Array | None = None
    pattern2: Array | None = None


def require_id(architecture_id: str, field: str = "architecture_id") -> str:
    """The id, when it has the form of one (`canonical.ID_FORM`); InvalidRequest otherwise,
    which quotes its length, not the id (it could be megabytes)."""
    if not architecture_id:
        raise InvalidRequest(field, "is required")
    if not is_architecture_id(architecture_id):
        raise InvalidRequest(
            field,
            f"must be an architecture id, {ID_FORM} (as RegisterArchitecture returns), got "
            f"{len(architecture_id):,} characters of another form",
        )
    return architecture_id


def mask_constant(message: Any, field: str = "mask_constant") -> float | None:
    """The request's mask constant, or None. Any float, NaN and +-Inf included."""
    return float(getattr(message, field)) if message.HasField(field) else None


def check_finite(array: Array, field: str, mask: float | None = None) -> None:
    """InvalidRequest for NaN or Inf entries, those equal to the mask constant apart."""
    finite = np.isfinite(array)
    if mask is not None:
        finite |= np.isnan(array) if math.isnan(mask) else array == mask
    if not finite.all():
        bad = int(np.size(array) - np.count_nonzero(finite))
        masked = " (other than the mask constant)" if mask is not None else ""
        raise InvalidRequest(
            field, f"holds {bad} NaN or Inf values{masked}; kernels need finite inputs"
        )


def tensor_field(message: Any, field: str, mask: float | None = None) -> Array | None:
    """The message's tensor `field` decoded and checked finite (None when unset)."""
    if not message.HasField(field):
        return None
    t: tensor_pb2.Tensor = getattr(message, field)
    try:
        array = tensor.decode(t, field)
    except tensor.TensorError as e:
        raise InvalidRequest.of(e.violations) from None
    check_finite(array, field, mask)
    return array


def _get(codes: Any, field: str = "get") -> tuple[str, ...]:
    """The kinds a request asks for (`ntkserve.kinds.from_codes`; none: "ntk")."""
    try:
        return kinds.from_codes(codes, field)
    except kinds.KindError as e:
        raise InvalidRequest(e.field, e.problem) from None


@dataclasses.dataclass(frozen=True)
class StreamHeader:
    architecture_id: str
    get: tuple[str, ...]
    dtype: np.dtype[Any]
    x1_shape: tuple[int, ...]
    x2_shape: tuple[int, ...] | None
    tile_size: int
    tiles: tuple[tuple[int, int], ...]
    plan_only: bool
    mask_constant: float | None = None
    patterns: bool = False

    def slot_shape(self, slot: str) -> tuple[int, ...] | None:
        """The shape of what a slot carries: x1, x2, or a pattern (N, *spatial, *spatial)."""
        x = self.x1_shape if slot in ("x1", "pattern1") else self.x2_shape
        if x is None or slot in ("x1", "x2"):
            return x
        if not self.patterns:
            return None
        return (x[0], *x[1:-1], *x[1:-1])

    def input_bytes(self, slot: str) -> int:
        """What a slot's shape holds, in bytes (Python ints: no int64 wrap-around)."""
        shape = self.slot_shape(slot)
        return 0 if shape is None else math.prod(shape) * self.dtype.itemsize


# Most tiles a header may name (a selection, to split one kernel between calls): a million
# covers a 2-million-row kernel in 2048-row tiles; a header naming more would cost the server
# ~100 bytes of bookkeeping per tile before anything is computed.
MAX_NAMED_TILES = 1 << 20


def stream_header(header: ks.StreamKernelHeader, max_input_bytes: int) -> StreamHeader:
    """The validated header of a StreamKernel call; OverLimit past `max_input_bytes`, a plan
    alone included (planning inputs the server would refuse only costs its memory)."""
    try:
        dtype = tensor.wire_dtype(header.dtype, "header.dtype")
    except tensor.TensorError as e:
        raise InvalidRequest.of(e.violations) from None
    x1_shape = batch_shape(header.x1_shape, "header.x1_shape")
    x2_shape = batch_shape(header.x2_shape, "header.x2_shape") if header.x2_shape else None
    if header.tile_size < 0:
        raise InvalidRequest("header.tile_size", f"must be >= 0 (0: auto), got {header.tile_size}")
    if len(header.tiles) > MAX_NAMED_TILES:
        raise OverLimit(
            "header.tiles",
            f"names {len(header.tiles)} tiles, over the {MAX_NAMED_TILES} one call may name; "
            "split the selection between calls, or name none for the whole grid",
        )
    parsed = StreamHeader(
        architecture_id=require_id(header.architecture_id),
        get=_get(header.get, "header.get"),
        dtype=dtype,
        x1_shape=x1_shape,
        x2_shape=x2_shape,
        tile_size=int(header.tile_size),
        tiles=tuple((int(t.row), int(t.col)) for t in header.tiles),
        plan_only=header.plan_only,
        mask_constant=mask_constant(header),
        patterns=header.patterns,
    )
    total = sum(parsed.input_bytes(slot) for slot in ("x1", "x2", "pattern1", "pattern2"))
    if total > max_input_bytes:
        raise OverLimit(
            "",
            f"the inputs hold {total} bytes, over this server's limit of {max_input_bytes} "
            "bytes per streamed call; split the job (StreamKernelHeader.tiles) or raise "
            "--max-stream-input-mb",
        )
    return parsed


def kernel_inputs(
    request: ks.ComputeKernelRequest | ks.ComputeValueAndGradRequest, max_elements: int = 0
) -> KernelInputs:
    architecture_id = require_id(request.architecture_id)
    check_elements(request, ("x1", "x2", "pattern1", "pattern2"), max_elements)
    mask = mask_constant(request)
    x1 = tensor_field(request, "x1", mask)
    if x1 is None:
        raise InvalidRequest("x1", "is required")
    x2 = tensor_field(request, "x2", mask)
    patterns = tensor_field(request, "pattern1"), tensor_field(request, "pattern2")
    for name, a in (("x2", x2), ("pattern1", patterns[0]), ("pattern2", patterns[1])):
        if a is not None and a.dtype != x1.dtype:
            raise InvalidRequest(f"{name}.dtype", f"{a.dtype} differs from x1's {x1.dtype}")
    return KernelInputs(architecture_id, x1, x2, _get(request.get), mask, *patterns)


def cotangents(
    request: ks.ComputeValueAndGradRequest,
    inputs: KernelInputs,
    shape: tuple[int, ...],
    max_elements: int = 0,
) -> tuple[Array, ...]:
    """C for each requested kernel: the request's, or all ones; shaped like the kernel."""
    check_elements(request, ("nngp_cotangent", "ntk_cotangent"), max_elements)
    out = []
    for name in inputs.get:
        field = f"{name}_cotangent"
        c = tensor_field(request, field)
        if c is None:
            c = np.ones(shape, inputs.x1.dtype)
        elif c.shape != shape:
            raise InvalidRequest(
                f"{field}.shape", f"must be the kernel's shape {list(shape)}, got {list(c.shape)}"
            )
        elif c.dtype != inputs.x1.dtype:
            raise InvalidRequest(f"{field}.dtype", f"{c.dtype} differs from x1's {inputs.x1.dtype}")
        out.append(c)
    for name in (n for n in kinds.NAMES if n not in inputs.get):
        if request.HasField(f"{name}_cotangent"):
            raise InvalidRequest(f"{name}_cotangent", f"given, but get does not ask for {name}")
    return tuple(out)


def hyper_parameters(request: Any, known: Sequence[str]) -> tuple[str, ...]:
    """The hyper-parameter paths a request (ComputeValueAndGrad, MarginalLikelihood) asks
    for in its `hyper_parameters` ("*": all), each checked against `known`."""
    names = tuple(request.hyper_parameters)
    if "*" in names:
        return tuple(known)
    for i, name in enumerate(names):
        if name not in known:
            listed = ", ".join(known[:12]) + (", ..." if len(known) > 12 else "")
            raise InvalidRequest(
                f"hyper_parameters[{i}]",
                f"{name!r} is not a hyper-parameter of this architecture; it has: "
                f"{listed or 'none'}",
            )
    if len(set(names)) != len(names):
        raise InvalidRequest("hyper_parameters", "names a hyper-parameter twice")
    return names
