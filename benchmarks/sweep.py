"""The engine as N grows: compile time, warm time and memory of six networks in float32 and
float64, each point beside its floor on this machine.

    python -m benchmarks.sweep [--quick] [--json PATH]

Workloads (x2=None, NNGP + NTK, channels-last inputs):

  fc-relu      3 x [Dense(512, 1.5, 0.05), Relu] + Dense(1), rows of d=256;
  fc-erf       the same with Erf;
  cnn-flatten  3 x [Conv(64, 3x3, SAME), Relu] + Flatten + Dense(1), 8x8x3 images
               (same-position covariances: |S| entries per pair of examples);
  cnn-gap      the same with GlobalAvgPool (every pair of positions: |S|^2 entries);
  wrn          neural-tangents' WideResNet, block_size 1, k 1, AvgPool(2) on 8x8x3 images;
  attention    Dense(256) + GlobalSelfAttention(256, 64, 64, 4 heads) + Relu +
               GlobalAvgPool + Dense(1) on sequences of 16 tokens of d=32.

Per point: `compile` is jax's lower + compile of the jitted kernel function for that shape;
`warm` the median of `repeats` calls of the compiled program, each ended by
block_until_ready; `XLA` the program's own memory estimate (temp + output + arguments);
`RSS` the growth of the process's peak resident memory over its start (N ascends in one
process per workload and dtype, so it is the peak up to this N).

The floor is what a perfectly fused engine would need here (the issue's definition): the
input Gram matmul at the GEMM rate measured for that dtype, plus three passes (read,
write, one intermediate) over both kernel arrays at every layer at the measured memory
bandwidth:

    floor = 2 N^2 P_in C / R_dtype + 3 * 2 * bytes * sum_layers(N^2 P_layer) / B

with P the kernel entries per pair of examples at each layer (1 for rows, |S| for
same-position, |S|^2 for all-pairs covariances) and C the input channels. On a GPU the
sizes grow and the table adds achieved GEMM-equivalent FLOP/s and bandwidth as fractions
of the measured peaks.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import resource
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DTYPES = ("float32", "float64")
BYTES = {"float32": 4, "float64": 8}
KERNEL_ARRAYS = 2  # nngp and ntk
PASSES_PER_LAYER = 3


@dataclasses.dataclass(frozen=True)
class Workload:
    name: str
    title: str
    build: Callable[[], Any]
    example_shape: tuple[int, ...]  # one input example, channels last
    input_positions: int  # P of the input Gram
    layer_positions: tuple[int, ...]  # P at each layer that passes over the kernel
    cpu_sizes: tuple[int, ...]
    gpu_sizes: tuple[int, ...]

    def gram_flops(self, n: int) -> float:
        return 2.0 * n * n * self.input_positions * self.example_shape[-1]

    def kernel_bytes_moved(self, n: int, dtype: str) -> float:
        entries = sum(n * n * p for p in self.layer_positions)
        return PASSES_PER_LAYER * KERNEL_ARRAYS * BYTES[dtype] * entries

    def floor_seconds(self, n: int, dtype: str, rates: dict[str, Any]) -> float:
        gemm = float(rates[f"gemm_{dtype}_flops_per_s"])
        bandwidth = float(rates["bytes_per_s"])
        return self.gram_flops(n) / gemm + self.kernel_bytes_moved(n, dtype) / bandwidth


def _fc(nonlinearity: str) -> Callable[[], Any]:
    def build() -> Any:
        from ntkserve import stax

        act = {"relu": stax.Relu, "erf": stax.Erf}[nonlinearity]
        hidden = [x for _ in range(3) for x in (stax.Dense(512, 1.5, 0.05), act())]
        return stax.serial(*hidden, stax.Dense(1, 1.5, 0.05))

    return build


def _cnn(readout: str) -> Callable[[], Any]:
    def build() -> Any:
        from ntkserve import stax

        blocks = [
            x
            for _ in range(3)
            for x in (stax.Conv(64, (3, 3), padding="SAME", W_std=1.5, b_std=0.05), stax.Relu())
        ]
        pool = stax.GlobalAvgPool() if readout == "gap" else stax.Flatten()
        return stax.serial(*blocks, pool, stax.Dense(1, 1.5, 0.05))

    return build


def _wrn() -> Any:
    from tests.engine.architectures_wrn import wide_resnet

    return wide_resnet(block_size=1, k=1, num_classes=1, pool=2)


def _attention() -> Any:
    from ntkserve import stax

    return stax.serial(
        stax.Dense(256, 1.0, 0.0),
        stax.GlobalSelfAttention(256, 64, 64, 4),
        stax.Relu(),
        stax.GlobalAvgPool(),
        stax.Dense(1, 1.0, 0.0),
    )


S8 = 8 * 8
# WideResNet on 8x8: the first conv and group 1 at 8x8 (all pairs: 64^2), group 2's first
# ReLU at 8x8 then 4x4, group 3's at 4x4 then 2x2, each layer counted at its output size.
WRN_POSITIONS = (S8**2,) * 7 + (S8**2,) + (16**2,) * 5 + (16**2,) + (4**2,) * 5 + (1,) * 3
WORKLOADS: tuple[Workload, ...] = (
    Workload("fc-relu", "3x[Dense(512)-Relu]-Dense(1), d=256", _fc("relu"), (256,), 1,
             (1,) * 7, (250, 500, 1000, 2000, 4000), (2000, 4000, 8000, 16000)),
    Workload("fc-erf", "3x[Dense(512)-Erf]-Dense(1), d=256", _fc("erf"), (256,), 1,
             (1,) * 7, (250, 500, 1000, 2000, 4000), (2000, 4000, 8000, 16000)),
    Workload("cnn-flatten", "3x[Conv(64,3x3)-Relu]-Flatten-Dense(1), 8x8x3", _cnn("flatten"),
             (8, 8, 3), S8, (S8,) * 7 + (1,), (32, 64, 128, 256, 512), (256, 512, 1024, 2048)),
    Workload("cnn-gap", "3x[Conv(64,3x3)-Relu]-GlobalAvgPool-Dense(1), 8x8x3", _cnn("gap"),
             (8, 8, 3), S8**2, (S8**2,) * 7 + (1,), (4, 8, 16, 32, 64), (32, 64, 128, 256)),
    Workload("wrn", "WideResNet(block_size=1, k=1), 8x8x3", _wrn, (8, 8, 3), S8**2,
             WRN_POSITIONS, (4, 8, 16, 32), (32, 64, 128)),
    Workload("attention", "Dense-GlobalSelfAttention(4 heads)-Relu-GAP-Dense, 16x32",
             _attention, (16, 32), 16**2, (16**2,) * 4 + (1,), (8, 16, 32, 64, 128),
             (64, 128, 256, 512)),
)  # fmt: skip
BY_NAME = {w.name: w for w in WORKLOADS}


def _peak_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux


def measure(
    workload: Workload, dtype: str, sizes: Sequence[int], repeats: int
) -> list[dict[str, Any]]:
    """Every point of one workload and dtype, in this process (N ascending)."""
    import jax
    import numpy as np
    from ntkserve_engine.kernels import kernel_fn

    from benchmarks.rates import median_seconds

    jax.config.update("jax_enable_x64", True)  # type: ignore[no-untyped-call]
    kfn = kernel_fn(workload.build())
    jitted = jax.jit(kfn.apply, static_argnames=("get",))
    get = ("nngp", "ntk")
    baseline = _peak_rss_bytes()
    points: list[dict[str, Any]] = []
    for n in sorted(sizes):
        x = np.random.default_rng(n).standard_normal((n, *workload.example_shape)).astype(dtype)
        x1 = jax.device_put(x)
        start = time.perf_counter()
        compiled = jitted.lower(kfn.params, x1, None, get=get).compile()
        compile_s = time.perf_counter() - start

        def run(program: Any = compiled, x1: Any = x1) -> None:
            for a in program(kfn.params, x1, None):
                a.block_until_ready()

        run()
        warm = median_seconds(run, repeats)
        stats = compiled.memory_analysis()
        xla = None
        if stats is not None:
            xla = int(
                stats.temp_size_in_bytes + stats.output_size_in_bytes + stats.argument_size_in_bytes
            )
        points.append(
            {
                "n": n,
                "compile_s": compile_s,
                "warm_s": warm,
                "xla_bytes": xla,
                "rss_growth_bytes": _peak_rss_bytes() - baseline,
            }
        )
        print(f"    {workload.name} {dtype} N={n}: warm {warm:.4f} s", file=sys.stderr, flush=True)
    return points


def _child(name: str, dtype: str, sizes: Sequence[int], repeats: int) -> list[dict[str, Any]]:
    cmd = [sys.executable, "-m", "benchmarks.sweep", "--child", name, dtype]
    cmd += ["--sizes", *map(str, sizes), "--repeats", str(repeats)]
    proc = subprocess.run(cmd, cwd=ROOT, stdout=subprocess.PIPE, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"{name} {dtype} failed (rc {proc.returncode})")
    points: list[dict[str, Any]] = json.loads(proc.stdout.strip().splitlines()[-1])
    return points


def run(quick: bool, rates: dict[str, Any], repeats: int = 5) -> dict[str, Any]:
    """Every workload and dtype, each in a fresh process; points with floors and ratios."""
    gpu = rates["platform"] == "gpu"
    results: dict[str, Any] = {"gpu": gpu, "repeats": repeats, "workloads": []}
    for workload in WORKLOADS:
        sizes = workload.gpu_sizes if gpu else workload.cpu_sizes
        sizes = sizes[:2] if quick else sizes
        entry: dict[str, Any] = {"name": workload.name, "title": workload.title, "series": {}}
        for dtype in DTYPES:
            points = _child(workload.name, dtype, sizes, repeats)
            for p in points:
                floor = workload.floor_seconds(p["n"], dtype, rates)
                p["floor_s"] = floor
                p["warm_over_floor"] = p["warm_s"] / floor
                gemm_rate = workload.gram_flops(p["n"]) / p["warm_s"]
                p["gram_flops_fraction"] = gemm_rate / rates[f"gemm_{dtype}_flops_per_s"]
                traffic = workload.kernel_bytes_moved(p["n"], dtype) / p["warm_s"]
                p["bandwidth_fraction"] = traffic / rates["bytes_per_s"]
            entry["series"][dtype] = points
        results["workloads"].append(entry)
    return results


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="two sizes per workload")
    parser.add_argument("--json", type=Path, help="write the results here")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--child", nargs=2, metavar=("WORKLOAD", "DTYPE"), help=argparse.SUPPRESS)
    parser.add_argument("--sizes", nargs="+", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    repeats = max(3, args.repeats)
    if args.child is not None:
        name, dtype = args.child
        print(json.dumps(measure(BY_NAME[name], dtype, args.sizes, repeats)))
        return 0
    from benchmarks import rates

    results = run(args.quick, rates.measure(repeats), repeats)
    text = json.dumps(results, indent=2)
    if args.json is not None:
        args.json.write_text(text + "\n")
    else:
        print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
