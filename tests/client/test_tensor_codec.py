"""The wire format: raw little-endian bytes, C order, validated on decode."""

from __future__ import annotations

import numpy as np
import pytest
from ntkserve import tensor
from ntkserve.v1 import tensor_pb2


@pytest.mark.parametrize("dtype", ["<f4", ">f4", "<f8", ">f8"])
def test_round_trip_is_little_endian_c_order(dtype: str) -> None:
    x = np.arange(24, dtype=dtype).reshape(2, 3, 4)[:, ::2]  # non-contiguous, any byte order
    t = tensor.encode(x)
    assert list(t.shape) == [2, 2, 4]
    assert t.data == np.ascontiguousarray(x, dtype=np.dtype(dtype).newbyteorder("<")).tobytes()
    back = tensor.decode(tensor_pb2.Tensor.FromString(t.SerializeToString()))
    np.testing.assert_array_equal(back, x)
    assert back.dtype == np.dtype(dtype).newbyteorder("=")


def test_decode_does_not_copy() -> None:
    t = tensor.encode(np.ones((3, 3), np.float32))
    view = tensor.decode(t)
    assert not view.flags.writeable and not view.flags.owndata


@pytest.mark.parametrize("dtype", [np.int64, np.float16, np.complex64, bool])
def test_non_float_dtypes_are_refused(dtype: type) -> None:
    with pytest.raises(tensor.TensorError, match="x1: unsupported dtype"):
        tensor.encode(np.zeros(3, dtype), "x1")


def test_byte_count_must_match_shape() -> None:
    t = tensor_pb2.Tensor(dtype=tensor_pb2.DTYPE_FLOAT32, shape=[2, 3], data=b"\0" * 20)
    with pytest.raises(tensor.TensorError) as info:
        tensor.decode(t, "x1")
    assert info.value.field == "x1.data" and "24 bytes" in info.value.problem


def test_unknown_dtype_and_negative_shape() -> None:
    with pytest.raises(tensor.TensorError) as info:
        tensor.decode(tensor_pb2.Tensor(dtype=0, shape=[1], data=b"\0" * 4), "x2")
    assert info.value.field == "x2.dtype"
    with pytest.raises(tensor.TensorError) as info:
        tensor.decode(tensor_pb2.Tensor(dtype=1, shape=[-1], data=b""), "x2")
    assert info.value.field == "x2.shape"


@pytest.mark.parametrize(
    "shape",
    [[0, 2**40, 2**40], [2**62, 0, 4], [0] * 40],
    ids=["empty-but-huge", "huge-but-empty", "too-many-dimensions"],
)
def test_shapes_numpy_cannot_hold_are_refused_as_shapes(shape: list[int]) -> None:
    # No bytes are needed (a size is 0), but numpy cannot make the array: once a ValueError
    # from numpy, which the server answered INTERNAL (found by the request fuzzer).
    with pytest.raises(tensor.TensorError) as info:
        tensor.decode(tensor_pb2.Tensor(dtype=1, shape=shape, data=b""), "x1")
    assert info.value.field == "x1.shape"
    assert tensor.decode(tensor_pb2.Tensor(dtype=1, shape=[0, 3], data=b""), "x1").shape == (0, 3)
