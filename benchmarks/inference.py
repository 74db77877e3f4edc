"""Inference (fit + predict) of the engine against this machine's floor and neural-tangents.

    python -m benchmarks.inference [--json PATH] [--quick] [--largest] [--nt-venv DIR | --no-nt]

Fit + predict: `predict.gradient_descent_mse_ensemble(kernel_fn, x_train, y_train,
diag_reg=1e-4)`, then `predict_fn(t=None, x_test=x_test, get="ntk", compute_cov=True)`, from
nothing. Inputs: float32 random normals, a fixed seed, targets (N, 10). The engine's kernels
are float32, its solve float64. N_train = 4,000, N_test = 1,000 in the cases
  fc          3 x [Dense(512, W_std=1.5, b_std=0.05), Relu] + Dense(1), dimension 784;
  cnn         3 x [Conv(32, (3, 3), SAME, W_std=1.5, b_std=0.05), Relu] + Flatten + Dense(1)
              on 4 x 4 x 1 images, kernels in 1,000 x 1,000 blocks on both sides (the engine
              by a loop here over x2-given blocks, NT by `nt.batch`): the engine's x2=None
              program for images compiled for minutes, then segfaulted, above ~45M kernel
              entries (N^2 x positions: N = 870 on 8 x 8); 8 x 8 would take ~4x longer;
  fc-largest  (--largest) the FC network at N_train = 20,000, get="nngp", no covariance;
              failing that, fc-15k: 15,000 (20,000 crashed: OpenBLAS's threaded dpotrf).
Each (case, lib) runs in a fresh subprocess, so peak RSS is its own. Columns:
  lib       engine (ntkserve_engine.predict); nt-f32: neural-tangents 0.6.5's own stax and
            predict, its defaults (jax_enable_x64 off: kernels and Cholesky in float32);
            nt-x64: the same with jax_enable_x64 on (inputs still float32, solve float64);
  solve     the predicted mean's dtype;
  cold      the first fit + predict, compilation included;
  warm      the median of --repeats fits + predicts, each on new data of the same shapes;
  kernel    the part of the (last) warm fit spent in kernel_fn, blocked until ready; the
            rest is conversions, the factorization and the solves;
  no-cov    fit + predict with compute_cov=False (the mean only), the second such (warm);
  pred/1k   predict_fn called again on the fitted model (training kernels and factorization
            cached) with 1,000 new test points, per 1,000 test points;
  scratch/pred  warm / that repeated predict: what keeping a fitted model saves;
  RSS       the peak resident memory's (ru_maxrss) growth over the fits, MiB, and over the
            float64 training kernel's N_train^2 x 8 bytes (RSS/K64);
  ours/NT   the engine's warm time / this NT row's (the issue aims at <= 0.5);
  agree     max |mean - engine's| / max |engine's| on the last warm fit (same draws);
  others    the share of the machine other processes (and steal) took meanwhile.
The floor: the float64 GEMM rate of scipy's BLAS (the library whose LAPACK factorizes;
`dgemm` 4096^3; a jitted jax matmul for reference), measured in the same run, and
floor = (N^3 / 3) / rate, against the engine's factorization timed alone (median of 3, 1
above N = 5,000) on the last warm fit's training kernel: `regularized`, then `factorize`
(Cholesky, its condition estimate, escalation if needed). NT needs an older jax: a venv of
its own (NT_PINS), built once with uv under --nt-venv; failing that, the report says why.
About 7 minutes on two cores, --largest adds ~3, --quick (N 300 / 100, no NT) ~15 s. The
machines are shared and noisy (10-30 %): compare ratios from one run, not lone times.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from benchmarks.inference_report import report

ROOT = Path(__file__).resolve().parents[1]
NT_VENV = Path.home() / ".cache" / "ntkserve-bench" / "nt065"
# What worked (Python 3.11; uv added tensorflow 2.21.0 and tf2jax 0.3.6, which NT imports).
NT_PINS = (
    "neural-tangents==0.6.5",
    "jax==0.4.23",
    "jaxlib==0.4.23",
    "numpy==1.26.4",
    "scipy==1.12.0",
)
NT_LIBS = ("nt-f32", "nt-x64")
LARGEST = ("largest", "15k")  # fc-<this>: --largest only, engine only
W_STD, B_STD, DIAG_REG, OUTPUTS = 1.5, 0.05, 1e-4, 10


@dataclasses.dataclass(frozen=True)
class Case:
    name: str
    n_train: int
    n_test: int
    shape: tuple[int, ...]  # one input's shape
    conv_layers: int  # 0: the fully connected network
    block: int | None  # kernels in blocks of this many rows (None: at once)
    get: str = "ntk"
    cov: bool = True
    repeats: int | None = None  # warm fits (None: --repeats)

    def architecture(self, stax: Any) -> Any:
        """The network in `stax`: ntkserve's (a spec) or neural-tangents' (a triple)."""

        def hidden() -> Any:
            if self.conv_layers == 0:
                return stax.Dense(512, W_std=W_STD, b_std=B_STD)
            return stax.Conv(32, (3, 3), padding="SAME", W_std=W_STD, b_std=B_STD)

        layers = [x for _ in range(self.conv_layers or 3) for x in (hidden(), stax.Relu())]
        if self.conv_layers:
            layers.append(stax.Flatten())
        return stax.serial(*layers, stax.Dense(1, W_std=W_STD, b_std=B_STD))


CASES = {
    c.name: c
    for c in (
        Case("fc", 4000, 1000, (784,), 0, None),
        Case("cnn", 4000, 1000, (4, 4, 1), 3, 1000),
        Case("fc-quick", 300, 100, (784,), 0, None),
        Case("cnn-quick", 300, 100, (4, 4, 1), 3, 100),
        Case("fc-largest", 20000, 1000, (784,), 0, None, "nngp", False, 1),
        Case("fc-15k", 15000, 1000, (784,), 0, None, "nngp", False, 1),  # if 20,000 fails
    )
}


# -- children: each measurement in a fresh process -------------------------------------------


def _peak_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux


def measure_machine(quick: bool) -> dict[str, Any]:
    """The float64 GEMM rate of scipy's BLAS and of a jitted jax matmul, FLOP/s."""
    import jax

    jax.config.update("jax_enable_x64", True)  # type: ignore[no-untyped-call]
    import jax.numpy as jnp
    import numpy as np
    from scipy.linalg import blas

    from benchmarks.rates import median_seconds

    n = 1024 if quick else 4096
    a = np.random.default_rng(0).standard_normal((n, n))
    blas.dgemm(1.0, a, a)
    scipy_s = median_seconds(lambda: blas.dgemm(1.0, a, a), 3)
    b = jnp.asarray(a)
    matmul = jax.jit(lambda x, y: x @ y)
    matmul(b, b).block_until_ready()
    jax_s = median_seconds(lambda: matmul(b, b).block_until_ready(), 3)
    flops = 2.0 * n**3
    return {"n": n, "scipy_f64": flops / scipy_s, "jax_f64": flops / jax_s, "jax": jax.__version__}


