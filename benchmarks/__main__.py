"""The whole benchmark suite in one command: writes BENCHMARKS.md and its plots.

    python -m benchmarks [--quick] [--out BENCHMARKS.md] [--only engine service compilation]
    python -m benchmarks --from-json benchmarks/results.json   # re-render, no measuring

Sections, in order: the machine and its measured rates (`rates`), the engine's time and
memory against N beside the floor (`sweep`), the service's overhead over the in-process
engine (`overhead`), compilations across a hyper-parameter and batch-size sweep
(`compilation`), inference in process against neural-tangents (`inference`) and served
(`inference_served`), the Myrtle kernels' cost per entry (`myrtle`), and the GPU note.
Results also go to benchmarks/results.json, so the report can be re-rendered. The CPU suite
took about 5 minutes on the 2-core development machine (the issue asks under 15) before the
Myrtle section, which adds about 1 (71 s); `--quick`, a smoke run, about 2.
"""

from __future__ import annotations

import argparse
import datetime
import importlib
import json
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks import report, sweep
from benchmarks.service_support import machine

ROOT = Path(__file__).resolve().parents[1]
SERVICE_SECTIONS = {
    "service": "benchmarks.overhead",
    "compilation": "benchmarks.compilation",
    "inference": "benchmarks.inference",
    "inference_served": "benchmarks.inference_served",
    "myrtle": "benchmarks.myrtle",
}
SECTIONS = ("engine", *SERVICE_SECTIONS)


def _log(message: str) -> None:
    print(f"[benchmarks] {message}", file=sys.stderr, flush=True)


def _rates() -> dict[str, Any]:
    """Measured in a fresh process, so nothing else this run does shares its memory."""
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.rates"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
        check=True,
    )
    found: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return found


def measure(quick: bool, only: Sequence[str]) -> dict[str, Any]:
    start = time.monotonic()
    results: dict[str, Any] = {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "quick": quick,
        "machine": machine(),
    }
    _log("measuring this machine's GEMM rates and memory bandwidth")
    results["rates"] = _rates()
    if "engine" in only:
        _log("engine sweep")
        results["engine"] = sweep.run(quick, results["rates"])
    for name, module in SERVICE_SECTIONS.items():
        if name in only:
            _log(f"{name} section")
            results[name] = importlib.import_module(module).run(quick)
    results["seconds"] = time.monotonic() - start
    return results


def render(results: dict[str, Any], out: Path, plot_dir: Path) -> str:
    rates = results["rates"]
    minutes = results["seconds"] / 60
    parts = [
        "# Benchmarks",
        "",
        f"Written by `python -m benchmarks{' --quick' if results['quick'] else ''}` on "
        f"{results['date']} in {minutes:.1f} minutes; rerun it to measure your machine. "
        "These machines are shared and noisy (10-30 % between runs): compare the ratios "
        "measured in one run, not lone times.",
        "",
        report.machine_section(results["machine"], rates),
    ]
    if "engine" in results:
        plots = report.engine_plots(results["engine"], plot_dir)
        relative = [p.relative_to(out.parent) for p in plots]
        parts += ["", report.engine_section(results["engine"], rates, relative)]
    for name, module_name in SERVICE_SECTIONS.items():
        if name in results:
            module = importlib.import_module(module_name)
            made = module.plots(results[name], plot_dir) if hasattr(module, "plots") else []
            parts += ["", module.markdown(results[name])]
            parts += [f"![{p.stem}]({p.relative_to(out.parent).as_posix()})" for p in made]
    parts += ["", report.gpu_section(rates), ""]
    return "\n".join(parts)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="small sizes: a smoke run")
    parser.add_argument("--out", type=Path, default=ROOT / "BENCHMARKS.md")
    parser.add_argument("--plots", type=Path, default=ROOT / "benchmarks" / "plots")
    parser.add_argument("--json", type=Path, default=ROOT / "benchmarks" / "results.json")
    parser.add_argument("--only", nargs="+", choices=SECTIONS, default=list(SECTIONS))
    parser.add_argument("--from-json", type=Path, help="render these results, measure nothing")
    args = parser.parse_args(argv)
    if args.from_json is not None:
        results = json.loads(args.from_json.read_text())
    else:
        results = measure(args.quick, args.only)
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(render(results, args.out.resolve(), args.plots.resolve()))
    _log(f"wrote {args.out} ({results['seconds'] / 60:.1f} min of measuring)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
