"""ntkserve-engine: the analytic NNGP and NTK of infinitely wide networks, in JAX, in process.

    from ntkserve_engine import kernel_fn
    kfn = kernel_fn(arch)          # a client spec (ntkserve.stax) or an ntkserve.v1.Architecture
    kfn(x1, x2, get="ntk")         # jax arrays; differentiable with jax.grad

Everything that is math and not service lives here: today the analytic kernels
(`ntkserve_engine.kernels`). It depends on jax, numpy and the generated messages of `ntkserve`
(data, never grpc); the server (`ntkserve_server`) depends on it, never the other way round.
"""

from ntkserve_engine.kernels import (
    KINDS,
    ArchitectureError,
    EngineError,
    InputError,
    Kernel,
    KernelFn,
    architecture_id,
    canonicalize,
    kernel_fn,
    parse_get,
)

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
__version__ = "0.1.0"