def _blocked(kfn: Any, block: int) -> Callable[..., Any]:
    """kfn over blocks of at most `block` rows, each with x2 given, assembled in float32."""
    import numpy as np

    def call(x1: Any, x2: Any = None, get: Any = "ntk", **kwargs: Any) -> Any:
        names = (get,) if isinstance(get, str) else tuple(get)
        other = x1 if x2 is None else x2
        out = [np.empty((len(x1), len(other)), np.float32) for _ in names]
        for i in range(0, len(x1), block):
            for j in range(0, len(other), block):
                tiles = kfn(x1[i : i + block], other[j : j + block], get=names, **kwargs)
                for whole, tile in zip(out, tiles, strict=True):
                    whole[i : i + block, j : j + block] = np.asarray(tile)
        return out[0] if isinstance(get, str) else tuple(out)

    return call


def _kernel_fn(case: Case, lib: str) -> tuple[Any, Any]:
    """(kernel_fn, the predict module) of `lib` for `case`."""
    import jax

    if lib == "engine":
        import ntkserve_engine as nte
        import ntkserve_engine.predict as predict
        from ntkserve import stax

        kfn = nte.kernel_fn(case.architecture(stax))
        return (kfn if case.block is None else _blocked(kfn, case.block)), predict
    import neural_tangents as nt
    from neural_tangents import predict as nt_predict
    from neural_tangents import stax as nt_stax

    _, _, raw = case.architecture(nt_stax)
    if case.block is None:
        return jax.jit(raw, static_argnames="get"), nt_predict
    return nt.batch(raw, batch_size=case.block, store_on_device=False), nt_predict


