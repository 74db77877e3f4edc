"""Tensor codec: numpy arrays <-> `ntkserve.v1.Tensor` (raw little-endian bytes, C order).

Shared by the client and the server, so both sides agree byte for byte on the wire format.
Decoding never copies: the array is a read-only view of the message's bytes.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ntkserve.field_errors import FieldError
from ntkserve.v1 import tensor_pb2

_WIRE_DTYPES: dict[int, np.dtype[Any]] = {
    tensor_pb2.DTYPE_FLOAT32: np.dtype("<f4"),
    tensor_pb2.DTYPE_FLOAT64: np.dtype("<f8"),
}
_DTYPE_NAMES = {code: dt.name for code, dt in _WIRE_DTYPES.items()}


class TensorError(FieldError):
    """A tensor that cannot be encoded or decoded; `field` names where it came from."""


def dtype_code(dtype: np.dtype[Any]) -> int:
    """The wire code of a numpy float dtype (float32 or float64)."""
    for code, wire in _WIRE_DTYPES.items():
        if np.dtype(dtype).kind == "f" and np.dtype(dtype).itemsize == wire.itemsize:
            return code
    raise TypeError(
        f"unsupported dtype {np.dtype(dtype)}: kernels are computed in float32 or float64; "
        "cast the input with .astype(numpy.float32) or .astype(numpy.float64)"
    )


def wire_dtype(code: int, field: str = "dtype") -> np.dtype[Any]:
    """The numpy dtype of a wire dtype code; TensorError for codes that are not supported."""
    if code not in _WIRE_DTYPES:
        known = ", ".join(f"{tensor_pb2.Dtype.Name(c)} ({n})" for c, n in _DTYPE_NAMES.items())
        name = tensor_pb2.Dtype.Name(code) if code in tensor_pb2.Dtype.values() else str(code)
        raise TensorError(field, f"unsupported dtype {name}; expected one of {known}")
    return _WIRE_DTYPES[code]


def encode(array: Any, field: str = "tensor") -> tensor_pb2.Tensor:
    """Encodes a float32/float64 array-like (numpy, jax, lists are not guessed) as a Tensor."""
    out = tensor_pb2.Tensor()
    encode_into(out, array, field)
    return out


def encode_into(out: tensor_pb2.Tensor, array: Any, field: str = "tensor") -> int:
    """Encodes `array` into the Tensor field `out` of a message being built, in place (no
    copy of the bytes through a temporary message); returns the number of data bytes."""
    arr = np.asarray(array)
    try:
        code = dtype_code(arr.dtype)
    except TypeError as e:
        raise TensorError(field, str(e)) from None
    wire = np.ascontiguousarray(arr, dtype=_WIRE_DTYPES[code])
    out.dtype = code  # type: ignore[assignment]
    out.shape[:] = wire.shape
    out.data = wire.tobytes()
    return wire.nbytes


MAX_DIMENSIONS = 32


def decode(tensor: tensor_pb2.Tensor, field: str = "tensor") -> np.ndarray[Any, Any]:
    """Decodes a Tensor into a read-only numpy view of its bytes, validating everything first."""
    dtype = wire_dtype(tensor.dtype, f"{field}.dtype")
    shape = tuple(int(d) for d in tensor.shape)
    if any(d < 0 for d in shape):
        raise TensorError(f"{field}.shape", f"dimensions must be >= 0, got {list(shape)}")
    if len(shape) > MAX_DIMENSIONS:
        raise TensorError(
            f"{field}.shape", f"has {len(shape)} dimensions, at most {MAX_DIMENSIONS}"
        )
    # numpy refuses a shape whose nonzero sizes multiply past its index range even when
    # another size is 0 (so no bytes are needed): say so here, not as numpy's ValueError.
    span = dtype.itemsize
    for d in shape:
        span *= max(d, 1)
    if span >= 2**63:
        raise TensorError(f"{field}.shape", f"{list(shape)} is too large for any array")
    count = 1
    for d in shape:
        count *= d
    expected = count * dtype.itemsize
    if len(tensor.data) != expected:
        raise TensorError(
            f"{field}.data",
            f"holds {len(tensor.data)} bytes but shape {list(shape)} of {dtype.name} needs "
            f"{expected} bytes",
        )
    return np.frombuffer(tensor.data, dtype=dtype).reshape(shape)
