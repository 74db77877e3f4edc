"""Generated protobuf messages of the KServe v2 inference protocol (tools/genproto.py)."""
