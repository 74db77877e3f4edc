"""Myrtle kernels (Shankar et al. 2020, "Neural Kernels Without Tangents"): the cost of one
kernel entry on this machine, and what the full CIFAR-10 kernel would cost at that rate.

    python -m benchmarks.myrtle [--quick] [--json PATH]

Myrtle-5, -7 and -10 as neural-tangents' example defines them: groups of
[Conv(3x3, SAME, W_std sqrt 2, b_std 0), Relu] (2-1-1, 2-2-2 and 3-3-3 of them), an
AvgPool(2, stride 2) after the first two groups and three after the last (32 -> 16 -> 8 ->
1), then Flatten and Dense(10). Average pooling mixes positions, so every layer carries the
covariance of every pair of positions: 32^4 = 1,048,576 numbers per pair of images in the
first group, which is where the time goes.

Per network and dtype: NNGP + NTK of n x n distinct 32x32x3 random images (x2 given, so no
symmetry is used), jitted; `warm` is the median of `repeats` calls ended by
block_until_ready. Such a call computes the covariances of n^2 pairs of images and of the 2n
images with themselves (the variances every entry needs): cost per entry = warm / (n^2 + 2n),
measured at two n (the same for Myrtle-5 float32 at n = 1 and 2; in float64 the larger n
cost more per entry here), and a stream's tiles of 1,024 rows add 0.2 % of variances.
The full CIFAR-10 kernel is symmetric: 60,000 x 60,001 / 2 entries at that cost, in
machine-hours of this machine, against neural-tangents' README: 316, 330 and 508 V100
GPU-hours for Myrtle-5, -7 and -10 in float64.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

GROUPS = {5: (2, 1, 1), 7: (2, 2, 2), 10: (3, 3, 3)}
# neural-tangents' README, float64 on a V100: GPU-hours for the full CIFAR-10 kernel.
NT_V100_HOURS = {5: 316.0, 7: 330.0, 10: 508.0}
CIFAR10_ENTRIES = 60_000 * 60_001 // 2  # symmetric: the upper triangle and the diagonal
SIZES = (2, 4)
QUICK_SIZES = (1, 2)


def myrtle(depth: int) -> Any:
    """Myrtle-`depth` (5, 7 or 10) as an ntkserve architecture."""
    from ntkserve import stax

    layers: list[Any] = []
    for group, count in enumerate(GROUPS[depth]):
        for _ in range(count):
            conv = stax.Conv(256, (3, 3), padding="SAME", W_std=math.sqrt(2), b_std=0.0)
            layers += [conv, stax.Relu()]
        layers += [stax.AvgPool((2, 2), strides=(2, 2))] * (1 if group < 2 else 3)
    readout = stax.Dense(10, W_std=math.sqrt(2), b_std=0.0)
    return stax.serial(*layers, stax.Flatten(), readout)


def measure(depth: int, dtype: str, n: int, repeats: int) -> dict[str, Any]:
    """One point: compile and warm seconds of n x n entries of Myrtle-`depth`."""
    import jax
    import numpy as np
    from ntkserve_engine.kernels import kernel_fn

    kfn = kernel_fn(myrtle(depth))
    x1 = np.random.RandomState(0).standard_normal((n, 32, 32, 3)).astype(dtype)
    x2 = np.random.RandomState(1).standard_normal((n, 32, 32, 3)).astype(dtype)
    program = jax.jit(lambda p, a, b: kfn.apply(p, a, b, ("nngp", "ntk")))
    start = time.perf_counter()
    compiled = program.lower(kfn.params, x1, x2).compile()
    compile_s = time.perf_counter() - start
    from benchmarks.rates import median_seconds

    def run() -> Any:
        return jax.block_until_ready(compiled(kfn.params, x1, x2))  # type: ignore[no-untyped-call]

    assert all(bool(np.all(np.isfinite(np.asarray(k)))) for k in run())
    warm = median_seconds(run, repeats)
    return {
        "depth": depth,
        "dtype": dtype,
        "n": n,
        "compile_s": compile_s,
        "warm_s": warm,
        "per_entry_s": warm / (n**2 + 2 * n),
    }


def run(quick: bool, repeats: int = 3) -> dict[str, Any]:
    import jax

    jax.config.update("jax_enable_x64", True)  # type: ignore[no-untyped-call]
    depths = (5,) if quick else (5, 7, 10)
    sizes = QUICK_SIZES if quick else SIZES
    points = []
    for depth in depths:
        for dtype in ("float32", "float64"):
            for n in sizes:
                point = measure(depth, dtype, n, 1 if quick else repeats)
                points.append(point)
                print(f"  myrtle-{depth} {dtype} n={n}: {point['warm_s']:.2f} s", file=sys.stderr)
    return {
        "points": points,
        "device": str(jax.devices()[0].device_kind),
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    }


def _hours(per_entry_s: float) -> float:
    return per_entry_s * CIFAR10_ENTRIES / 3600


def markdown(results: dict[str, Any]) -> str:
    rows = [
        "| network | dtype | n | compile (s) | warm (s) | per entry (ms) | CIFAR-10 kernel "
        "(machine-hours) | neural-tangents V100 float64 (GPU-hours) | ratio |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for p in results["points"]:
        hours = _hours(p["per_entry_s"])
        nt = NT_V100_HOURS[p["depth"]]
        rows.append(
            f"| Myrtle-{p['depth']} | {p['dtype']} | {p['n']} | {p['compile_s']:.1f} | "
            f"{p['warm_s']:.3f} | {p['per_entry_s'] * 1e3:.1f} | {hours:,.0f} | {nt:.0f} | "
            f"{hours / nt:.0f} |"
        )
    return "\n".join(
        [
            "## Myrtle kernels",
            "",
            "Myrtle-5/7/10 (Shankar et al. 2020) as neural-tangents' example defines "
            "them, NNGP + NTK of n x n distinct 32x32x3 random images (x2 given), jitted, "
            f"on `{results['device']}` (measured {results['date']}); per entry = warm "
            "time / (n^2 + 2n), the pairs of images a call covers (the 2n variances "
            f"included). The full CIFAR-10 kernel ({CIFAR10_ENTRIES:,} entries, "
            "symmetric) extrapolated at the larger n's rate, against neural-tangents' "
            "README (V100, float64); ratio = ours / theirs, a CPU machine against a GPU: "
            "the GPU run is what the aim (<= 50 GPU-hours for Myrtle-10) is about.",
            "",
            *rows,
        ]
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    results = run(args.quick)
    if args.json is not None:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    print(markdown(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
