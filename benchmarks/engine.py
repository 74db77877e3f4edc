"""How fast the kernel engine is against this machine's floor and against neural-tangents.

    python -m benchmarks.engine [--json PATH] [--repeats N] [--only CASE ...]

Measures, in float32 on the CPU, NNGP + NTK of three workloads (four cases):

  fc3-x2     3 x [Dense(512, W_std=1.5, b_std=0.05), Relu] + Dense(1), 2000 x 2000 rows of
             dimension 784, x1 and x2 two different arrays;
  fc3-sym    the same with x2=None (x2 = x1, the symmetric path);
  cnn21-flat 21 x [Conv(64, (3, 3), SAME, W_std=1.5, b_std=0.05), Relu] + Flatten + Dense(1),
             64 images of 32 x 32 x 3, x2=None (same-position covariances only);
  cnn21-gap  the same 21 layers + GlobalAvgPool + Dense(1), 4 images of 32 x 32 x 3, x2=None
             (covariances of every pair of positions: (32 * 32)^2 entries per pair of images).

For each it reports
  compile   first call (trace + compile + run) minus the warm time;
  warm      the median of `--repeats` (>= 3) jitted calls, each ended by block_until_ready;
  RSS       growth of the process's peak resident memory (ru_maxrss) over the run: every case
            runs in a fresh subprocess, so one case's peak cannot hide another's;
  XLA mem   the compiled program's own estimate, memory_analysis() temp + output bytes;
  floor     what a perfectly fused engine would need on this machine, measured in the same run
            (a jitted 4096^3 float32 matmul gives the GEMM rate R; a jitted elementwise pass over
            a 256 MiB array, in place (its buffer donated), gives the memory bandwidth B, bytes
            read + written per second; into a fresh buffer the same pass is several times
            slower on these machines, page faults included, and is reported alongside):

                floor = F_gram / R  +  3 * sum_layers(A * E_layer * 4 bytes) / B

            F_gram the FLOPs of the input Gram einsum as the engine does it (2 N1 N2 |P| C, plus
            2 N |P| C for each self-Gram when x2 is given; |P| = |S| for same-position and
            |S|^2 for all-pairs covariances), A = 2 kernel arrays (nngp, ntk), E_layer the
            entries of one array at each layer's input, and every Dense, Conv, Relu and readout
            layer counted as three passes over its arrays (read, write, one intermediate);
  ratio     warm / floor;
  NT        neural-tangents 0.6.5's warm time for the workload on a machine of this kind
            (2 x86-64 cores; from the issue and shared/PERFORMANCE.md: 0.28 s, 3.6 s, 136 s,
            the 21-layer Flatten network measured 2.0-3.6 s there, the slower time is used;
            NT computes the full square, so fc3-sym is set against its x2-given time), and the
            speed-up NT / warm.

Why: neural-tangents' time on the CPU goes to arctan2 + sqrt per kernel entry in every
nonlinearity and, for pooling readouts, to the (H W)^2 covariances; these numbers say how far the
engine stands from the machine's floor and whether it beats neural-tangents where it matters.
The machines are shared and noisy (10-30 %), so compare ratios from one run, not lone times.
The whole script takes under a minute on two cores (each case, and the machine's rates, in
a fresh subprocess).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import resource
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks.rates import median_seconds

ROOT = Path(__file__).resolve().parents[1]
W_STD, B_STD = 1.5, 0.05
KERNEL_ARRAYS = 2  # nngp and ntk
PASSES_PER_LAYER = 3
BYTES = 4  # float32


@dataclasses.dataclass(frozen=True)
class Case:
    name: str
    title: str
    n1: int
    n2: int | None  # None: x2=None, the symmetric path
    spatial: tuple[int, ...]
    channels: int
    conv_layers: int  # 0: the fully connected network
    readout: str  # "none", "flatten" or "gap"
    nt_seconds: float

    @property
    def all_pairs(self) -> bool:
        return self.readout == "gap"

    def positions(self) -> int:
        """|P|: kernel entries per pair of examples."""
        s = math.prod(self.spatial)
        return s * s if self.all_pairs else s

    def rows2(self) -> int:
        return self.n1 if self.n2 is None else self.n2

    def gram_flops(self) -> float:
        p, c = self.positions(), self.channels
        flops = 2.0 * self.n1 * self.rows2() * p * c
        if self.n2 is not None:  # the self-Grams cov1, cov2
            flops += 2.0 * (self.n1 + self.n2) * p * c
        return flops

    def layer_entries(self) -> list[int]:
        """Entries of one kernel array at the input of every layer that touches it."""
        big = self.n1 * self.rows2() * self.positions()
        if self.conv_layers == 0:
            return [big] * 7  # 4 Dense + 3 Relu, all on N1 x N2
        # Conv + Relu per block, the readout, then Dense(1) on N1 x N2
        return [big] * (2 * self.conv_layers + 1) + [self.n1 * self.rows2()]

    def floor_seconds(self, gemm_flops_per_s: float, bytes_per_s: float) -> float:
        traffic = PASSES_PER_LAYER * KERNEL_ARRAYS * BYTES * sum(self.layer_entries())
        return self.gram_flops() / gemm_flops_per_s + traffic / bytes_per_s

    def architecture(self) -> Any:
        from ntkserve import stax

        if self.conv_layers == 0:
            hidden = [
                layer
                for _ in range(3)
                for layer in (stax.Dense(512, W_std=W_STD, b_std=B_STD), stax.Relu())
            ]
            return stax.serial(*hidden, stax.Dense(1, W_std=W_STD, b_std=B_STD))
        blocks = [
            layer
            for _ in range(self.conv_layers)
            for layer in (
                stax.Conv(64, (3, 3), padding="SAME", W_std=W_STD, b_std=B_STD),
                stax.Relu(),
            )
        ]
        readout = stax.GlobalAvgPool() if self.readout == "gap" else stax.Flatten()
        return stax.serial(*blocks, readout, stax.Dense(1, W_std=W_STD, b_std=B_STD))


CASES: tuple[Case, ...] = (
    Case("fc3-x2", "3x[Dense-Relu]-Dense 2000x2000 d=784, x2 given", 2000, 2000, (), 784, 0,
         "none", 0.28),
    Case("fc3-sym", "3x[Dense-Relu]-Dense 2000x2000 d=784, x2=None", 2000, None, (), 784, 0,
         "none", 0.28),
    Case("cnn21-flat", "21x[Conv-Relu]-Flatten-Dense 64 of 32x32x3, x2=None", 64, None,
         (32, 32), 3, 21, "flatten", 3.6),
    Case("cnn21-gap", "21x[Conv-Relu]-GlobalAvgPool-Dense 4 of 32x32x3, x2=None", 4, None,
         (32, 32), 3, 21, "gap", 136.0),
)  # fmt: skip
BY_NAME = {c.name: c for c in CASES}


# -- children: each measurement in a fresh process ---------------------------------------


def _peak_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux


def measure_machine(repeats: int) -> dict[str, float]:
    """The float32 GEMM rate (FLOP/s) and the memory bandwidth (bytes read + written per s)."""
    from benchmarks import rates

    return {
        "gemm_flops_per_s": rates.gemm_flops_per_s("float32", repeats),
        **rates.bandwidth_bytes_per_s(repeats),
    }


def measure_case(case: Case, repeats: int) -> dict[str, Any]:
    import jax
    import numpy as np
    from ntkserve_engine.kernels import kernel_fn

    rng = np.random.default_rng(0)
    shape = (*case.spatial, case.channels)
    x1 = jax.device_put(rng.standard_normal((case.n1, *shape), dtype=np.float32))
    x2 = (
        None
        if case.n2 is None
        else jax.device_put(rng.standard_normal((case.n2, *shape), dtype=np.float32))
    )
    kfn = kernel_fn(case.architecture())
    get = ("nngp", "ntk")
    jitted = jax.jit(kfn.apply, static_argnames=("get",))
    baseline = _peak_rss_bytes()

    def run() -> tuple[jax.Array, ...]:
        out: tuple[jax.Array, ...] = jitted(kfn.params, x1, x2, get=get)
        for a in out:
            a.block_until_ready()
        return out

    start = time.perf_counter()
    out = run()
    first = time.perf_counter() - start
    warm = median_seconds(run, repeats)
    finite = all(bool(np.isfinite(np.asarray(a)).all()) for a in out)
    peak = _peak_rss_bytes()

    xla_bytes: int | None = None
    try:  # a second compilation, after the peak was read: its memory is not counted
        stats = jitted.lower(kfn.params, x1, x2, get=get).compile().memory_analysis()
        if stats is not None:
            xla_bytes = int(stats.temp_size_in_bytes + stats.output_size_in_bytes)
    except Exception:  # memory_analysis is optional in XLA backends
        xla_bytes = None
    return {
        "first_s": first,
        "warm_s": warm,
        "compile_s": first - warm,
        "rss_growth_bytes": peak - baseline,
        "xla_temp_output_bytes": xla_bytes,
        "output_shape": list(out[0].shape),
        "finite": finite,
    }


def _child(target: str, repeats: int) -> dict[str, Any]:
    """Runs one measurement in a fresh interpreter; its last stdout line is the JSON result."""
    cmd = [sys.executable, "-m", "benchmarks.engine", "--child", target, "--repeats", str(repeats)]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"{target} failed (rc {proc.returncode}):\n{proc.stderr[-4000:]}")
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


# -- the report ---------------------------------------------------------------------------


def _mib(n: float | None) -> str:
    return "-" if n is None else f"{n / 2**20:.0f}"


def report(machine: dict[str, float], rows: list[dict[str, Any]]) -> str:
    head = (
        f"machine: GEMM {machine['gemm_flops_per_s'] / 1e9:.0f} GFLOP/s (jitted 4096^3 f32), "
        f"memory {machine['bytes_per_s'] / 1e9:.1f} GB/s (read+write, jitted in-place pass over "
        f"256 MiB; {machine['fresh_buffer_bytes_per_s'] / 1e9:.1f} GB/s into a fresh buffer); "
        f"jax {machine.get('jax', '?')}, {os.cpu_count()} cpus"
    )
    cols = (
        f"{'case':<11}{'compile s':>10}{'warm s':>9}{'RSS MiB':>9}{'XLA MiB':>9}"
        f"{'floor s':>9}{'warm/floor':>11}{'NT s':>8}{'NT/ours':>9}"
    )
    lines = [head, "", cols, "-" * len(cols)]
    for r in rows:
        lines.append(
            f"{r['case']:<11}{r['compile_s']:>10.2f}{r['warm_s']:>9.3f}"
            f"{_mib(r['rss_growth_bytes']):>9}{_mib(r['xla_temp_output_bytes']):>9}"
            f"{r['floor_s']:>9.3f}{r['warm_over_floor']:>11.1f}{r['nt_s']:>8.2f}"
            f"{r['speedup_vs_nt']:>9.1f}"
        )
    lines.append("")
    lines.extend(f"{r['case']:<11}{BY_NAME[r['case']].title}" for r in rows)
    if not all(r["finite"] for r in rows):
        lines.append("WARNING: a kernel had non-finite entries")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--repeats", type=int, default=3, help="warm runs per case (>= 3)")
    parser.add_argument("--only", nargs="+", choices=list(BY_NAME), help="a subset of cases")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    repeats = max(3, args.repeats)

    if args.child is not None:
        if args.child == "machine":
            import jax

            result: dict[str, Any] = {**measure_machine(repeats), "jax": jax.__version__}
        else:
            result = measure_case(BY_NAME[args.child], repeats)
        print(json.dumps(result))
        return 0

    machine = _child("machine", repeats)
    rows: list[dict[str, Any]] = []
    for case in [BY_NAME[n] for n in args.only] if args.only else CASES:
        measured = _child(case.name, repeats)
        floor = case.floor_seconds(machine["gemm_flops_per_s"], machine["bytes_per_s"])
        rows.append(
            {
                "case": case.name,
                "title": case.title,
                **measured,
                "floor_s": floor,
                "warm_over_floor": measured["warm_s"] / floor,
                "nt_s": case.nt_seconds,
                "speedup_vs_nt": case.nt_seconds / measured["warm_s"],
            }
        )
        print(f"  done {case.name}: warm {measured['warm_s']:.3f} s", file=sys.stderr, flush=True)
    print(report(machine, rows))
    if args.json is not None:
        args.json.write_text(json.dumps({"machine": machine, "cases": rows}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
