"""The plain-text report of `benchmarks.inference`: the machine, the fit + predict table
(one row per case and library), and the engine's factorization against its floor. The
columns are explained in `benchmarks/inference.py`'s docstring."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any

Column = tuple[str, str, Callable[[dict[str, Any]], Any], str]  # head, width, value, format
FIT_COLUMNS: tuple[Column, ...] = (
    ("case", "<11", lambda r: r["case"], ""),
    ("lib", "<7", lambda r: r["lib"], ""),
    ("solve", ">8", lambda r: r["solve_dtype"], ""),
    ("cold s", ">8", lambda r: r["cold_s"], ".2f"),
    ("warm s", ">8", lambda r: r["warm_s"], ".2f"),
    ("kernel s", ">9", lambda r: r["kernel_s"], ".2f"),
    ("no-cov s", ">9", lambda r: r["no_cov_s"], ".2f"),
    ("pred/1k s", ">10", lambda r: r["predict_again_s"] * 1000 / r["n_test"], ".3f"),
    ("scratch/pred", ">13", lambda r: r["warm_s"] / r["predict_again_s"], ".1f"),
    ("RSS MiB", ">8", lambda r: r["rss_growth_bytes"] / 2**20, ".0f"),
    ("RSS/K64", ">8", lambda r: r["rss_over_k64"], ".1f"),
    ("ours/NT", ">8", lambda r: r.get("ours_over_nt") if r["lib"] != "engine" else None, ".2f"),
    ("agree", ">8", lambda r: r["agree"] if r["lib"] != "engine" else None, ".0e"),
    ("others", ">7", lambda r: r["others"], ".0%"),
)
FACTOR_COLUMNS: tuple[Column, ...] = (
    ("case", "<11", lambda r: r["case"], ""),
    ("N_train", ">8", lambda r: r["n_train"], ""),
    ("regularize s", ">13", lambda r: r["regularize_s"], ".2f"),
    ("factorize s", ">12", lambda r: r["factorize_s"], ".2f"),
    ("method", ">10", lambda r: r["method"], ""),
    ("floor s", ">9", lambda r: r["floor_s"], ".3f"),
    ("fact/floor", ">11", lambda r: r["factorize_s"] / r["floor_s"], ".1f"),
    ("warm/floor", ">11", lambda r: r["warm_s"] / r["floor_s"], ".1f"),
)


def _table(rows: list[dict[str, Any]], columns: Sequence[Column]) -> list[str]:
    head = "".join(f"{h:{w}}" for h, w, _, _ in columns)
    lines = [head, "-" * len(head)]
    for r in rows:
        cells = ((get(r), w, spec) for _, w, get, spec in columns)
        line = "".join(f"{'-' if v is None else format(v, spec):{w}}" for v, w, spec in cells)
        lines.append(line + ("" if r["finite"] else "  NON-FINITE"))
    return lines


def report(results: dict[str, Any]) -> str:
    """The report as plain text: the machine, the fit + predict table, the factorization."""
    m, rows = results["machine"], results["rows"]
    done = [r for r in rows if "warm_s" in r]
    lines = [
        f"machine: float64 GEMM {m['scipy_f64'] / 1e9:.1f} GFLOP/s (scipy BLAS dgemm "
        f"{m['n']}^3, the floor's rate), {m['jax_f64'] / 1e9:.1f} GFLOP/s (jitted, jax "
        f"{m['jax']}); {os.cpu_count()} cpus",
        results["nt"],
        "",
        *_table(done, FIT_COLUMNS),
        *(f"{r['case']} {r['lib']} failed: {r['error'][-300:]}" for r in rows if "error" in r),
        "",
        "engine factorization (float64, timed alone):",
        *_table([r for r in done if "factorize_s" in r], FACTOR_COLUMNS),
        "",
        f"measured in {results['seconds'] / 60:.1f} minutes",
    ]
    return "\n".join(lines)
