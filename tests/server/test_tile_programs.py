"""TilePrograms, in process (no server): the tile size chosen fits the memory budget and halves
when the budget is one byte short; a size asked for is kept or refused with the one that
fits; programs compile once per tile shape and device, for any N, in a bounded cache.

Counts here are the TilePrograms' own counters, so compilations elsewhere in the process
cannot move them."""

from __future__ import annotations

import jax
import numpy as np
import pytest
from ntkserve import stax
from ntkserve_engine.kernels import KernelFn
from ntkserve_server.budgets import tile_budget
from ntkserve_server.config import ServerConfig
from ntkserve_server.tile_programs import (
    TiledKernel,
    TilePrograms,
    TileTooLarge,
    estimate_bytes,
)
from ntkserve_server.tiles import TileGrid, padded_rows

jax.config.update("jax_enable_x64", True)  # type: ignore[no-untyped-call]  # as the server

MLP = stax.serial(stax.Dense(64, W_std=1.3, b_std=0.1), stax.Relu(), stax.Dense(1))
CNN_GAP = stax.serial(
    stax.Conv(4, (3, 3), padding="SAME"), stax.Relu(), stax.GlobalAvgPool(), stax.Dense(1)
)
UNLIMITED = 1 << 50


@pytest.fixture(scope="module")
def mlp() -> KernelFn:
    return KernelFn(MLP)


def _kernel(n1: int, n2: int | None = None, features: tuple[int, ...] = (8,)) -> TiledKernel:
    return TiledKernel(n1, n2 or n1, features, "float64", ("ntk",), symmetric=n2 is None)


def _need(kfn: KernelFn, kernel: TiledKernel, size: int) -> int:
    return estimate_bytes(kfn, kernel.shape(size, kernel.symmetric))


