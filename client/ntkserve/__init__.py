"""ntkserve: kernels of infinite-width neural networks (NNGP, NTK), served over gRPC.

    from ntkserve import Client, stax
    arch = stax.serial(stax.Dense(512, W_std=1.5, b_std=0.05), stax.Relu(), stax.Dense(1))
    with Client("localhost:50051") as c:
        k = c.kernel(arch, x1, get="ntk")

This package is the thin client: grpcio, protobuf and numpy, never jax.
"""

from ntkserve import errors, stax
from ntkserve.client import ArchitectureInfo, Client
from ntkserve.spec import Architecture

__all__ = ["Architecture", "ArchitectureInfo", "Client", "errors", "stax"]
__version__ = "0.1.0"
