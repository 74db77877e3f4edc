"""A StreamKernel call's inputs: the messages after the header, read with an idle limit, into
x1, x2 and the Aggregate patterns.

Memory is taken as bytes arrive, never on the header's word: each input is a bytearray
grown by its chunks (on Linux a large block grows by mremap: it is neither zeroed up front
nor copied as it grows, and the array over it at the end is a view, not a copy), and on
any error — a bad chunk, a half-close too early, idleness, a cancel — what arrived is
dropped at once. A client that sends nothing for `idle_seconds` while a message is awaited
ends the call (`StreamIdle`).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any, Protocol

import numpy as np
from ntkserve.v1 import kernel_service_pb2 as ks

from ntkserve_server import requests
from ntkserve_server.requests import InvalidRequest, StreamHeader

Array = np.ndarray[Any, Any]


class Counted(Protocol):
    """Where the bytes received are counted (the call's `streaming.StreamStats`)."""

    bytes_in: int


class StreamIdle(Exception):
    """The client sent nothing for longer than the server waits (DEADLINE_EXCEEDED)."""


class _Input:
    """One input's bytes, grown by chunks that must arrive in order: memory is taken as the
    bytes come, never on the header's word."""

    def __init__(self, slot: str, nbytes: int) -> None:
        self.slot = slot
        self.expected = nbytes
        self.data = bytearray()

    @property
    def received(self) -> int:
        return len(self.data)

    def add(self, chunk: ks.InputChunk, field: str) -> None:
        if chunk.offset != self.received:
            raise InvalidRequest(
                f"{field}.offset",
                f"{self.slot} chunk at byte {chunk.offset}, expected {self.received} "
                "(chunks must come in order)",
            )
        end = self.received + len(chunk.data)
        if end > self.expected:
            raise InvalidRequest(
                f"{field}.data",
                f"{self.slot} would reach {end} bytes; its header shape holds {self.expected}",
            )
        self.data += chunk.data

    def release(self) -> None:
        self.data = bytearray()


_SLOTS = {
    ks.INPUT_SLOT_X1: "x1",
    ks.INPUT_SLOT_X2: "x2",
    ks.INPUT_SLOT_PATTERN1: "pattern1",
    ks.INPUT_SLOT_PATTERN2: "pattern2",
}


async def next_message(
    messages: AsyncIterator[Any], idle_seconds: float | None, waiting_for: str
) -> Any:
    """The client's next message (None at its half-close); StreamIdle when none comes
    within `idle_seconds` (None: no limit)."""
    try:
        async with asyncio.timeout(idle_seconds):
            return await anext(messages, None)
    except TimeoutError:
        raise StreamIdle(
            f"the client sent nothing for {idle_seconds:g} s while the server waited for "
            f"{waiting_for}; this server ends idle streams (--stream-idle-seconds "
            f"{idle_seconds:g}): send the header and the input chunks without pauses"
        ) from None


async def header_of(messages: AsyncIterator[Any], idle_seconds: float | None, kind: str) -> Any:
    """The message a stream opens with, whose payload is its header (a `kind`);
    InvalidRequest at messages[0] when the stream opens with anything else. The whole
    message, so a call counts the bytes it received."""
    first = await next_message(messages, idle_seconds, "the header")
    if first is None or first.WhichOneof("payload") != "header":
        raise InvalidRequest("messages[0]", f"the first message must be a {kind}")
    return first


async def _fill(
    slots: dict[Any, _Input],
    messages: AsyncIterator[Any],
    stats: Counted,
    idle_seconds: float | None,
) -> None:
    """The chunks into their slots, until the client half-closes; then checks each slot is
    complete."""
    index = 0
    while (message := await next_message(messages, idle_seconds, "input chunks")) is not None:
        index += 1
        field = f"messages[{index}].chunk"
        if message.WhichOneof("payload") != "chunk":
            raise InvalidRequest(f"messages[{index}]", "only the first message is a header")
        buffer = slots.get(message.chunk.slot)
        if buffer is None:
            expected = " or ".join(b.slot for b in slots.values())
            raise InvalidRequest(
                f"{field}.slot", f"{message.chunk.slot} is not a slot of this call ({expected})"
            )
        buffer.add(message.chunk, field)
        stats.bytes_in += len(message.chunk.data)
    for buffer in slots.values():
        if buffer.received != buffer.expected:
            raise InvalidRequest(
                buffer.slot,
                f"got {buffer.received} of the {buffer.expected} bytes its shape needs "
                "before the stream ended",
            )


async def receive_bytes(
    expected: dict[Any, tuple[str, int]],
    messages: AsyncIterator[Any],
    stats: Counted,
    idle_seconds: float | None = None,
) -> dict[str, bytearray]:
    """The bytes of each slot (`expected`: slot code -> (name, bytes its shape holds)) from
    the chunks that follow a header, checked complete. On any error (a bad chunk, a
    half-close too early, idleness, a cancel) the bytes received so far are dropped."""
    slots = {code: _Input(name, nbytes) for code, (name, nbytes) in expected.items()}
    try:
        await _fill(slots, messages, stats, idle_seconds)
    except BaseException:
        for buffer in slots.values():
            buffer.release()
        raise
    return {buffer.slot: buffer.data for buffer in slots.values()}


async def receive_inputs(
    header: StreamHeader,
    messages: AsyncIterator[ks.StreamKernelRequest],
    stats: Counted,
    idle_seconds: float | None = None,
) -> dict[str, Array | None]:
    """x1, x2 and the Aggregate patterns (None where the header has none) of a StreamKernel
    call (`receive_bytes`), checked complete (not yet finite)."""
    expected = {
        code: (name, header.input_bytes(name))
        for code, name in _SLOTS.items()
        if header.slot_shape(name) is not None
    }
    received = await receive_bytes(expected, messages, stats, idle_seconds)
    arrays: dict[str, Array | None] = {}
    for name in _SLOTS.values():
        shape = header.slot_shape(name)
        data = received.get(name)
        arrays[name] = None if data is None else np.frombuffer(data, header.dtype).reshape(shape)
    return arrays


def check_finite(inputs: dict[str, Array | None], mask: float | None = None) -> None:
    for name, x in inputs.items():
        if x is not None:
            requests.check_finite(x, name, mask if name in ("x1", "x2") else None)
