"""StreamKernel at the protocol level, with a raw stub against a real server process
(conftest.py's `stream_server`: two CPU devices, small budgets): tiles equal ComputeKernel's
whole kernels in float64, tile programs are reused, plans and selections, cancellation. The
error paths are test_streaming_errors.py's."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from typing import Any

import grpc
import numpy as np
import pytest
from ntkserve import Client, kinds, stax, tensor
from ntkserve.v1 import kernel_service_pb2 as ks

from tests.conftest import WAIT_SECONDS, ServerProcess
from tests.server.streaming_support import CNN_GAP, MLP, messages

CONV_POSITIONS = stax.serial(
    stax.Conv(4, (2, 2), padding="SAME"), stax.Relu(), stax.Conv(1, (2, 2))
)
CONV_POOLED_POSITIONS = stax.serial(
    stax.Conv(4, (2, 2), padding="SAME"), stax.Relu(), stax.AvgPool((2, 2))
)
# Dropout divides the Gram matrix's diagonal by the keep rate: the diagonal tiles, computed
# as Gram matrices themselves, must carry it and no other tile may.
DROPOUT_CNN = stax.serial(
    stax.Conv(4, (2, 2), padding="SAME"),
    stax.Relu(),
    stax.Dropout(0.6),
    stax.Conv(4, (2, 2)),
    stax.Relu(),
    stax.GlobalAvgPool(),
    stax.Dense(1),
)


def _mirror(k: np.ndarray, filled: np.ndarray, pairs: bool) -> np.ndarray:
    """The receiver's rule for mirrored plans: K[j, i] from K[i, j], position groups swapped."""
    d = (k.ndim - 2) // 2
    if pairs:
        swap = (1, 0, *range(2 + d, 2 + 2 * d), *range(2, 2 + d))
    else:
        swap = (1, 0, *range(2, k.ndim))
    return np.where(filled, k, np.transpose(k, swap))


def _assemble(
    responses: Iterator[ks.StreamKernelResponse], get: tuple[str, ...]
) -> tuple[ks.StreamKernelPlan, dict[str, np.ndarray], list[tuple[int, int]], int]:
    first = next(responses)
    assert first.WhichOneof("payload") == "plan"
    plan = first.plan
    shape = tuple(plan.kernel_shape)
    out = {g: np.zeros(shape) for g in get}
    filled = {g: np.zeros(shape, bool) for g in get}
    done, largest = [], 0
    names = kinds.NAME_OF
    for message in responses:
        largest = max(largest, message.ByteSize())
        if message.WhichOneof("payload") == "tile":
            t = message.tile
            v = tensor.decode(t.values)
            where = (
                slice(t.row_start, t.row_start + v.shape[0]),
                slice(t.col_start, t.col_start + v.shape[1]),
            )
            assert not filled[names[t.kind]][where].any(), "a block was sent twice"
            out[names[t.kind]][where] = v
            filled[names[t.kind]][where] = True
        else:
            assert message.WhichOneof("payload") == "tile_done"
            done.append((message.tile_done.row, message.tile_done.col))
    if plan.mirrored:
        out = {g: _mirror(out[g], filled[g], plan.position_pairs) for g in get}
    return plan, out, done, largest


def _relative(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a - b).max() / np.abs(b).max())


EPS = float(np.finfo(np.float64).eps)

CASES = [
    (MLP, (8,), 23, None, 5),
    (MLP, (8,), 23, 17, 5),
    (MLP, (8,), 23, 17, 64),
    (MLP, (8,), 9, None, 1),
    (CNN_GAP, (5, 5, 2), 7, None, 3),
    (CNN_GAP, (5, 5, 2), 7, 4, 3),
    (CONV_POSITIONS, (4, 4, 2), 6, None, 4),
    (CONV_POOLED_POSITIONS, (4, 4, 2), 5, None, 2),
    (DROPOUT_CNN, (3, 3, 2), 7, None, 3),
]


