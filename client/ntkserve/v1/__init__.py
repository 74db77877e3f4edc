"""Generated protobuf and gRPC code for ntkserve.v1 (tools/genproto.py)."""
