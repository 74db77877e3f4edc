"""ntkserve-server: the gRPC service around the analytic engine (`ntkserve_engine`).

Dependencies point one way: server -> engine -> messages. This package keeps what is service:
transport, admission, registry, tiles, streaming, batching, auth, metrics, the inference
protocol; the math is the engine's.
"""

__version__ = "0.1.0"
