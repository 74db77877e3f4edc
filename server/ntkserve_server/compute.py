"""Compiled kernel functions per architecture, run on jax's default device; numpy in, out.

One `KernelFn` per architecture id and one jitted forward and one jitted gradient per
function; jax caches the compilations per (input shapes, dtype, get). Values and
gradients are computed by separate programs so that `value_and_grad` returns bit for bit
the values `kernel` returns (the forward *is* the same compiled program).
Blocking: call from a worker thread.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable
from typing import Any

import jax
import numpy as np

from ntkserve_server.kernels import KernelFn
from ntkserve_server.kernels.compile import Params

Array = np.ndarray[Any, Any]


@dataclasses.dataclass(frozen=True)
class Compiled:
    kfn: KernelFn
    forward: Callable[..., Any]
    grads: Callable[..., Any]


def _grads_fn(kfn: KernelFn) -> Callable[..., Any]:
    def grads(
        params: Params, x1: Any, x2: Any, cotangents: tuple[Any, ...], get: tuple[str, ...]
    ) -> tuple[Any, Any]:
        if x2 is None:
            _, vjp = jax.vjp(lambda a: kfn.apply(params, a, None, get), x1)
            return vjp(cotangents)[0], None
        _, vjp = jax.vjp(lambda a, b: kfn.apply(params, a, b, get), x1, x2)
        g1, g2 = vjp(cotangents)
        return g1, g2

    return jax.jit(grads, static_argnames=("get",))


class ComputeEngine:
    def __init__(self) -> None:
        self._compiled: dict[str, Compiled] = {}
        self._lock = threading.Lock()

    def compiled(self, kfn: KernelFn) -> Compiled:
        """The jitted functions of kfn's architecture, made once per id."""
        with self._lock:
            found = self._compiled.get(kfn.id)
            if found is None:
                found = Compiled(
                    kfn=kfn,
                    forward=jax.jit(kfn.apply, static_argnames=("get",)),
                    grads=_grads_fn(kfn),
                )
                self._compiled[kfn.id] = found
            return found

    def lookup(self, architecture_id: str) -> Compiled | None:
        with self._lock:
            return self._compiled.get(architecture_id)

    def forget(self, architecture_id: str) -> None:
        with self._lock:
            self._compiled.pop(architecture_id, None)

    def kernel(
        self, compiled: Compiled, x1: Array, x2: Array | None, get: tuple[str, ...]
    ) -> tuple[Array, ...]:
        kfn = compiled.kfn
        kfn.check_inputs(x1.shape, None if x2 is None else x2.shape, x1.dtype)
        out = compiled.forward(kfn.params, x1, x2, get=get)
        return tuple(np.asarray(k) for k in out)

    def value_and_grad(
        self,
        compiled: Compiled,
        x1: Array,
        x2: Array | None,
        get: tuple[str, ...],
        cotangents: tuple[Array, ...],
    ) -> tuple[tuple[Array, ...], Array, Array | None]:
        values = self.kernel(compiled, x1, x2, get)
        g1, g2 = compiled.grads(compiled.kfn.params, x1, x2, cotangents, get=get)
        return values, np.asarray(g1), None if g2 is None else np.asarray(g2)
