"""ntkserve: kernels of infinite-width neural networks (NNGP, NTK), served over gRPC.

    from ntkserve import Client, stax
    arch = stax.serial(stax.Dense(512, W_std=1.5, b_std=0.05), stax.Relu(), stax.Dense(1))
    with Client("localhost:50051") as c:
        k = c.kernel(arch, x1, get="ntk")

This package is the thin client: grpcio, protobuf and numpy, never jax.

The gRPC parts (`Client`, `ArchitectureInfo`, `errors`) load on first use, so that the
messages (`ntkserve.v1.*_pb2`), `stax` and the tensor codec import without grpc: the engine
(`ntkserve-engine`) uses them as data and must never import grpc.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ntkserve import stax
from ntkserve.spec import Architecture

if TYPE_CHECKING:
    from ntkserve import errors
    from ntkserve.client import ArchitectureInfo, Client

__all__ = ["Architecture", "ArchitectureInfo", "Client", "errors", "stax"]
__version__ = "0.1.0"

_LAZY = {"Client": "ntkserve.client", "ArchitectureInfo": "ntkserve.client"}


def __getattr__(name: str) -> Any:
    if name == "errors":
        return importlib.import_module("ntkserve.errors")
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'ntkserve' has no attribute {name!r}")
