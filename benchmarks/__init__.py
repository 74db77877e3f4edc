"""Benchmarks of the kernel engine (run `python -m benchmarks.engine` from the repo root)."""
