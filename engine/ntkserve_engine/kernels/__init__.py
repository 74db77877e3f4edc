"""The analytic kernel engine: closed-form NNGP and NTK of infinitely wide networks, in JAX.

    from ntkserve_engine.kernels import kernel_fn
    kfn = kernel_fn(arch)          # the client spec or its proto
    kfn(x1, x2, get="ntk")         # differentiable with jax.grad / jax.value_and_grad

Knows nothing of gRPC: it takes protobuf messages as data and raises `EngineError`s with
field paths, which the servicer translates into status codes.
"""

from ntkserve_engine.kernels.canonical import architecture_id, canonicalize
from ntkserve_engine.kernels.compile import KINDS, KernelFn, kernel_fn, parse_get
from ntkserve_engine.kernels.errors import ArchitectureError, EngineError, InputError
from ntkserve_engine.kernels.kernel import Kernel

__all__ = [
    "KINDS",
    "ArchitectureError",
    "EngineError",
    "InputError",
    "Kernel",
    "KernelFn",
    "architecture_id",
    "canonicalize",
    "kernel_fn",
    "parse_get",
]
