"""Issue 17, findings 3 and 4, against a real server capped at 6 GiB of address space: a
stream's inputs cost memory only as their bytes arrive and are freed on every error path,
a failed unary call frees its decoded inputs at once, and planning a huge grid costs
nothing (tiles are counted, never listed; shape arithmetic cannot overflow).

The server's resident memory (`VmRSS`) is read before and after each attack: today's code
zeroed 1 GiB per 1-GiB header and kept it after the error, so a handful of calls fails the
bound (or the server, at its cap, answers INTERNAL)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest
from ntkserve import Client, kinds, tensor
from ntkserve.v1 import kernel_service_pb2 as ks
from ntkserve.v1 import kernel_service_pb2_grpc

from tests.conftest import WAIT_SECONDS, ServerProcess, timeout_for
from tests.server.hostile import ATTACKER, PROBE_BOUND_SECONDS, Probe, lab_server
from tests.server.streaming_support import MLP

GIB = 1 << 30
MIB = 1 << 20
# What the server may keep after an attack besides the last call's own data (which grpc's
# and the allocator's caches may hold on to): slack far below the 1 GiB that one leaked
# buffer of the stream attacks below keeps.
RSS_SLACK_BYTES = 256 * MIB
BEARER = (("authorization", f"Bearer {ATTACKER}"),)


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    proc = lab_server(Path(tmp_path_factory.mktemp("stream-memory")))
    yield proc
    proc.kill()


@pytest.fixture(scope="module")
def stub(lab: ServerProcess) -> Iterator[kernel_service_pb2_grpc.KernelServiceStub]:
    options = [("grpc.max_send_message_length", 256 * MIB)]
    with grpc.insecure_channel(lab.target, options=options) as channel:
        yield kernel_service_pb2_grpc.KernelServiceStub(channel)


@pytest.fixture(scope="module")
def arch_id(lab: ServerProcess) -> str:
    with Client(lab.target, token=ATTACKER, timeout=WAIT_SECONDS) as client:
        return client.register(MLP)


def rss_bytes(server: ServerProcess) -> int:
    """The server's resident memory (VmRSS of /proc/PID/status)."""
    for line in Path(f"/proc/{server.pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS line")


def _header(architecture_id: str, shape: tuple[int, ...], **fields: Any) -> ks.StreamKernelRequest:
    return ks.StreamKernelRequest(
        header=ks.StreamKernelHeader(
            architecture_id=architecture_id,
            get=kinds.to_codes(("nngp",)),
            dtype=tensor.dtype_code(np.dtype(np.float32)),
            x1_shape=shape,
            **fields,
        )
    )


def _chunks(nbytes: int, size: int = 4 * MIB) -> Iterator[ks.StreamKernelRequest]:
    piece = b"\0" * size
    for offset in range(0, nbytes, size):
        yield ks.StreamKernelRequest(
            chunk=ks.InputChunk(slot=ks.INPUT_SLOT_X1, offset=offset, data=piece)
        )


def _answer(call: Any) -> tuple[list[ks.StreamKernelResponse], grpc.RpcError | None]:
    """The responses of a stream, and the error that ended it (None: OK)."""
    got: list[ks.StreamKernelResponse] = []
    try:
        for response in call:
            got.append(response)
    except grpc.RpcError as e:
        return got, e
    return got, None


def _settled_rss(server: ServerProcess, seconds: float = 1.0) -> int:
    time.sleep(seconds)  # the calls' ends reach the server's loop
    return rss_bytes(server)


def _stalled(
    messages: list[ks.StreamKernelRequest], release: threading.Event
) -> Iterator[ks.StreamKernelRequest]:
    """`messages`, then nothing (no half-close) until `release` is set."""
    yield from messages
    release.wait(WAIT_SECONDS)


