"""What the StreamKernel test files share besides their server (tests/server/conftest.py's
`stream_server`): the networks and a raw stream of StreamKernelRequests."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
from ntkserve import kinds, stax, tensor
from ntkserve.v1 import kernel_service_pb2 as ks

MLP = stax.serial(stax.Dense(64, W_std=1.3, b_std=0.1), stax.Relu(), stax.Dense(1))
CNN_GAP = stax.serial(
    stax.Conv(4, (3, 3), padding="SAME"), stax.Relu(), stax.GlobalAvgPool(), stax.Dense(1)
)


def messages(
    architecture_id: str,
    x1: np.ndarray,
    x2: np.ndarray | None,
    get: tuple[str, ...] = ("nngp", "ntk"),
    tile_size: int = 0,
    chunk: int = 1000,
    **header: Any,
) -> Iterator[ks.StreamKernelRequest]:
    yield ks.StreamKernelRequest(
        header=ks.StreamKernelHeader(
            architecture_id=architecture_id,
            get=kinds.to_codes(get),
            dtype=tensor.dtype_code(x1.dtype),
            x1_shape=x1.shape,
            x2_shape=() if x2 is None else x2.shape,
            tile_size=tile_size,
            **header,
        )
    )
    for slot, x in ((ks.INPUT_SLOT_X1, x1), (ks.INPUT_SLOT_X2, x2)):
        if x is None:
            continue
        data = x.tobytes()
        for offset in range(0, len(data), chunk):
            piece = data[offset : offset + chunk]
            yield ks.StreamKernelRequest(chunk=ks.InputChunk(slot=slot, offset=offset, data=piece))
