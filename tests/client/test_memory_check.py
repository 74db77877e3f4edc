"""A kernel asked for in memory that cannot fit is refused before anything is sent or
allocated, with `out=` named as the fix (not numpy's MemoryError after the stream started)."""

from __future__ import annotations

import numpy as np
import pytest
from ntkserve import Client, stax
from ntkserve.assembly import Assembler, available_memory, check_fits_in_memory
from ntkserve.v1 import kernel_service_pb2 as ks

NET = stax.serial(stax.Dense(8), stax.Relu(), stax.Dense(1))
# 2,000,000 rows: 16 TB of float32 kernel, more than any machine here; x1 itself is 8 MB.
ROWS = 2_000_000


def test_the_rule_compares_the_bytes_with_what_is_available() -> None:
    check_fits_in_memory(1000, available=1000)
    with pytest.raises(ValueError, match=r"out: .* pass out="):
        check_fits_in_memory(1001, available=1000)


def test_the_memory_available_is_known_here() -> None:
    available = available_memory()
    assert available is not None and available > 0


def test_a_kernel_too_large_for_memory_is_refused_before_any_call() -> None:
    # Nothing listens on port 9: without the check, the call would fail as UNAVAILABLE.
    with Client("127.0.0.1:9", timeout=5) as client:
        x = np.zeros((ROWS, 1), np.float32)
        with pytest.raises(ValueError, match="out=") as raised:
            client.kernel(NET, x, get=("nngp", "ntk"))
    assert "GiB" in str(raised.value)


def test_the_plan_s_exact_size_is_checked_before_allocating() -> None:
    """Spatial kernels keep positions that only the plan announces: the assembler checks
    the plan's shape too, before any array exists."""
    plan = ks.StreamKernelPlan(
        kernel_shape=[ROWS, ROWS], tile_size=1000, grid_rows=ROWS // 1000, grid_cols=ROWS // 1000
    )
    with pytest.raises(ValueError, match="out="):
        Assembler(plan, ["ntk"], np.dtype(np.float32))
