"""Puts the blocks of a streamed kernel in place: in memory, or in .npy files on disk.

The server sends K[row_start : row_start + rows, col_start : col_start + cols] blocks. For a
symmetric kernel (x2 = x1, `plan.mirrored`) it sends only the tiles on and above the
diagonal; each block of an off-diagonal tile is written twice, as sent and transposed into
the mirror position, as it arrives, so that a kernel on disk is written in one pass and
nothing is ever held twice. Diagonal tiles arrive whole (the server computes them as
symmetric kernels) and are not mirrored.

For kernels that keep positions, the mirror swaps the example axes and the position groups:
(N, N, *P, *P) (covariances of every pair of positions, `plan.position_pairs`) becomes
K.transpose(1, 0, P2, P1); (N, N, *P) (same-position covariances) K.transpose(1, 0, *P).

Several threads may place blocks at once: they write disjoint regions.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ntkserve import errors, kinds, tensor
from ntkserve.v1 import kernel_service_pb2 as ks

Array = np.ndarray[Any, Any]


def output_paths(out: str | os.PathLike[str], names: Sequence[str], single: bool) -> list[Path]:
    """The .npy file of each kernel: `out` itself for one kernel, else the kind inserted
    before the suffix ("k.npy" -> "k.nngp.npy", "k.ntk.npy")."""
    path = Path(out)
    if single:
        return [path]
    return [path.with_name(f"{path.stem}.{name}{path.suffix}") for name in names]


def available_memory() -> int | None:
    """Bytes this machine can still give the process without swapping: Linux's MemAvailable
    (/proc/meminfo), else the free physical pages (os.sysconf); None where neither is known."""
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, OSError, ValueError):
        return None


def check_fits_in_memory(nbytes: int, available: int | None = None) -> None:
    """The rule for kernels returned in memory (no `out=`): refused, before anything is sent
    or allocated, when their bytes exceed `available` (default: `available_memory()`), so a
    kernel too large fails at once with the fix, not with numpy's MemoryError mid-stream."""
    available = available_memory() if available is None else available
    if available is not None and nbytes > available:
        raise ValueError(
            f"out: the kernel needs {nbytes / 2**30:.1f} GiB in memory, more than the "
            f"{available / 2**30:.1f} GiB available; pass out='kernel.npy' to write it to disk "
            "as it arrives (it is returned as a numpy.memmap)"
        )


def mirror_axes(kernel_ndim: int, position_pairs: bool) -> tuple[int, ...]:
    """The transpose taking K[i, j] to K[j, i] for a kernel of this rank (see module doc)."""
    if position_pairs:
        d = (kernel_ndim - 2) // 2
        return (1, 0, *range(2 + d, 2 + 2 * d), *range(2, 2 + d))
    return (1, 0, *range(2, kernel_ndim))


def _server_error(message: str) -> errors.InternalError:
    return errors.InternalError(f"the server's StreamKernel answer is malformed: {message}")


def check_plan(plan: ks.StreamKernelPlan, n1: int, n2: int, mirrored: bool) -> None:
    """Raises InternalError when the plan does not describe this job's kernel."""
    shape = list(plan.kernel_shape)
    size = plan.tile_size
    if len(shape) < 2 or shape[0] != n1 or shape[1] != n2 or min(shape) < 1:
        raise _server_error(f"kernel_shape {shape} for inputs of {n1} and {n2} rows")
    if size < 1 or plan.grid_rows != -(-n1 // size) or plan.grid_cols != -(-n2 // size):
        raise _server_error(
            f"grid {plan.grid_rows} x {plan.grid_cols} of tile_size {size} for a {n1} x {n2} kernel"
        )
    if plan.position_pairs and len(shape) % 2:
        raise _server_error(f"position_pairs for kernel_shape {shape}")
    if plan.mirrored != mirrored:
        given = "absent" if mirrored else "given"
        raise _server_error(f"mirrored={plan.mirrored} although x2 was {given}")


class Assembler:
    """The kernels of one job, in the layout the plan announces, filled block by block."""

    def __init__(
        self,
        plan: ks.StreamKernelPlan,
        names: Sequence[str],
        dtype: np.dtype[Any],
        out: Sequence[Path] | None = None,
    ) -> None:
        self.shape = tuple(int(d) for d in plan.kernel_shape)
        self.tile_size = int(plan.tile_size)
        self.mirrored = bool(plan.mirrored)
        self.dtype = np.dtype(dtype)
        self.names = list(names)
        self.swap = mirror_axes(len(self.shape), bool(plan.position_pairs))
        self.arrays: list[Array] = []
        if out is None:
            check_fits_in_memory(len(self.names) * int(np.prod(self.shape)) * self.dtype.itemsize)
        for k in range(len(self.names)):
            if out is None:
                self.arrays.append(np.empty(self.shape, self.dtype))
            else:
                self.arrays.append(
                    np.lib.format.open_memmap(out[k], mode="w+", dtype=self.dtype, shape=self.shape)
                )
        self._kinds = {kinds.CODES[name]: k for k, name in enumerate(self.names)}
        self._flush_lock = threading.Lock()

    def place(self, block: ks.KernelTile) -> None:
        """Writes one block (and its mirror image, off the diagonal of a symmetric kernel)."""
        index = self._kinds.get(block.kind)
        if index is None:
            raise _server_error(f"a block of kind {block.kind}, which was not asked for")
        try:
            values = tensor.decode(block.values, "tile.values")
        except tensor.TensorError as e:
            raise _server_error(str(e)) from e
        r0, c0 = int(block.row_start), int(block.col_start)
        rows, cols = values.shape[:2] if values.ndim >= 2 else (0, 0)
        if (
            values.dtype != self.dtype
            or values.shape[2:] != self.shape[2:]
            or values.ndim != len(self.shape)
            or min(r0, c0) < 0
            or r0 + rows > self.shape[0]
            or c0 + cols > self.shape[1]
        ):
            raise _server_error(
                f"block {values.dtype}{list(values.shape)} at ({r0}, {c0}) does not fit a "
                f"{self.dtype} kernel of shape {list(self.shape)}"
            )
        target = self.arrays[index]
        target[r0 : r0 + rows, c0 : c0 + cols] = values
        if self.mirrored and r0 // self.tile_size != c0 // self.tile_size:
            target[c0 : c0 + cols, r0 : r0 + rows] = values.transpose(self.swap)

    def result(self) -> list[Array]:
        """The kernels, one per name; files on disk are flushed first."""
        with self._flush_lock:
            for array in self.arrays:
                if isinstance(array, np.memmap):
                    array.flush()
        return self.arrays

    def close(self) -> None:
        """Drops the arrays (after a failure: the memmaps are closed, files left as written)."""
        self.arrays = []