@pytest.mark.parametrize("size", [4, 8, 16, 32])
def test_the_chosen_size_fits_the_budget_and_halves_one_byte_below(
    mlp: KernelFn, size: int
) -> None:
    kernel = _kernel(64, 64)  # 64 divides every power of two: the largest fitting has least work
    budget = _need(mlp, kernel, size)
    chosen, tile_bytes = TilePrograms(budget).choose_size(mlp, kernel)
    assert (chosen, tile_bytes) == (size, budget)
    smaller, smaller_bytes = TilePrograms(budget - 1).choose_size(mlp, kernel)
    assert smaller == size // 2
    assert smaller_bytes == _need(mlp, kernel, size // 2) <= budget - 1


def test_a_pooling_network_gets_a_smaller_tile_for_the_same_budget(mlp: KernelFn) -> None:
    budget = 64 << 20
    fc, _ = TilePrograms(budget).choose_size(mlp, _kernel(512, 512, (8, 8, 3)))
    cnn_kernel = _kernel(512, 512, (8, 8, 3))
    cnn, cnn_bytes = TilePrograms(budget).choose_size(KernelFn(CNN_GAP), cnn_kernel)
    assert cnn < fc and cnn_bytes <= budget


def test_max_tile_caps_the_size(mlp: KernelFn) -> None:
    assert TilePrograms(UNLIMITED, max_tile=16).choose_size(mlp, _kernel(64, 64))[0] == 16


def test_a_kernel_smaller_than_a_tile_is_one_tile_of_its_own_size(mlp: KernelFn) -> None:
    size, _ = TilePrograms(UNLIMITED).choose_size(mlp, _kernel(37, 45))
    assert size == 45
    assert list(TileGrid(37, 45, size, symmetric=False).all_tiles()) == [(0, 0)]


def test_the_size_with_least_padded_work_wins_over_the_largest(mlp: KernelFn) -> None:
    # N = 3000 in 2048-tiles computes 12.6M entries for 4.5M (upper triangle), in 1024-tiles 6.3M.
    size, _ = TilePrograms(UNLIMITED, max_tile=2048).choose_size(mlp, _kernel(3000))
    assert size == 1024


def test_a_requested_size_that_fits_is_kept(mlp: KernelFn) -> None:
    kernel = _kernel(100)
    assert TilePrograms(UNLIMITED).choose_size(mlp, kernel, requested=24) == (
        24,
        _need(mlp, kernel, 24),
    )


def test_a_requested_size_over_the_budget_names_the_size_that_fits(mlp: KernelFn) -> None:
    kernel = _kernel(256)
    budget = _need(mlp, kernel, 32)
    with pytest.raises(TileTooLarge, match=r"a 128 x 128 tile .* tile_size 32 would fit"):
        TilePrograms(budget).choose_size(mlp, kernel, requested=128)


def test_no_size_fits_a_budget_below_one_pair(mlp: KernelFn) -> None:
    kernel = _kernel(16)
    budget = _need(mlp, kernel, 1) - 1
    with pytest.raises(TileTooLarge, match="even one pair of inputs"):
        TilePrograms(budget).choose_size(mlp, kernel)
    with pytest.raises(TileTooLarge, match="no tile size fits"):
        TilePrograms(budget).choose_size(mlp, kernel, requested=4)


def test_with_a_device_xla_has_the_last_word_and_the_choice_is_remembered(
    mlp: KernelFn,
) -> None:
    device = jax.local_devices()[0]
    programs = TilePrograms(UNLIMITED)
    kernel = _kernel(40, 48)
    size, tile_bytes = programs.choose_size(mlp, kernel, 16, device)
    assert size == 16 and programs.compilations == 1
    assert tile_bytes == programs.compiled_bytes(mlp, kernel.shape(16, False), device)
    assert 0 < tile_bytes <= _need(mlp, kernel, 16)
    assert programs.choose_size(mlp, kernel, 16, device) == (size, tile_bytes)
    assert programs.compilations == 1


def _run_every_tile(
    programs: TilePrograms, kfn: KernelFn, x: np.ndarray, y: np.ndarray, size: int
) -> np.ndarray:
    """The whole kernel, tile by tile, through the compiled programs."""
    device = jax.local_devices()[0]
    kernel = TiledKernel(len(x), len(y), x.shape[1:], "float64", ("ntk",), symmetric=False)
    shape = kernel.shape(size, diagonal=False)
    grid = TileGrid(len(x), len(y), size, symmetric=False)
    out = np.full((len(x), len(y)), np.nan)
    for i, j in grid.all_tiles():
        rows, cols = grid.rows_of(i), grid.cols_of(j)
        a, b = padded_rows(x, rows, size), padded_rows(y, cols, size)
        (tile,) = programs.run(kfn, shape, device, a, b)
        out[rows, cols] = tile[: rows.stop - rows.start, : cols.stop - cols.start]
    return out


def test_any_n_reuses_the_one_program_of_the_tile_shape(mlp: KernelFn) -> None:
    programs = TilePrograms(UNLIMITED)
    rng = np.random.default_rng(5)
    for n in (37, 45, 29):  # ragged edges, padded to the one 8 x 8 tile shape
        x, y = rng.standard_normal((n, 8)), rng.standard_normal((n + 3, 8))
        whole = _run_every_tile(programs, mlp, x, y, 8)
        np.testing.assert_allclose(whole, mlp(x, y, get="ntk"), rtol=1e-12, atol=0)
        assert programs.compilations == 1, n
    assert programs.hits == sum(-(-n // 8) * -(-(n + 3) // 8) for n in (37, 45, 29)) - 1
    assert sum(programs.tiles_computed.values()) == programs.hits + 1


def test_the_program_cache_is_bounded_least_recently_used_first(mlp: KernelFn) -> None:
    device = jax.local_devices()[0]
    programs = TilePrograms(UNLIMITED, max_programs=2)
    kernel = _kernel(64, 64)
    first, second, third = (kernel.shape(size, False) for size in (4, 8, 16))
    for shape in (first, second, first, third):  # `second` is the least recently used
        programs.program(mlp, shape, device)
    assert programs.compilations == 3
    programs.program(mlp, first, device)
    assert programs.compilations == 3
    programs.program(mlp, second, device)
    assert programs.compilations == 4


def test_a_tile_fits_in_the_engine_process_that_computes_it() -> None:
    """On CPU the default tile budget is 1 GiB, or less when an engine process (where tiles
    compute) may use less (--compile-memory-mb; 0: not capped); a budget set is kept."""
    assert jax.default_backend() == "cpu"
    assert tile_budget(ServerConfig(compile_memory_bytes=200 << 20)) == 200 << 20
    assert tile_budget(ServerConfig(compile_memory_bytes=0)) == 1 << 30
    assert tile_budget(ServerConfig(compile_memory_bytes=8 << 30)) == 1 << 30
    kept = ServerConfig(compile_memory_bytes=200 << 20, tile_memory_bytes=300 << 20)
    assert tile_budget(kept) == 300 << 20