def measure(case: Case, lib: str, repeats: int, save: Path | None) -> dict[str, Any]:
    import jax

    if lib != "nt-f32":
        jax.config.update("jax_enable_x64", True)  # type: ignore[no-untyped-call]
    import numpy as np

    kfn, predict = _kernel_fn(case, lib)
    inside: list[float] = []

    def timed(x1: Any, x2: Any = None, get: Any = None, **kwargs: Any) -> Any:
        start = time.perf_counter()
        out = jax.block_until_ready(kfn(x1, x2, get=get, **kwargs))  # type: ignore[no-untyped-call]
        inside.append(time.perf_counter() - start)
        return out

    rng = np.random.default_rng(0)

    def inputs(n: int) -> Any:
        return rng.standard_normal((n, *case.shape), dtype=np.float32)

    def ready(out: Any) -> list[Any]:
        return [np.asarray(a) for a in jax.tree_util.tree_leaves(out)]

    def fit(cov: bool) -> tuple[float, float, Any, list[Any], Any]:
        x, xt = inputs(case.n_train), inputs(case.n_test)
        y = rng.standard_normal((case.n_train, OUTPUTS), dtype=np.float32)
        inside.clear()
        start = time.perf_counter()
        predictor = predict.gradient_descent_mse_ensemble(timed, x, y, diag_reg=DIAG_REG)
        out = ready(predictor(t=None, x_test=xt, get=case.get, compute_cov=cov))
        return time.perf_counter() - start, sum(inside), predictor, out, x

    baseline = _peak_rss_bytes()
    cold = fit(case.cov)[0]
    warm = [fit(case.cov) for _ in range(case.repeats or repeats)]
    _, kernel_s, predictor, out, x = warm[-1]
    if save is not None:
        np.save(save, out[0])
    start = time.perf_counter()
    ready(predictor(t=None, x_test=inputs(case.n_test), get=case.get, compute_cov=case.cov))
    again = time.perf_counter() - start
    no_cov = None
    if case.cov:
        fit(False)  # compiles its own programs (the NTK alone)
        no_cov = fit(False)[0]
    result: dict[str, Any] = {
        "cold_s": cold,
        "warm_s": statistics.median(w[0] for w in warm),
        "kernel_s": kernel_s,
        "no_cov_s": no_cov,
        "predict_again_s": again,
        "rss_growth_bytes": _peak_rss_bytes() - baseline,
        "solve_dtype": str(out[0].dtype),
        "finite": all(bool(np.isfinite(a).all()) for a in out),
        "jax": jax.__version__,
    }
    del predictor, warm, out
    if lib == "engine":  # the factorization alone, on the last warm fit's training kernel
        from ntkserve_engine.predict.factorization import factorize, regularized

        from benchmarks.rates import median_seconds

        k = np.asarray(kfn(x, None, get=case.get), np.float64)
        reps, made = (3 if case.n_train <= 5000 else 1), []
        result["regularize_s"] = median_seconds(lambda: regularized(k, DIAG_REG, False), reps)
        reg = regularized(k, DIAG_REG, False)
        result["factorize_s"] = median_seconds(lambda: made.append(factorize(reg)), reps)
        result["method"] = made[0].method
    return result