@pytest.mark.parametrize(("arch", "features", "n1", "n2", "tile"), CASES)
def test_streamed_tiles_equal_the_whole_kernel(
    stream_client: Client,
    stream_stub: Any,
    arch: Any,
    features: tuple[int, ...],
    n1: int,
    n2: int | None,
    tile: int,
) -> None:
    rng = np.random.default_rng(n1 + (n2 or 0) + tile)
    x1 = rng.standard_normal((n1, *features))
    x2 = None if n2 is None else rng.standard_normal((n2, *features))
    x1[0] = 0.0  # a zero row, and duplicates of rows on both sides
    x1[1] = x1[2]
    if x2 is not None:
        x2[0] = x1[2]
    aid = stream_client.register(arch)
    plan, streamed, done, _ = _assemble(
        stream_stub.StreamKernel(messages(aid, x1, x2, tile_size=tile)), ("nngp", "ntk")
    )
    whole = stream_client.kernel(aid, x1, x2, get=("nngp", "ntk"))
    assert plan.tile_size == tile and plan.mirrored == (x2 is None)
    expected_tiles = (
        plan.grid_rows * (plan.grid_rows + 1) // 2
        if x2 is None
        else plan.grid_rows * plan.grid_cols
    )
    assert plan.tiles == expected_tiles == len(done) == len(set(done))
    # A row paired with a copy of itself (not itself: x2=None's diagonal is exact) has a
    # rounded angle, and the ReLU NTK's arccos turns that into an error of order sqrt(eps)
    # relative, which differs between programs of different tile shapes (README, "Rows given
    # twice"). Those entries get 10 sqrt(eps); every other entry must agree to 1e-12.
    rows2 = x1 if x2 is None else x2
    copies = np.all(x1.reshape(n1, 1, -1) == rows2.reshape(1, len(rows2), -1), axis=-1)
    if x2 is None:
        np.fill_diagonal(copies, False)
    for name, k in zip(("nngp", "ntk"), whole, strict=True):
        assert streamed[name].shape == k.shape
        copied = copies.reshape(copies.shape + (1,) * (k.ndim - 2))
        scale = np.abs(k).max()
        assert np.abs(np.where(copied, 0, streamed[name] - k)).max() <= 1e-12 * scale, name
        assert np.abs(np.where(copied, streamed[name] - k, 0)).max() <= 10 * np.sqrt(EPS) * scale


def test_auto_tile_blocks_and_both_devices(
    stream_client: Client, stream_stub: Any, stream_server: ServerProcess
) -> None:
    x = np.random.default_rng(1).standard_normal((700, 8))
    aid = stream_client.register(MLP)
    plan, streamed, _, largest = _assemble(
        stream_stub.StreamKernel(messages(aid, x, None, get=("ntk",), tile_size=400)), ("ntk",)
    )
    assert largest < (1 << 20) + 4096, "a message over ~1 MiB"
    assert _relative(streamed["ntk"], stream_client.kernel(aid, x)) <= 1e-12
    assert stream_server.wait_for_log("tiles=3/3")  # the log line follows the last message
    line = [
        ln
        for ln in stream_server.log_text().splitlines()
        if "StreamKernel" in ln and "tiles=3/3" in ln
    ][-1]
    assert "cpu:0:" in line and "cpu:1:" in line, line  # tiles went to both devices
    plan, _, _, _ = _assemble(
        stream_stub.StreamKernel(messages(aid, x, None, get=("ntk",))), ("ntk",)
    )
    assert plan.tile_size == 700 and plan.tiles == 1  # auto: the whole kernel fits


