"""ntkserve-server: the analytic kernel engine (`kernels`) and the gRPC service around it.

Dependencies point one way: service -> compute -> kernels; `kernels` knows nothing of gRPC.
"""

__version__ = "0.1.0"