def _child(python: str, target: str, quick: bool, repeats: int, save: Path | None) -> Any:
    """Runs one measurement in a fresh interpreter; its last stdout line is the JSON result."""
    cmd = [python, "-m", "benchmarks.inference", "--child", target, "--repeats", str(repeats)]
    cmd += (["--quick"] if quick else []) + ([] if save is None else ["--save", str(save)])
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=False, env=env)
    if proc.returncode != 0:
        rc = proc.returncode
        how = f"killed by {signal.Signals(-rc).name}" if rc < 0 else f"rc {rc}"
        raise RuntimeError(f"{target} failed ({how}): {proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def nt_python(venv: Path) -> tuple[str | None, str]:
    """The python of a venv with NT_PINS, built with uv once (then reused): (path, how)."""
    python, marker = venv / "bin" / "python", venv / "ntkserve-pins.txt"
    pins = "\n".join(NT_PINS) + "\n"
    if python.exists() and marker.exists() and marker.read_text() == pins:
        return str(python), f"cached venv {venv}"
    uv = shutil.which("uv") or str(Path(sys.executable).parent / "uv")
    steps = (
        [uv, "venv", "-q", "--clear", "--python", "3.11", str(venv)],
        [uv, "pip", "install", "-q", "--python", str(python), *NT_PINS],
        [str(python), "-c", "import neural_tangents"],
    )
    try:
        for step in steps:
            subprocess.run(step, capture_output=True, text=True, check=True, timeout=1800)
    except (OSError, subprocess.SubprocessError) as e:
        why = getattr(e, "stderr", None) or str(e)
        return None, f"could not build {venv}: {(why.strip().splitlines() or ['?'])[-1][:200]}"
    marker.write_text(pins)
    return str(python), f"venv {venv} built now"


# -- the parent and the report ------------------------------------------------------------------


def _agreement(ours: Path, theirs: Path) -> float | None:
    import numpy as np

    if not (ours.exists() and theirs.exists()):
        return None
    a, b = np.load(ours).astype(np.float64), np.load(theirs).astype(np.float64)
    return float(np.max(np.abs(b - a)) / np.max(np.abs(a)))


def run(
    quick: bool, largest: bool = False, nt_venv: Path | None = NT_VENV, repeats: int = 1
) -> dict[str, Any]:
    """Every case, engine then NT (not with --quick), each in a fresh subprocess."""
    import tempfile

    from benchmarks.service_support import LoadMonitor, others

    start = time.monotonic()
    machine = _child(sys.executable, "machine", quick, repeats, None)
    python, nt_note = None, "NT: skipped (--quick or --no-nt)"
    if not quick and nt_venv is not None:
        python, how = nt_python(nt_venv)
        nt_note = f"NT 0.6.5 ({' '.join(NT_PINS[1:])}): {how}"
    names = [n for n in CASES if n.endswith("-quick") == quick and n[3:] not in LARGEST]
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp, LoadMonitor() as monitor:
        for name in [*names, *(["fc-largest", "fc-15k"] if largest else [])]:
            if name == "fc-15k" and "warm_s" in rows[-1]:
                continue  # 20,000 fitted
            for lib in ["engine", *(NT_LIBS if python and name[3:] not in LARGEST else ())]:
                exe = sys.executable if lib == "engine" else str(python)
                save = Path(tmp) / f"{name}-{lib}.npy"
                row: dict[str, Any] = {"case": name, "lib": lib, "n_train": CASES[name].n_train}
                row["n_test"] = CASES[name].n_test
                mark = monitor.mark()
                try:
                    row.update(_child(exe, f"{lib}:{name}", quick, repeats, save))
                except RuntimeError as e:
                    row["error"] = str(e)
                row["others"] = others(mark, monitor.mark())["other_fraction"]
                row["agree"] = _agreement(Path(tmp) / f"{name}-engine.npy", save)
                rows.append(row)
                print(f"  {name} {lib}: {row.get('warm_s', 'failed')}", file=sys.stderr)
    ours = {r["case"]: r.get("warm_s") for r in rows if r["lib"] == "engine"}
    for row in rows:
        if "warm_s" in row:
            row["floor_s"] = row["n_train"] ** 3 / 3 / machine["scipy_f64"]
            row["rss_over_k64"] = row["rss_growth_bytes"] / (8.0 * row["n_train"] ** 2)
            if ours[row["case"]] is not None:
                row["ours_over_nt"] = ours[row["case"]] / row["warm_s"]
    seconds = time.monotonic() - start
    return {"quick": quick, "machine": machine, "nt": nt_note, "rows": rows, "seconds": seconds}


def markdown(results: dict[str, Any]) -> str:
    """The report as a BENCHMARKS.md section."""
    doc = (__doc__ or "").split("\n")[0]
    return f"## Inference: fit + predict\n\n{doc}\n\n```\n{report(results)}\n```\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--quick", action="store_true", help="N 300 / 100, no NT: a smoke run")
    parser.add_argument("--largest", action="store_true", help="also N_train = 20,000 (minutes)")
    parser.add_argument("--repeats", type=int, default=1, help="warm fits per case")
    parser.add_argument("--nt-venv", type=Path, default=NT_VENV, help="NT 0.6.5's venv")
    parser.add_argument("--no-nt", action="store_true", help="the engine alone")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--save", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    repeats = max(1, args.repeats)
    if args.child is not None:
        if args.child == "machine":
            found = measure_machine(args.quick)
        else:
            lib, name = args.child.split(":")
            found = measure(CASES[name], lib, repeats, args.save)
        print(json.dumps(found))
        return 0
    results = run(args.quick, args.largest, None if args.no_nt else args.nt_venv, repeats)
    print(report(results))
    if args.json is not None:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
