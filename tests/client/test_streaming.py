"""Streamed kernels on the client: chunking, assembly and mirroring, out= files, progress, and
one job spread over several real server processes, some of which die on the way.

Every streamed kernel is checked against the unary ComputeKernel of the same inputs
(float64, relative error <= 1e-12).
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import ntkserve.client
import numpy as np
import pytest
from ntkserve import Client, errors, stax, tensor
from ntkserve.assembly import Assembler, mirror_axes, output_paths
from ntkserve.replicas import job_tiles, split
from ntkserve.streaming import CHUNK_BYTES, prepare, requests
from ntkserve.v1 import kernel_service_pb2 as ks

from tests.conftest import WAIT_SECONDS, ServerProcess

Array = np.ndarray[Any, Any]
MLP = stax.serial(stax.Dense(64, W_std=1.5, b_std=0.05), stax.Relu(), stax.Dense(1))
RTOL = 1e-12


def _inputs(n: int, *features: int, seed: int = 0) -> Array:
    return np.random.default_rng(seed).standard_normal((n, *(features or (8,))))


def assert_close(got: Array, want: Array) -> None:
    assert got.shape == want.shape and got.dtype == want.dtype
    scale = max(float(np.abs(want).max()), 1e-300)
    assert float(np.abs(got - want).max()) <= RTOL * scale


# -- pure parts ---------------------------------------------------------------------------------


def test_inputs_go_out_in_order_in_chunks_without_a_copy() -> None:
    x1 = _inputs(3, 100_000)  # 2.4 MB: three chunks (and two for x2)
    x2 = _inputs(2, 100_000, seed=1)
    job = prepare(x1, x2, ["ntk"], None)
    assert np.shares_memory(job.x1, x1) and job.x2 is not None and np.shares_memory(job.x2, x2)
    messages = list(requests(job, job.header("id", tile_size=16, tiles=[(0, 1)])))
    header = messages[0].header
    assert list(header.x1_shape) == [3, 100_000] and list(header.x2_shape) == [2, 100_000]
    assert header.tile_size == 16 and [(t.row, t.col) for t in header.tiles] == [(0, 1)]
    assert header.dtype == tensor.dtype_code(np.dtype(np.float64))
    for slot, x in ((ks.INPUT_SLOT_X1, x1), (ks.INPUT_SLOT_X2, x2)):
        chunks = [m.chunk for m in messages[1:] if m.chunk.slot == slot]
        assert [c.offset for c in chunks] == list(range(0, x.nbytes, CHUNK_BYTES))
        assert all(len(c.data) <= CHUNK_BYTES for c in chunks) and len(chunks) > 1
        assert b"".join(c.data for c in chunks) == x.tobytes()
    plan_only = list(requests(job, job.header("id", plan_only=True)))
    assert len(plan_only) == 1 and plan_only[0].header.plan_only


def test_x2_none_sends_no_x2_and_checks_dtypes() -> None:
    job = prepare(_inputs(4).astype(np.float32), None, ["nngp"], 2)
    header = job.header("id")
    assert list(header.x2_shape) == [] and header.tile_size == 2
    assert all(m.chunk.slot != ks.INPUT_SLOT_X2 for m in requests(job, header))
    with pytest.raises(tensor.TensorError, match=r"x2\.dtype"):
        prepare(_inputs(4), _inputs(4).astype(np.float32), ["ntk"], None)
    with pytest.raises(tensor.TensorError, match="x1"):
        prepare(np.zeros((4, 8), np.int64), None, ["ntk"], None)
    for bad in (0, -3, 2.5, True):
        with pytest.raises(ValueError, match="tile"):
            prepare(_inputs(4), None, ["ntk"], bad)


def test_mirror_axes_swap_examples_and_position_groups() -> None:
    assert mirror_axes(2, False) == (1, 0)
    assert mirror_axes(4, False) == (1, 0, 2, 3)  # (N, N, H, W): same-position covariances
    assert mirror_axes(6, True) == (1, 0, 4, 5, 2, 3)  # (N, N, H, W, H', W')
    assert mirror_axes(4, True) == (1, 0, 3, 2)


def test_tiles_and_units() -> None:
    plan = ks.StreamKernelPlan(tile_size=8, grid_rows=3, grid_cols=3, mirrored=True)
    assert job_tiles(plan) == [(0, 0), (0, 1), (0, 2), (1, 1), (1, 2), (2, 2)]
    plan.mirrored = False
    assert len(job_tiles(plan)) == 9
    tiles = job_tiles(plan)
    for units in (1, 4, 9, 50):
        parts = split(tiles, units)
        assert [t for p in parts for t in p] == tiles
        assert len(parts) == min(units, 9) and max(map(len, parts)) - min(map(len, parts)) <= 1


def test_output_paths_insert_the_kind_before_the_suffix(tmp_path: Path) -> None:
    assert output_paths(tmp_path / "k.npy", ["ntk"], True) == [tmp_path / "k.npy"]
    assert output_paths(str(tmp_path / "k.npy"), ["nngp", "ntk"], False) == [
        tmp_path / "k.nngp.npy",
        tmp_path / "k.ntk.npy",
    ]


def _symmetric_pairs_kernel(n: int, p: int) -> Array:
    """A kernel (N, N, P, P) with K[j, i, b, a] = K[i, j, a, b], nothing else symmetric."""
    a = np.random.default_rng(3).standard_normal((n, n, p, p))
    return a + a.transpose(1, 0, 3, 2)


@pytest.mark.parametrize("out", [False, True])
def test_assembler_mirrors_upper_tiles_as_they_arrive(tmp_path: Path, out: bool) -> None:
    n, p, size = 7, 2, 3
    want = _symmetric_pairs_kernel(n, p)
    plan = ks.StreamKernelPlan(
        tile_size=size,
        grid_rows=3,
        grid_cols=3,
        mirrored=True,
        kernel_shape=[n, n, p, p],
        position_pairs=True,
    )
    paths = [tmp_path / "k.npy"] if out else None
    assembler = Assembler(plan, ["ntk"], np.dtype(np.float64), paths)
    for i, j in job_tiles(plan):
        rows, cols = slice(i * size, (i + 1) * size), slice(j * size, (j + 1) * size)
        block = want[rows, cols]
        for r in range(block.shape[0]):  # one block per row, as a server may split a tile
            assembler.place(
                ks.KernelTile(
                    kind=ks.KERNEL_KIND_NTK,
                    row_start=i * size + r,
                    col_start=j * size,
                    values=tensor.encode(block[r : r + 1]),
                )
            )
    (got,) = assembler.result()
    np.testing.assert_array_equal(got, want)
    if out:
        assert isinstance(got, np.memmap)
        np.testing.assert_array_equal(np.load(tmp_path / "k.npy"), want)


def test_assembler_refuses_blocks_that_do_not_fit() -> None:
    plan = ks.StreamKernelPlan(tile_size=4, grid_rows=1, grid_cols=1, kernel_shape=[4, 4])
    assembler = Assembler(plan, ["ntk"], np.dtype(np.float64))
    for tile in (
        ks.KernelTile(kind=ks.KERNEL_KIND_NTK, row_start=2, values=tensor.encode(np.ones((3, 4)))),
        ks.KernelTile(kind=ks.KERNEL_KIND_NNGP, values=tensor.encode(np.ones((1, 4)))),
        ks.KernelTile(kind=ks.KERNEL_KIND_NTK, values=tensor.encode(np.ones((1, 4), np.float32))),
    ):
        with pytest.raises(errors.InternalError, match="malformed"):
            assembler.place(tile)


# -- one server ---------------------------------------------------------------------------------


@pytest.mark.parametrize("tile", [5, 8, 64])
@pytest.mark.parametrize("with_x2", [False, True])
def test_streamed_equals_unary(server: ServerProcess, tile: int, with_x2: bool) -> None:
    x1 = _inputs(37)
    x2 = _inputs(21, seed=1) if with_x2 else None
    with Client(server.target) as c:
        want = c.kernel(MLP, x1, x2)
        assert c.last_stream is None  # small: one ComputeKernel call
        got = c.kernel(MLP, x1, x2, tile=tile, progress=False)
        report = c.last_stream
    assert_close(got, want)
    assert report is not None and report.tile_size == tile
    grid = -(-37 // tile), -(-(21 if with_x2 else 37) // tile)
    tiles = grid[0] * grid[1] if with_x2 else grid[0] * (grid[0] + 1) // 2
    assert report.tiles == tiles == report.lanes[0].tiles_done


@pytest.mark.parametrize("with_x2", [False, True])
def test_both_kernels_into_npy_files(server: ServerProcess, tmp_path: Path, with_x2: bool) -> None:
    x1, x2 = _inputs(29), (_inputs(18, seed=2) if with_x2 else None)
    with Client(server.target) as c:
        want = c.kernel(MLP, x1, x2, get=("nngp", "ntk"))
        got = c.kernel(MLP, x1, x2, get=("nngp", "ntk"), out=tmp_path / "k.npy", progress=False)
        single = c.kernel(MLP, x1, x2, get="nngp", tile=6, out=str(tmp_path / "nngp.npy"))
    assert isinstance(got, tuple) and len(got) == 2
    for name, array, reference in zip(("nngp", "ntk"), got, want, strict=True):
        assert isinstance(array, np.memmap)
        assert_close(np.load(tmp_path / f"k.{name}.npy"), reference)
        assert_close(np.asarray(array), reference)
    assert isinstance(single, np.memmap)
    assert_close(np.load(tmp_path / "nngp.npy"), want[0])


@pytest.mark.parametrize(
    "arch",
    [
        # readout after pooling: (N1, N2)
        stax.serial(stax.Conv(8, (3, 3)), stax.Relu(), stax.GlobalAvgPool(), stax.Dense(1)),
        # positions kept, same-position covariances: (N1, N2, H, W)
        stax.serial(stax.Conv(8, (3, 3), padding="SAME"), stax.Relu(), stax.Conv(1, (3, 3))),
        # pooling that keeps positions, every pair of them: (N1, N2, H, W, H, W)
        stax.serial(stax.Conv(8, (3, 3), padding="SAME"), stax.Relu(), stax.AvgPool((2, 2))),
    ],
    ids=["global-pool", "positions", "position-pairs"],
)
def test_convolutional_kernels_stream_and_mirror(server: ServerProcess, arch: Any) -> None:
    x1, x2 = _inputs(11, 5, 5, 2), _inputs(6, 5, 5, 2, seed=4)
    with Client(server.target) as c:
        for other in (None, x2):
            want = c.kernel(arch, x1, other, get=("nngp", "ntk"))
            got = c.kernel(arch, x1, other, get=("nngp", "ntk"), tile=4, progress=False)
            for g, w in zip(got, want, strict=True):
                assert_close(g, w)


def test_large_requests_are_streamed_on_their_own(
    server: ServerProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    x1 = _inputs(40)
    with Client(server.target) as c:
        want = c.kernel(MLP, x1)
        assert c.last_stream is None
        # 40 * 40 float64 = 12800 bytes of kernel: over a threshold of 10 kB, under 20 kB
        monkeypatch.setattr(ntkserve.client, "STREAM_THRESHOLD_BYTES", 20_000)
        c.kernel(MLP, x1)
        assert c.last_stream is None
        monkeypatch.setattr(ntkserve.client, "STREAM_THRESHOLD_BYTES", 10_000)
        got = c.kernel(MLP, x1)
        assert c.last_stream is not None
    assert_close(got, want)


def test_progress_bar_counts_tiles(
    server: ServerProcess, capsys: pytest.CaptureFixture[str]
) -> None:
    with Client(server.target) as c:
        c.kernel(MLP, _inputs(20), tile=4, progress=True)
        assert "15/15" in capsys.readouterr().err  # 5 x 5 grid, upper triangle
        c.kernel(MLP, _inputs(20), tile=4, progress=False)
        c.kernel(MLP, _inputs(20), tile=4)  # None: stderr is not a terminal here
        assert capsys.readouterr().err == ""


def test_stream_errors_are_typed(server: ServerProcess) -> None:
    with Client(server.target) as c:
        with pytest.raises(errors.NotFoundError):
            c.kernel("0" * 32, _inputs(9), tile=4)
        with pytest.raises(errors.InvalidArgumentError):
            c.kernel(MLP, _inputs(9), _inputs(9, 7), tile=4)
        architecture_id = c.register(MLP)
    with Client(server.target, timeout=1e-6) as c, pytest.raises(errors.DeadlineExceededError):
        c.kernel(architecture_id, _inputs(9), tile=4)


# -- several replicas ---------------------------------------------------------------------------


def _start(start_server: type[ServerProcess], tmp_path: Path, count: int) -> list[ServerProcess]:
    """`count` servers, started side by side (each one waits for jax to load)."""
    with ThreadPoolExecutor(count) as pool:
        return list(pool.map(lambda k: start_server(tmp_path / f"data{k}"), range(count)))


@pytest.fixture(scope="module")
def trio(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[ServerProcess]]:
    """Three replicas that stay up for the module (for tests that kill none)."""
    root = tmp_path_factory.mktemp("trio")
    with ThreadPoolExecutor(3) as pool:
        servers = list(pool.map(lambda k: ServerProcess(root / f"data{k}"), range(3)))
    yield servers
    for s in servers:
        s.terminate()


def _tiles_computed(server: ServerProcess) -> int:
    """Tiles this server sent, summed over its StreamKernel log lines."""
    return sum(int(m) for m in re.findall(r"method=StreamKernel .*tiles=(\d+)/", server.log_text()))


def test_a_job_spread_over_replicas_equals_one_server(trio: list[ServerProcess]) -> None:
    x1, x2 = _inputs(45), _inputs(30, seed=5)
    with Client(trio[0].target) as c:
        want = c.kernel(MLP, x1, x2, get=("nngp", "ntk"))
        want_sym = c.kernel(MLP, x1)
    with Client([s.target for s in trio]) as c:
        got = c.kernel(MLP, x1, x2, get=("nngp", "ntk"), tile=4, progress=False)
        report = c.last_stream
        got_sym = c.kernel(MLP, x1, tile=4, progress=False)
        report_sym = c.last_stream
        ids = {c.register(MLP)}
    for g, w in zip(got, want, strict=True):
        assert_close(g, w)
    assert_close(got_sym, want_sym)
    assert report is not None and report.tiles == 12 * 8
    assert report_sym is not None and report_sym.tiles == 12 * 13 // 2
    for r in (report, report_sym):
        assert sum(lane.tiles_done for lane in r.lanes) == r.tiles and r.requeued_tiles == 0
    assert all(s.wait_for_log("method=StreamKernel code=OK") for s in trio)
    assert all(_tiles_computed(s) > 0 for s in trio)
    for s in trio:  # the spec was registered on every replica, under one id
        with Client(s.target) as c:
            ids |= {a.id for a in c.list_architectures()}
    assert len(ids) == 1


def test_round_robin_resolver_target(trio: list[ServerProcess]) -> None:
    arch = stax.serial(stax.Dense(32, W_std=1.3), stax.Erf(), stax.Dense(1))  # new to them
    x1 = _inputs(40, seed=6)
    before = [_tiles_computed(s) for s in trio[1:]]
    with Client(trio[0].target) as c:
        want = c.kernel(arch, x1)
    target = "ipv4:" + ",".join(s.target for s in trio[1:])
    with Client(target) as c:
        got = c.kernel(arch, x1, tile=4, progress=False)
        report = c.last_stream
    assert_close(got, want)
    assert report is not None and len(report.lanes) == 2
    deadline = time.monotonic() + WAIT_SECONDS  # log lines follow the last message; wait for them
    while not all(_tiles_computed(s) > b for s, b in zip(trio[1:], before, strict=True)):
        assert time.monotonic() < deadline, [_tiles_computed(s) for s in trio[1:]]
        time.sleep(0.05)


def test_non_transient_errors_fail_a_spread_job(trio: list[ServerProcess]) -> None:
    with Client([s.target for s in trio]) as c:
        with pytest.raises(errors.InvalidArgumentError):
            c.kernel(MLP, _inputs(9), _inputs(9, 7), tile=4)
        with pytest.raises(errors.NotFoundError):
            c.kernel("0" * 32, _inputs(9), tile=4)
        architecture_id = c.register(MLP)
    targets = [s.target for s in trio]
    with Client(targets, timeout=1e-6) as c, pytest.raises(errors.DeadlineExceededError):
        c.kernel(architecture_id, _inputs(9), tile=4)  # the job's deadline passes


def test_replicas_that_die_hand_their_tiles_to_the_others(
    start_server: type[ServerProcess], tmp_path: Path
) -> None:
    a, b, d = _start(start_server, tmp_path, 3)
    targets = [a.target, b.target, d.target]
    x1 = _inputs(61, seed=7)
    with Client(a.target) as c:
        want = c.kernel(MLP, x1)
        want_tiled = c.kernel(MLP, x1, tile=2, progress=False)
    assert_close(want_tiled, want)
    tiles = 31 * 32 // 2

    with Client(targets) as c:  # all three up: also warms them (no compilation below)
        np.testing.assert_array_equal(c.kernel(MLP, x1, tile=2, progress=False), want_tiled)
        assert c.last_stream is not None and all(lane.tiles_done for lane in c.last_stream.lanes)

    lock, done_by_b = threading.Lock(), [0]

    def kill_b_after_its_second_tile(target: str, row: int, col: int) -> None:
        with lock:
            if target == b.target:
                done_by_b[0] += 1
                if done_by_b[0] == 2:
                    b.kill()  # in the middle of its first call (of ~55 tiles)

    with Client(targets) as c:
        c._on_tile_done = kill_b_after_its_second_tile
        got = c.kernel(MLP, x1, tile=2, progress=False)
        report = c.last_stream
        assert report is not None and report.tiles == tiles
        lane_b = next(lane for lane in report.lanes if lane.target == b.target)
        assert isinstance(lane_b.error, errors.UnavailableError)
        assert 2 <= lane_b.tiles_done < tiles // 9 and report.requeued_tiles > 0
        assert sum(lane.tiles_done for lane in report.lanes) == tiles
        np.testing.assert_array_equal(got, want_tiled)  # the same programs compute each tile

        # b is down before the next job starts; then d goes too: a alone finishes it
        c._on_tile_done = lambda target, row, col: d.kill() if target == d.target else None
        again = c.kernel(MLP, x1, tile=2, progress=False)
        np.testing.assert_array_equal(again, want_tiled)
        report = c.last_stream
        assert report is not None and report.requeued_tiles > 0
        assert {lane.target for lane in report.lanes if lane.tiles_done} <= {a.target, d.target}

    with Client([b.target, d.target, a.target]) as c:  # the plan comes from the third
        np.testing.assert_array_equal(c.kernel(MLP, x1, tile=2, progress=False), want_tiled)
        a.kill()
        with pytest.raises(errors.UnavailableError):
            c.kernel(MLP, x1, tile=2, progress=False)
