"""BENCHMARKS.md and the engine's plots, from the results `python -m benchmarks` measured.

Every time is printed beside what it is measured against (a floor from this machine's own
rates, or the in-process engine), and each table says the device it came from.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

DTYPE_STYLE = {"float32": "tab:blue", "float64": "tab:orange"}


def _mib(n: float | None) -> str:
    return "-" if n is None else f"{n / 2**20:,.0f}"


def _seconds(s: float) -> str:
    return f"{s * 1e3:.2f} ms" if s < 1 else f"{s:.2f} s"


def machine_section(machine: dict[str, Any], rates: dict[str, Any]) -> str:
    gib = machine.get("memory_bytes", 0) / 2**30
    lines = [
        "## Machine",
        "",
        "| | |",
        "|---|---|",
        f"| CPU | {machine['cpu']}, {machine['cpus']} cpus, {gib:.0f} GiB |",
        f"| device (jax) | {rates['platform']}: {rates['kind']} |",
        f"| software | Python {machine['python']}, jax {machine['jax']}, "
        f"numpy {machine['numpy']}, grpcio {machine['grpcio']}, protobuf {machine['protobuf']} |",
        f"| GEMM float32 | {rates['gemm_float32_flops_per_s'] / 1e9:,.0f} GFLOP/s |",
        f"| GEMM float64 | {rates['gemm_float64_flops_per_s'] / 1e9:,.0f} GFLOP/s |",
        f"| memory bandwidth | {rates['bytes_per_s'] / 1e9:.1f} GB/s in place, "
        f"{rates['fresh_buffer_bytes_per_s'] / 1e9:.1f} GB/s into a fresh buffer |",
        "",
        "GEMM: a jitted 4096^3 matmul (16384^3 on a GPU), median of 3. Bandwidth: bytes read + "
        "written per second by a jitted elementwise pass over 256 MiB (2 GiB on a GPU), its "
        "buffer donated; into a fresh buffer the pass also pays page faults. These are the "
        "floors' rates, measured in the same run as everything below.",
    ]
    return "\n".join(lines)


def engine_section(sweep: dict[str, Any], rates: dict[str, Any], plots: list[Path]) -> str:
    device = f"{rates['platform']} ({rates['kind']})"
    lines = [
        "## Engine: time against N",
        "",
        f"On {device}. x2=None, NNGP + NTK, jitted; each workload and dtype in a fresh process, "
        f"warm = median of {sweep['repeats']} calls, compile = lower + compile of that shape. "
        "floor = input Gram at the dtype's GEMM rate + 3 passes over both kernel arrays per "
        "layer at the measured bandwidth (`benchmarks/sweep.py` has the formula and the "
        "per-layer entry counts). `Gram FLOP/s` and `bandwidth` are the rates the warm time "
        "implies for that minimal work, as fractions of the measured peaks. XLA = the "
        "program's memory estimate; RSS = growth of the process's peak.",
        "",
    ]
    lines += [f"![{p.stem}]({p.as_posix()})" for p in plots]
    for workload in sweep["workloads"]:
        lines += [
            "",
            f"### {workload['name']}: {workload['title']}",
            "",
            "| dtype | N | compile | warm | floor | warm / floor | Gram FLOP/s | bandwidth "
            "| XLA MiB | RSS MiB |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for dtype, points in workload["series"].items():
            for p in points:
                lines.append(
                    f"| {dtype} | {p['n']:,} | {_seconds(p['compile_s'])} | "
                    f"{_seconds(p['warm_s'])} | {_seconds(p['floor_s'])} | "
                    f"{p['warm_over_floor']:.1f} | {p['gram_flops_fraction']:.1%} | "
                    f"{p['bandwidth_fraction']:.1%} | {_mib(p['xla_bytes'])} | "
                    f"{_mib(p['rss_growth_bytes'])} |"
                )
    return "\n".join(lines)


def engine_plots(sweep: dict[str, Any], directory: Path) -> list[Path]:
    """Warm time and floor against N (log-log), and memory against N, one panel per
    workload."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    directory.mkdir(parents=True, exist_ok=True)
    workloads = sweep["workloads"]
    made = []
    for what, ylabel, key in (
        ("time", "seconds", "warm_s"),
        ("memory", "MiB (XLA estimate)", "xla_bytes"),
    ):
        cols = 3
        rows = (len(workloads) + cols - 1) // cols
        fig, axes = plt.subplots(rows, cols, figsize=(5 * cols, 3.8 * rows), squeeze=False)
        for ax, workload in zip(axes.flat, workloads, strict=False):
            for dtype, points in workload["series"].items():
                ns = [p["n"] for p in points]
                values = [(p[key] or 0) / (2**20 if key == "xla_bytes" else 1) for p in points]
                ax.loglog(ns, values, "o-", color=DTYPE_STYLE[dtype], label=f"{dtype}")
                if key == "warm_s":
                    floor = [p["floor_s"] for p in points]
                    ax.loglog(ns, floor, "--", color=DTYPE_STYLE[dtype], label=f"{dtype} floor")
            ax.set_title(workload["name"], fontsize=10)
            ax.set_xlabel("N (x2=None: N x N kernels)")
            ax.set_ylabel(ylabel)
            ax.grid(True, which="both", alpha=0.3)
            ax.legend(fontsize=7)
        for ax in list(axes.flat)[len(workloads) :]:
            ax.set_visible(False)
        fig.suptitle(f"ntkserve engine: {what} against N", fontsize=12)
        fig.tight_layout()
        path = directory / f"engine_{what}.png"
        fig.savefig(path, dpi=90)
        plt.close(fig)
        made.append(path)
    return made


def gpu_section(rates: dict[str, Any]) -> str:
    if rates["platform"] == "gpu":
        return (
            "## GPU\n\nEvery table above came from the GPU named under Machine; the engine "
            "tables' `Gram FLOP/s` and `bandwidth` columns are the achieved fractions of the "
            "device's measured GEMM rate and memory bandwidth."
        )
    return (
        "## GPU\n\nNot measured: jax saw no GPU on this machine. `python -m benchmarks` on a "
        "GPU host runs the same suite at larger N on the device, and this section then says "
        "so; the `Gram FLOP/s` and `bandwidth` columns give achieved fractions of the device's "
        "measured peaks."
    )
