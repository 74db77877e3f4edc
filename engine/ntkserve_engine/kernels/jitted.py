"""The jitted `KernelFn.apply` that in-process calls share, one per topology.

`KernelFn.__call__` runs compiled programs, not eager operations: eagerly, every operation
is its own XLA call (1.58 s for a 2000^2 fully connected NNGP + NTK, against about 0.3 s
jitted). Hyper-parameters and the mask constant are inputs of the program, so networks that
differ only in hyper-parameter values (a sweep over W_std builds a KernelFn per value) share
one program and its compilations; jax caches those per static arguments (`get`, whether
there is a mask or patterns) and input shapes and dtypes.

Bounded like the server's `ComputeEngine`: the programs of at most `MAX_TOPOLOGIES`
topologies are kept, the least recently used dropped first (with the executables jax keeps
inside it), so a long session over many architectures does not grow without end.
"""

from __future__ import annotations

import collections
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import jax

if TYPE_CHECKING:
    from ntkserve_engine.kernels.compile import KernelFn

MAX_TOPOLOGIES = 64

_programs: collections.OrderedDict[str, Callable[..., Any]] = collections.OrderedDict()
_lock = threading.Lock()


def jitted_apply(kfn: KernelFn) -> Callable[..., Any]:
    """`jax.jit(kfn.apply)` with `get` static, made once per `kfn.topology_id`.

    The first KernelFn of a topology lends its `apply`; any other of that topology may use
    it, since only hyper-parameter values (passed as `params`) tell them apart."""
    with _lock:
        program = _programs.get(kfn.topology_id)
        if program is None:
            program = jax.jit(kfn.apply, static_argnames=("get",))
            _programs[kfn.topology_id] = program
            while len(_programs) > MAX_TOPOLOGIES:
                _programs.popitem(last=False)
        _programs.move_to_end(kfn.topology_id)
        return program


def is_traced(*values: Any) -> bool:
    """Whether any leaf of `values` is a tracer: the call is inside a jax transformation
    (jit, vmap, grad, ...) of the caller's, so its values cannot be read on the host."""
    return any(isinstance(leaf, jax.core.Tracer) for leaf in jax.tree.leaves(values))
