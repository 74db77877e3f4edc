"""Compile time against depth: a network's first in-process call (trace, lower, XLA compile)
for fully connected stacks of 2 to 32 [Dense(64), nonlinearity] layers, x2 absent and x2
given, NNGP+NTK, float64.

    python -m benchmarks.compile_depth [--quick]

Compile time should grow linearly with depth: the table prints, for each doubling of the
depth, time(2d) / time(d), which stays near 2 when it does and near 4 when it grows with
depth squared (as it did for x2 given before `kernel.materialized`: XLA recomputed every
earlier layer's cheap ops inside each later layer's fusions).
"""

from __future__ import annotations

import itertools
import sys
import time
from collections.abc import Sequence

import jax
import numpy as np
from ntkserve import stax
from ntkserve_engine import kernel_fn

NONLINEARITIES = {"Relu": stax.Relu(), "Erf": stax.Erf()}


def first_call_seconds(nonlinearity: stax.Architecture, depth: int, x2_given: bool) -> float:
    layers = [layer for _ in range(depth) for layer in (stax.Dense(64, W_std=1.4), nonlinearity)]
    kfn = kernel_fn(stax.serial(*layers, stax.Dense(1)))
    x = np.random.default_rng(0).standard_normal((16, 5))
    start = time.perf_counter()
    out = kfn(x[:7], x, get=("nngp", "ntk")) if x2_given else kfn(x, None, get=("nngp", "ntk"))
    [np.asarray(k) for k in out]
    return time.perf_counter() - start


def main(argv: Sequence[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else list(argv)
    jax.config.update("jax_enable_x64", True)  # type: ignore[no-untyped-call]
    depths = [2, 4, 8] if "--quick" in args else [2, 4, 8, 16, 32]
    print(
        "| network | x2 | " + " | ".join(f"depth {d}" for d in depths) + " | growth per doubling |"
    )
    print("|---|---|" + "---:|" * len(depths) + "---|")
    for name, nonlinearity in NONLINEARITIES.items():
        for x2_given in (False, True):
            seconds = [first_call_seconds(nonlinearity, d, x2_given) for d in depths]
            growth = ", ".join(f"{b / a:.1f}" for a, b in itertools.pairwise(seconds))
            cells = " | ".join(f"{s:.2f} s" for s in seconds)
            print(f"| {name} | {'given' if x2_given else 'absent'} | {cells} | {growth} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