def test_any_n_reuses_the_tile_programs(
    stream_client: Client, stream_stub: Any, stream_server: ServerProcess
) -> None:
    """Any N streams right through the one 8 x 8 tile shape, compiling no program for it
    after the first call but on a device that computed none of its tiles yet. The counter in
    the log is the server's, over every stream: the exact count, one program for any N, is
    test_tile_programs' (a TilePrograms of its own). It runs before the tests whose cancelled,
    expired or failed streams leave tiles in flight, which may compile after their call ended."""
    aid = stream_client.register(MLP)
    rng = np.random.default_rng(5)
    compiled, devices_used = [], []
    for n in (37, 45, 29):  # ragged edges, padded to the one 8 x 8 tile shape
        x, y = rng.standard_normal((n, 8)), rng.standard_normal((n + 3, 8))
        after = len(stream_server.log_text().splitlines())
        _, streamed, _, _ = _assemble(
            stream_stub.StreamKernel(messages(aid, x, y, get=("ntk",), tile_size=8)), ("ntk",)
        )
        assert _relative(streamed["ntk"], stream_client.kernel(aid, x, y)) <= 1e-12
        line = _stream_log(stream_server, after)
        m = re.search(r"tile_programs_compiled=(\d+)", line)
        assert m
        compiled.append(int(m.group(1)))
        used = re.search(r"computed=(\S*)", line)
        assert used
        devices_used.append({part.split(":")[0] for part in used.group(1).split(",") if part})
    # Under load one device may compute every tile of a call: the other compiles its program
    # when it computes its first tile, in a later call. Nothing else is compiled for any N.
    new_devices = len((devices_used[1] | devices_used[2]) - devices_used[0])
    assert compiled[2] - compiled[0] <= new_devices, (compiled, devices_used)


def test_plan_only_and_a_selection_of_tiles(stream_client: Client, stream_stub: Any) -> None:
    x = np.random.default_rng(2).standard_normal((20, 8))
    aid = stream_client.register(MLP)
    header_only = messages(aid, x, None, tile_size=6, plan_only=True)
    responses = list(stream_stub.StreamKernel(iter([next(header_only)])))
    assert [r.WhichOneof("payload") for r in responses] == ["plan"]
    assert (responses[0].plan.grid_rows, responses[0].plan.tiles) == (4, 10)
    chosen = [ks.TileIndex(row=0, col=3), ks.TileIndex(row=2, col=2)]
    _, streamed, done, _ = _assemble(
        stream_stub.StreamKernel(messages(aid, x, None, get=("ntk",), tile_size=6, tiles=chosen)),
        ("ntk",),
    )
    assert sorted(done) == [(0, 3), (2, 2)]
    whole = stream_client.kernel(aid, x)
    assert _relative(streamed["ntk"][0:6, 18:20], whole[0:6, 18:20]) <= 1e-12
    assert _relative(streamed["ntk"][12:18, 12:18], whole[12:18, 12:18]) <= 1e-12


def _stream_log(stream_server: ServerProcess, after: int) -> str:
    deadline = time.monotonic() + WAIT_SECONDS
    while time.monotonic() < deadline:
        lines = stream_server.log_text().splitlines()[after:]
        found = [ln for ln in lines if "method=StreamKernel" in ln]
        if found:
            return found[-1]
        time.sleep(0.1)
    raise AssertionError("no StreamKernel log line")


def _tiles(line: str) -> tuple[int, int, int]:
    m = re.search(r"tiles=(\d+)/(\d+) computed=(\S*)", line)
    assert m, line
    computed = sum(int(part.rsplit(":", 1)[1]) for part in m.group(3).split(",") if part)
    return int(m.group(1)), int(m.group(2)), computed


def test_cancelled_and_expired_streams_stop_within_a_tile(
    stream_client: Client, stream_stub: Any, stream_server: ServerProcess
) -> None:
    x = np.random.default_rng(4).standard_normal((600, 8))
    aid = stream_client.register(MLP)
    after = len(stream_server.log_text().splitlines())
    call = stream_stub.StreamKernel(messages(aid, x, None, get=("ntk",), tile_size=8))
    seen = 0
    for message in call:
        seen += message.WhichOneof("payload") == "tile_done"
        if seen == 3:
            call.cancel()
            break
    line = _stream_log(stream_server, after)
    sent, planned, computed = _tiles(line)
    assert "code=CANCELLED" in line and planned == 75 * 76 // 2
    assert computed <= sent + 2 * 2 + 2, line  # in flight: a tile per device, a queue slot each

    after = len(stream_server.log_text().splitlines())
    with pytest.raises(grpc.RpcError) as info:
        for _ in stream_stub.StreamKernel(
            messages(aid, x, None, get=("ntk",), tile_size=8), timeout=1.0
        ):
            time.sleep(0.05)  # a slow reader: the deadline passes mid-stream
    assert info.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    line = _stream_log(stream_server, after)
    sent, planned, computed = _tiles(line)
    assert computed <= sent + 2 * 2 + 2 and computed < planned, line