@timeout_for(40)
def test_declared_inputs_take_memory_as_they_arrive_and_go_on_every_error(
    lab: ServerProcess, stub: Any, arch_id: str
) -> None:
    """Headers declaring a 1 GiB x1, then: nothing (half-close); 32 MiB of chunks and a
    half-close; 32 MiB and a chunk out of order; 32 MiB and a stall ended by a cancel, or by
    the call's deadline. Each ends as it should (INVALID_ARGUMENT naming what is wrong,
    CANCELLED, DEADLINE_EXCEEDED), and the server keeps less than one such buffer."""
    shape = (GIB // 4, 1)  # float32
    _answer(stub.StreamKernel(iter([_header(arch_id, shape)]), metadata=BEARER))  # compiled
    before = _settled_rss(lab)
    with Probe(lab.target) as probe:
        for sent in (0, 0, 32 * MIB, 32 * MIB):
            messages = [_header(arch_id, shape), *_chunks(sent)]
            got, error = _answer(stub.StreamKernel(iter(messages), metadata=BEARER))
            assert error is not None and error.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert f"got {sent} of the {GIB} bytes" in str(error.details())
            assert got and got[0].HasField("plan")
        out_of_order = [*_chunks(32 * MIB), *_chunks(MIB)]  # the last restarts at 0
        messages = [_header(arch_id, shape), *out_of_order]
        _, error = _answer(stub.StreamKernel(iter(messages), metadata=BEARER))
        assert error is not None and error.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert f"chunk at byte 0, expected {32 * MIB}" in str(error.details())
        release = threading.Event()
        stalled = [_header(arch_id, shape), *_chunks(32 * MIB)]
        call = stub.StreamKernel(_stalled(stalled, release), metadata=BEARER)
        assert next(call).HasField("plan")  # planned: the chunks are on their way
        time.sleep(1.0)
        call.cancel()
        call = stub.StreamKernel(_stalled(stalled, release), metadata=BEARER, timeout=2)
        _, error = _answer(call)
        assert error is not None and error.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        release.set()
    grown = _settled_rss(lab) - before
    print(f"RSS grew {grown / MIB:.0f} MiB over 7 streams declaring 1 GiB each")
    assert grown < RSS_SLACK_BYTES
    assert probe.worst() < PROBE_BOUND_SECONDS, probe.summary()


@timeout_for(40)
def test_failed_unary_calls_free_their_decoded_inputs_at_once(
    lab: ServerProcess, stub: Any
) -> None:
    """ComputeKernel with a 128 MiB x1 for an id the tenant does not hold: NOT_FOUND after
    the inputs were decoded. Eight such calls leave the server no bigger (today's code kept
    each decoded copy in a reference cycle until a GC pass)."""
    payload = 128 * MIB
    x1 = tensor.encode(np.zeros((payload // 4, 1), np.float32), "x1")
    request = ks.ComputeKernelRequest(architecture_id="0" * 32, x1=x1)
    for _ in range(2):  # grpc's buffers grown to the message's size
        with pytest.raises(grpc.RpcError):
            stub.ComputeKernel(request, metadata=BEARER, timeout=WAIT_SECONDS)
    before = _settled_rss(lab)
    for _ in range(8):
        with pytest.raises(grpc.RpcError) as raised:
            stub.ComputeKernel(request, metadata=BEARER, timeout=WAIT_SECONDS)
        assert raised.value.code() == grpc.StatusCode.NOT_FOUND
    grown = _settled_rss(lab) - before
    print(f"RSS grew {grown / MIB:.0f} MiB over 8 failed 128 MiB unary calls")
    # grpc's and the allocator's caches may keep the last call's request and decoded copy;
    # the cycle kept every call's (8 x 256 MiB): 2 GiB.
    assert grown < RSS_SLACK_BYTES + 2 * payload


@timeout_for(60)
def test_huge_grids_plan_at_once_and_oversized_shapes_are_refused(
    lab: ServerProcess, stub: Any, arch_id: str
) -> None:
    """x1 [2e8, 1] plan_only and [1e9, 1] (4 GB, under the 4 GiB input limit) plan without
    listing their 10**10 tiles; [2**62, 4] and a plan over the input limit are refused with
    the numbers (today: a list of every tile, INTERNAL at the memory cap; and 2**62 rows
    wrapped to 0 bytes)."""
    before = _settled_rss(lab)
    with Probe(lab.target) as probe:
        got, error = _answer(
            stub.StreamKernel(
                iter([_header(arch_id, (2 * 10**8, 1), plan_only=True)]), metadata=BEARER
            )
        )
        assert error is None, error
        (answer,) = got
        rows = answer.plan.grid_rows
        assert rows == -(-(2 * 10**8) // answer.plan.tile_size)
        assert answer.plan.tiles == rows * (rows + 1) // 2

        got, error = _answer(
            stub.StreamKernel(iter([_header(arch_id, (10**9, 1))]), metadata=BEARER)
        )
        assert got[0].HasField("plan") and got[0].plan.tiles > 10**10
        assert error is not None and error.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "got 0 of the 4000000000 bytes" in str(error.details())

        for shape, plan_only, total in (((2**62, 4), False, 2**66), ((2**31, 1), True, 2**33)):
            header = _header(arch_id, shape, plan_only=plan_only)
            got, error = _answer(stub.StreamKernel(iter([header]), metadata=BEARER))
            assert not got and error is not None
            assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert f"the inputs hold {total} bytes" in str(error.details())
            assert "--max-stream-input-mb" in str(error.details())
    grown = _settled_rss(lab) - before
    print(f"RSS grew {grown / MIB:.0f} MiB over the huge plans")
    assert grown < RSS_SLACK_BYTES
    assert probe.worst() < PROBE_BOUND_SECONDS, probe.summary()
