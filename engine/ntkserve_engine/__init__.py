"""ntkserve-engine: the analytic NNGP and NTK of infinitely wide networks, in JAX, in process.

    from ntkserve_engine import kernel_fn
    kfn = kernel_fn(arch)          # a client spec (ntkserve.stax) or an ntkserve.v1.Architecture
    kfn(x1, x2, get="ntk")         # jax arrays; differentiable with jax.grad

Everything that is math and not service lives here: today the analytic kernels
(`ntkserve_engine.kernels`, whose names this package re-exports). It depends on jax, numpy and
the generated messages of `ntkserve` (data, never grpc); the server (`ntkserve_server`)
depends on it, never the other way round.
"""

from ntkserve_engine.kernels import *  # noqa: F403 - the package's names are the engine's
from ntkserve_engine.kernels import __all__ as __all__

__version__ = "0.1.0"
