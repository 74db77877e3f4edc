"""How well the server's time estimate of a unary call predicts its run (--max-call-seconds).

    python -m benchmarks.call_cost [--repeats N]

For each network, the program a unary ComputeKernel would run (NNGP and NTK, x2 absent),
built and analysed as the server builds it (`unary_programs.UnaryPrograms`), then run
`repeats` times after one warm-up: the best time beside the estimate of this device's
`DeviceRates` (XLA's FLOPs and bytes accessed, loops times their repeats) and beside FLOPs
alone at the same rate. Ratios are measured / estimated: above 1 the estimate was short
(a call then runs longer than the budget says), below 1 it was long (a call is refused
that would have fit). The last lines give the range of each over all networks.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import jax
import numpy as np
from ntkserve import stax
from ntkserve_engine.kernels import KernelFn
from ntkserve_server.budgets import unary_budgets
from ntkserve_server.compute import ComputeEngine, check, run_forward
from ntkserve_server.config import ServerConfig
from ntkserve_server.unary_programs import UnaryPrograms


def _conv(channels: int = 64) -> stax.Architecture:
    return stax.Conv(channels, (3, 3), padding="SAME")


def _cnn(*layers: stax.Architecture) -> stax.Architecture:
    """Two 64-channel convolutions with ReLUs, then `layers`, then the readout."""
    return stax.serial(_conv(), stax.Relu(), _conv(), stax.Relu(), *layers, stax.Dense(1))


def _fc(layer: stax.Architecture, depth: int, width: int = 512) -> stax.Architecture:
    parts = [part for _ in range(depth) for part in (stax.Dense(width), layer)]
    return stax.serial(*parts, stax.Dense(1))


_RESIDUAL = stax.serial(
    _conv(),
    stax.FanOut(2),
    stax.parallel(stax.serial(stax.Relu(), _conv(), stax.Relu(), _conv()), stax.Identity()),
    stax.FanInSum(),
    stax.Relu(),
    stax.GlobalAvgPool(),
    stax.Dense(1),
)
_REPEATED = stax.serial(
    stax.Dense(64), stax.repeat(stax.serial(stax.Dense(64), stax.Relu()), 20), stax.Dense(1)
)
_ATTENTION = stax.serial(
    stax.Dense(64),
    stax.GlobalSelfAttention(64, 64, 64, 4),
    stax.Relu(),
    stax.GlobalAvgPool(),
    stax.Dense(1),
)
_ERF_GAP = stax.serial(
    _conv(), stax.Erf(), _conv(), stax.Erf(), stax.GlobalAvgPool(), stax.Dense(1)
)

# name: (network, input shape, dtype)
NETWORKS: dict[str, tuple[stax.Architecture, tuple[int, ...], str]] = {
    "FC 2xReLU, 1000x784": (_fc(stax.Relu(), 2), (1000, 784), "float32"),
    "FC 2xReLU, 1000x784, float64": (_fc(stax.Relu(), 2), (1000, 784), "float64"),
    "FC 20xErf, 2000x8": (_fc(stax.Erf(), 20, 64), (2000, 8), "float32"),
    "FC repeat(Dense+ReLU, 20), 1000x8": (_REPEATED, (1000, 8), "float32"),
    "CNN-GAP, 16x16x16x3": (_cnn(stax.GlobalAvgPool()), (16, 16, 16, 3), "float32"),
    "CNN-AvgPool-GAP, 32x8x8x3": (
        _cnn(stax.AvgPool((2, 2)), stax.GlobalAvgPool()),
        (32, 8, 8, 3),
        "float32",
    ),
    "CNN-Flatten, 64x8x8x3": (_cnn(_conv(), stax.Relu(), stax.Flatten()), (64, 8, 8, 3), "float32"),
    "CNN-GAP Erf, 8x12x12x3, float64": (_ERF_GAP, (8, 12, 12, 3), "float64"),
    "Attention, 32x16x8": (_ATTENTION, (32, 16, 8), "float32"),
    "Residual CNN-GAP, 8x8x8x3": (_RESIDUAL, (8, 8, 8, 3), "float32"),
}


def measure(repeats: int) -> list[dict[str, Any]]:
    jax.config.update("jax_enable_x64", True)  # type: ignore[no-untyped-call]
    budgets = unary_budgets(ServerConfig())
    programs = UnaryPrograms(budgets, ThreadPoolExecutor(1))
    engine = ComputeEngine()
    rows = []
    for name, (network, shape, dtype) in NETWORKS.items():
        compiled = engine.compiled(KernelFn(network))
        x = np.random.default_rng(0).standard_normal(shape).astype(dtype)
        inputs = check(compiled, x, None, ("nngp", "ntk"))
        program = asyncio.run(programs.forward(inputs, "benchmark"))
        run_forward(inputs, program.executable)
        times = []
        for _ in range(repeats):
            began = time.perf_counter()
            run_forward(inputs, program.executable)
            times.append(time.perf_counter() - began)
        rates = budgets.rates
        rows.append(
            {
                "network": name,
                "seconds": min(times),
                "estimate": rates.seconds(program),
                "flops_only": program.flops / rates.flops_per_second,
            }
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    rows = measure(args.repeats)
    print(
        f"{'network':36s} {'measured':>9s} {'estimate':>9s} {'ratio':>6s} {'FLOPs-only ratio':>17s}"
    )
    for row in rows:
        print(
            f"{row['network']:36s} {row['seconds'] * 1e3:7.1f}ms {row['estimate'] * 1e3:7.1f}ms "
            f"{row['seconds'] / row['estimate']:6.2f} {row['seconds'] / row['flops_only']:17.2f}"
        )
    for key, what in (("estimate", "estimate"), ("flops_only", "FLOPs alone")):
        ratios = [row["seconds"] / row[key] for row in rows]
        print(f"measured / {what}: {min(ratios):.2f} to {max(ratios):.2f}")


if __name__ == "__main__":
    main()
