"""StreamKernel's error paths against a real server: a bad stream names its field (and the
server keeps serving), and limits answer RESOURCE_EXHAUSTED with the numbers."""

from __future__ import annotations

import re
from typing import Any

import grpc
import numpy as np
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from ntkserve import Client
from ntkserve.v1 import kernel_service_pb2 as ks

from tests.server.streaming_support import CNN_GAP, MLP, messages


def _error(call: Any, case: str = "") -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as info:
        list(call)
        pytest.fail(f"no error for {case}")
    return info.value


def _fields(error: grpc.RpcError) -> list[str]:
    status = rpc_status.from_call(error)  # type: ignore[arg-type]
    assert status is not None
    detail = error_details_pb2.BadRequest()
    status.details[0].Unpack(detail)
    return [v.field for v in detail.field_violations]


def test_bad_streams_name_the_field_and_the_server_stays_up(
    stream_client: Client, stream_stub: Any
) -> None:
    x = np.random.default_rng(3).standard_normal((10, 8))
    aid = stream_client.register(MLP)
    good = list(messages(aid, x, None, tile_size=4))
    chunk = ks.StreamKernelRequest(
        chunk=ks.InputChunk(slot=ks.INPUT_SLOT_X1, offset=0, data=b"\0" * 8)
    )
    bad_offset = ks.StreamKernelRequest(
        chunk=ks.InputChunk(slot=ks.INPUT_SLOT_X1, offset=8, data=b"\0")
    )
    extra = ks.StreamKernelRequest(
        chunk=ks.InputChunk(slot=ks.INPUT_SLOT_X1, offset=x.nbytes, data=b"\0")
    )
    x2_chunk = ks.StreamKernelRequest(
        chunk=ks.InputChunk(slot=ks.INPUT_SLOT_X2, offset=0, data=b"\0")
    )
    nan = x.copy()
    nan[3, 3] = np.nan
    cases = {
        "messages[0]": [chunk],
        "messages[1].chunk.offset": [good[0], bad_offset],
        "messages[1].chunk.slot": [good[0], x2_chunk],
        "x1": good[:-1],
        "messages[2].chunk.data": [*good, extra],
        "header.tiles": list(
            messages(aid, x, None, tile_size=4, tiles=[ks.TileIndex(row=2, col=0)])
        ),
        "header.tile_size": list(messages(aid, x, None, tile_size=-1)),
        "header.x1_shape": list(messages(aid, x[:, None, :][:, :, :0], None)),
        "header.dtype": [
            ks.StreamKernelRequest(
                header=ks.StreamKernelHeader(architecture_id=aid, x1_shape=[2, 8])
            )
        ],
        "x1.shape": list(messages(stream_client.register(CNN_GAP), x, None)),
    }
    for field, stream in cases.items():
        error = _error(stream_stub.StreamKernel(iter(stream)), field)
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, (field, error.details())
        assert field in _fields(error), (field, _fields(error))
    error = _error(stream_stub.StreamKernel(messages(aid, nan, None)))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT and "NaN" in error.details()
    error = _error(stream_stub.StreamKernel(messages("0" * 32, x, None)))
    assert error.code() == grpc.StatusCode.NOT_FOUND
    assert stream_client.kernel(aid, x).shape == (10, 10)  # still serving


def test_limits_give_resource_exhausted_with_the_numbers(
    stream_client: Client, stream_stub: Any
) -> None:
    aid = stream_client.register(CNN_GAP)
    big_images = np.zeros((2, 32, 32, 3))
    error = _error(stream_stub.StreamKernel(messages(aid, big_images, None)))
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert re.search(r"needs about \d+ MiB .* budget of 64 MiB", error.details()), error.details()
    small_images = np.zeros((200, 6, 6, 2))
    error = _error(stream_stub.StreamKernel(messages(aid, small_images, None, tile_size=128)))
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert re.search(r"tile_size \d+ would fit", error.details()), error.details()
    aid = stream_client.register(MLP)
    error = _error(stream_stub.StreamKernel(messages(aid, np.zeros((20000, 8)), None)))
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and "1048576 bytes" in error.details()
