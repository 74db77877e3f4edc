"""StreamKernel at the protocol level, with a raw stub against a real server process.

The server here sees two CPU devices (XLA's host-platform device count), has a 64 MiB
tile-memory budget and a 1 MiB limit on streamed inputs, so the limits can be reached with
small inputs. Results are compared with ComputeKernel's whole kernels in float64.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from typing import Any

import grpc
import numpy as np
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from ntkserve import Client, stax, tensor
from ntkserve.v1 import kernel_service_pb2 as ks
from ntkserve.v1 import kernel_service_pb2_grpc

from tests.conftest import WAIT_SECONDS, ServerProcess

MLP = stax.serial(stax.Dense(64, W_std=1.3, b_std=0.1), stax.Relu(), stax.Dense(1))
CNN_GAP = stax.serial(
    stax.Conv(4, (3, 3), padding="SAME"), stax.Relu(), stax.GlobalAvgPool(), stax.Dense(1)
)
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
KIND = {"nngp": ks.KERNEL_KIND_NNGP, "ntk": ks.KERNEL_KIND_NTK}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, monkeypatch_module: Any) -> Iterator[Any]:
    monkeypatch_module.setenv("XLA_FLAGS", "--xla_force_host_platform_device_count=2")
    proc = ServerProcess(
        tmp_path_factory.mktemp("stream"),
        "--tile-memory-mb",
        "64",
        "--max-stream-input-mb",
        "1",
    )
    yield proc
    proc.kill()


@pytest.fixture(scope="module")
def monkeypatch_module() -> Iterator[pytest.MonkeyPatch]:
    with pytest.MonkeyPatch.context() as mp:
        yield mp


@pytest.fixture(scope="module")
def client(server: ServerProcess) -> Iterator[Client]:
    with Client(server.target) as c:
        yield c


@pytest.fixture(scope="module")
def stub(server: ServerProcess) -> Iterator[kernel_service_pb2_grpc.KernelServiceStub]:
    with grpc.insecure_channel(server.target) as channel:
        yield kernel_service_pb2_grpc.KernelServiceStub(channel)


def _messages(
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
            get=[KIND[g] for g in get],
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
    names = {v: k for k, v in KIND.items()}
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
    client: Client,
    stub: Any,
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
    aid = client.register(arch)
    plan, streamed, done, _ = _assemble(
        stub.StreamKernel(_messages(aid, x1, x2, tile_size=tile)), ("nngp", "ntk")
    )
    whole = client.kernel(aid, x1, x2, get=("nngp", "ntk"))
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
    client: Client, stub: Any, server: ServerProcess
) -> None:
    x = np.random.default_rng(1).standard_normal((700, 8))
    aid = client.register(MLP)
    plan, streamed, _, largest = _assemble(
        stub.StreamKernel(_messages(aid, x, None, get=("ntk",), tile_size=400)), ("ntk",)
    )
    assert largest < (1 << 20) + 4096, "a message over ~1 MiB"
    assert _relative(streamed["ntk"], client.kernel(aid, x)) <= 1e-12
    assert server.wait_for_log("tiles=3/3")  # the log line follows the last message
    line = [
        ln for ln in server.log_text().splitlines() if "StreamKernel" in ln and "tiles=3/3" in ln
    ][-1]
    assert "cpu:0:" in line and "cpu:1:" in line, line  # tiles went to both devices
    plan, _, _, _ = _assemble(stub.StreamKernel(_messages(aid, x, None, get=("ntk",))), ("ntk",))
    assert plan.tile_size == 700 and plan.tiles == 1  # auto: the whole kernel fits


def test_any_n_reuses_the_tile_programs(client: Client, stub: Any, server: ServerProcess) -> None:
    """Any N streams right through the one 8 x 8 tile shape, compiling no program for it
    after the first call but on a device that computed none of its tiles yet. The counter in
    the log is the server's, over every stream: the exact count, one program for any N, is
    test_tile_programs' (a TilePrograms of its own). It runs before the tests whose cancelled,
    expired or failed streams leave tiles in flight, which may compile after their call ended."""
    aid = client.register(MLP)
    rng = np.random.default_rng(5)
    compiled, devices_used = [], []
    for n in (37, 45, 29):  # ragged edges, padded to the one 8 x 8 tile shape
        x, y = rng.standard_normal((n, 8)), rng.standard_normal((n + 3, 8))
        after = len(server.log_text().splitlines())
        _, streamed, _, _ = _assemble(
            stub.StreamKernel(_messages(aid, x, y, get=("ntk",), tile_size=8)), ("ntk",)
        )
        assert _relative(streamed["ntk"], client.kernel(aid, x, y)) <= 1e-12
        line = _stream_log(server, after)
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


def test_plan_only_and_a_selection_of_tiles(client: Client, stub: Any) -> None:
    x = np.random.default_rng(2).standard_normal((20, 8))
    aid = client.register(MLP)
    header_only = _messages(aid, x, None, tile_size=6, plan_only=True)
    responses = list(stub.StreamKernel(iter([next(header_only)])))
    assert [r.WhichOneof("payload") for r in responses] == ["plan"]
    assert (responses[0].plan.grid_rows, responses[0].plan.tiles) == (4, 10)
    chosen = [ks.TileIndex(row=0, col=3), ks.TileIndex(row=2, col=2)]
    _, streamed, done, _ = _assemble(
        stub.StreamKernel(_messages(aid, x, None, get=("ntk",), tile_size=6, tiles=chosen)),
        ("ntk",),
    )
    assert sorted(done) == [(0, 3), (2, 2)]
    whole = client.kernel(aid, x)
    assert _relative(streamed["ntk"][0:6, 18:20], whole[0:6, 18:20]) <= 1e-12
    assert _relative(streamed["ntk"][12:18, 12:18], whole[12:18, 12:18]) <= 1e-12


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


def test_bad_streams_name_the_field_and_the_server_stays_up(client: Client, stub: Any) -> None:
    x = np.random.default_rng(3).standard_normal((10, 8))
    aid = client.register(MLP)
    good = list(_messages(aid, x, None, tile_size=4))
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
            _messages(aid, x, None, tile_size=4, tiles=[ks.TileIndex(row=2, col=0)])
        ),
        "header.tile_size": list(_messages(aid, x, None, tile_size=-1)),
        "header.x1_shape": list(_messages(aid, x[:, None, :][:, :, :0], None)),
        "header.dtype": [
            ks.StreamKernelRequest(
                header=ks.StreamKernelHeader(architecture_id=aid, x1_shape=[2, 8])
            )
        ],
        "x1.shape": list(_messages(client.register(CNN_GAP), x, None)),
    }
    for field, messages in cases.items():
        error = _error(stub.StreamKernel(iter(messages)), field)
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, (field, error.details())
        assert field in _fields(error), (field, _fields(error))
    error = _error(stub.StreamKernel(_messages(aid, nan, None)))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT and "NaN" in error.details()
    error = _error(stub.StreamKernel(_messages("no-such-id", x, None)))
    assert error.code() == grpc.StatusCode.NOT_FOUND
    assert client.kernel(aid, x).shape == (10, 10)  # still serving


def test_limits_give_resource_exhausted_with_the_numbers(client: Client, stub: Any) -> None:
    aid = client.register(CNN_GAP)
    big_images = np.zeros((2, 32, 32, 3))
    error = _error(stub.StreamKernel(_messages(aid, big_images, None)))
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert re.search(r"needs about \d+ MiB .* budget of 64 MiB", error.details()), error.details()
    small_images = np.zeros((200, 6, 6, 2))
    error = _error(stub.StreamKernel(_messages(aid, small_images, None, tile_size=128)))
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert re.search(r"tile_size \d+ would fit", error.details()), error.details()
    aid = client.register(MLP)
    error = _error(stub.StreamKernel(_messages(aid, np.zeros((20000, 8)), None)))
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and "1048576 bytes" in error.details()


def _stream_log(server: ServerProcess, after: int) -> str:
    deadline = time.monotonic() + WAIT_SECONDS
    while time.monotonic() < deadline:
        lines = server.log_text().splitlines()[after:]
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
    client: Client, stub: Any, server: ServerProcess
) -> None:
    x = np.random.default_rng(4).standard_normal((600, 8))
    aid = client.register(MLP)
    after = len(server.log_text().splitlines())
    call = stub.StreamKernel(_messages(aid, x, None, get=("ntk",), tile_size=8))
    seen = 0
    for message in call:
        seen += message.WhichOneof("payload") == "tile_done"
        if seen == 3:
            call.cancel()
            break
    line = _stream_log(server, after)
    sent, planned, computed = _tiles(line)
    assert "code=CANCELLED" in line and planned == 75 * 76 // 2
    assert computed <= sent + 2 * 2 + 2, line  # in flight: a tile per device, a queue slot each

    after = len(server.log_text().splitlines())
    with pytest.raises(grpc.RpcError) as info:
        for _ in stub.StreamKernel(_messages(aid, x, None, get=("ntk",), tile_size=8), timeout=1.0):
            time.sleep(0.05)  # a slow reader: the deadline passes mid-stream
    assert info.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    line = _stream_log(server, after)
    sent, planned, computed = _tiles(line)
    assert computed <= sent + 2 * 2 + 2 and computed < planned, line
