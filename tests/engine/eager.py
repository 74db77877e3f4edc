"""`kernel_fn` whose calls run the engine's `apply` op by op, for files of many small networks.

The engine's call compiles one program per topology (and `get`, input shapes, dtype). With a
few rows of input that compilation costs more than running `apply` eagerly, whose compiled
operations jax shares across every network with operations of the same shapes (the files
test_rescaling, test_closed_forms, test_canonical and test_branching together: 45.6 CPU
seconds eager against 69.2 s jitted). Those files import this `kernel_fn`. Only where the
kernels are computed differs: the checks, the x2 = None mirror and everything else are the
engine's (`KernelFn._run`; this overrides only `_program`); the jitted call itself is
tested in test_call.py and by every other file.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from jax import Array
from ntkserve_engine.kernels import KernelFn


class EagerKernelFn(KernelFn):
    """A KernelFn whose calls run `apply` eagerly instead of through a jitted program."""

    def _program(self) -> Callable[..., Sequence[Array]]:
        return self.apply


def kernel_fn(arch: Any) -> KernelFn:
    return EagerKernelFn(arch)
