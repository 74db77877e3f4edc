"""The `ntkserve serve` flags of what the server stores: the registry of architectures and
the fitted models (their bounds on disk and in memory)."""

from __future__ import annotations

import argparse


def add(serve: argparse.ArgumentParser) -> None:
    serve.add_argument(
        "--max-registry-mb",
        type=int,
        default=0,
        help="largest size of the registry file; registrations past it are refused "
        "(default 0: the disk is the limit)",
    )
    serve.add_argument(
        "--max-architectures-per-tenant",
        type=int,
        default=1000,
        help="architectures one tenant may keep registered (default 1000; 0: no limit)",
    )
    serve.add_argument(
        "--max-architecture-mb-per-tenant",
        type=int,
        default=64,
        help="bytes of architectures one tenant may keep registered (default 64 MiB; 0: no limit)",
    )
    serve.add_argument(
        "--max-model-mb",
        type=int,
        default=0,
        help="bytes all fitted models may take on disk; a Fit past it is refused "
        "(default 0: the disk is the limit)",
    )
    serve.add_argument(
        "--model-memory-mb",
        type=int,
        default=4096,
        help="memory of loaded models kept (their solves; least recently used dropped and "
        "loaded again from disk; default 4096 MiB)",
    )
