"""Compilations across a hyper-parameter sweep: how many programs a server compiles for 20
networks that differ only in W_std, over 5 batch sizes (unary) and 5 kernel sizes
(streamed), against how many its design says it should.

    python -m benchmarks.compilation [--quick] [--json PATH]

A real `ntkserve serve` process with `--metrics-port` (`service_support.KernelServer`, a
fresh data dir, so jax's persistent compilation cache starts empty), scraped before and
after each step: `ntkserve_xla_compile_seconds` (count and sum: every XLA backend
compilation in the server, from jax's monitoring events) and the server's own cache
counters `ntkserve_compile_cache_{hits,misses}_total{cache="topology"|"tile_program"}`.

Networks: 3 x [Dense(512, W_std, b_std=0.05), Relu] + Dense(1, W_std, 0.05) on d=784 float32
inputs, W_std in 20 steps over [0.5, 2.5]: one topology. The engine takes hyper-parameters
as program inputs (`ComputeEngine`: jitted programs per topology), so they share programs.

  unary    ComputeKernel, x1 only (x2=None), NTK, for each batch size and each network.
           The unary path pads nothing (the dynamic batcher pads only the batch axis of
           *concurrent* requests; these calls are sequential, so each runs alone through
           the topology's jitted forward): each distinct x1 shape is its own program, so the
           expectation is one compilation per (topology, batch size) = 5.
  streamed StreamKernel (`Client.kernel(..., tile=64)`), x2=None, NTK, for 5 values of
           N > 64, each N with 4 of the networks. Edge tiles are padded to the full tile
           (`tiles.padded_rows`) and tile programs are keyed by (topology, padded tile
           shape, features, dtype, get, diagonal, device) (`tile_programs.TilePrograms`),
           and with x2=None diagonal tiles are symmetric kernels (x2=None) and the others
           not: the expectation is 2 tile programs for every N and every network.
"""

from __future__ import annotations

import dataclasses
import functools
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from benchmarks.service_cases import inputs
from benchmarks.service_support import (
    KernelServer,
    LoadMonitor,
    free_port,
    others,
    scrape,
    section_main,
)

FEATURES = 784
TILE = 64
COUNT = "ntkserve_xla_compile_seconds_count"
SECONDS = "ntkserve_xla_compile_seconds_sum"
COUNTERS = {
    "xla_compilations": COUNT,
    "xla_compile_s": SECONDS,
    "topology_misses": 'ntkserve_compile_cache_misses_total{cache="topology"}',
    "topology_hits": 'ntkserve_compile_cache_hits_total{cache="topology"}',
    "tile_program_misses": 'ntkserve_compile_cache_misses_total{cache="tile_program"}',
    "tile_program_hits": 'ntkserve_compile_cache_hits_total{cache="tile_program"}',
    "persistent_cache_hits": "ntkserve_persistent_compile_cache_hits_total",
}


@dataclasses.dataclass(frozen=True)
class Plan:
    networks: int
    batches: tuple[int, ...]
    stream_ns: tuple[int, ...]
    networks_per_n: int


FULL = Plan(networks=20, batches=(8, 16, 32, 64, 128), stream_ns=(100, 150, 200, 250, 300),
            networks_per_n=4)  # fmt: skip
QUICK = Plan(networks=5, batches=(8, 16, 32), stream_ns=(100, 200), networks_per_n=2)


def _log(message: str) -> None:
    print(f"  [compilation] {message}", file=sys.stderr, flush=True)


def network(w_std: float) -> Any:
    """The swept network: only W_std varies (every Dense layer's)."""
    from ntkserve import stax

    layers: list[Any] = []
    for width in (512, 512, 512):
        layers += [stax.Dense(width, W_std=w_std, b_std=0.05), stax.Relu()]
    return stax.serial(*layers, stax.Dense(1, W_std=w_std, b_std=0.05))


def w_stds(count: int) -> list[float]:
    return [round(0.5 + 2.0 * k / max(1, count - 1), 4) for k in range(count)]


def _counters(port: int) -> dict[str, float]:
    found = scrape(port)
    return {key: found.get(name, 0.0) for key, name in COUNTERS.items()}


def _delta(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    return {key: after[key] - before[key] for key in before}


def _timed_calls(calls: Sequence[Callable[[], Any]]) -> list[float]:
    times = []
    for call in calls:
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return times


def _step(port: int, calls: Sequence[Callable[[], Any]], **extra: Any) -> dict[str, Any]:
    """Runs the calls in order, timing each; the server's counters over the step."""
    before = _counters(port)
    times = _timed_calls(calls)
    return {
        **extra,
        **_delta(before, _counters(port)),
        "calls": len(times),
        "first_s": times[0],
        "later_median_s": statistics.median(times[1:]) if len(times) > 1 else None,
    }


def run(quick: bool) -> dict[str, Any]:
    """Registers the networks, runs the unary and streamed sweeps; progress on stderr."""
    from ntkserve import Client

    plan = QUICK if quick else FULL
    values = w_stds(plan.networks)
    port = free_port()
    results: dict[str, Any] = {
        "quick": quick,
        "w_std": values,
        "batches": list(plan.batches),
        "stream_ns": list(plan.stream_ns),
        "tile": TILE,
    }
    with (
        tempfile.TemporaryDirectory(prefix="ntkserve-compilation-") as tmp,
        LoadMonitor() as load,
        KernelServer(Path(tmp) / "data", "--metrics-port", str(port)) as server,
        Client(server.target) as client,
    ):
        mark = load.mark()
        _log(f"server at {server.target}, metrics on port {port}")
        start = _counters(port)
        ids = [client.register(network(w)) for w in values]
        results["distinct_ids"] = len(set(ids))
        results["registration"] = _delta(start, _counters(port))

        unary = []
        for n in plan.batches:
            x = inputs(n, FEATURES, seed=n)
            calls = [functools.partial(client.kernel, a, x, get="ntk") for a in ids]
            unary.append(_step(port, calls, n=n))
            _log(f"unary N={n}: {unary[-1]['xla_compilations']:.0f} XLA compilations")
        results["unary"] = unary

        streamed = []
        for i, n in enumerate(plan.stream_ns):
            x = inputs(n, FEATURES, seed=1000 + n)
            chosen = [
                ids[(i * plan.networks_per_n + j) % len(ids)] for j in range(plan.networks_per_n)
            ]
            calls = [functools.partial(client.kernel, a, x, get="ntk", tile=TILE) for a in chosen]
            grid = -(-n // TILE)
            streamed.append(_step(port, calls, n=n, tiles=grid * (grid + 1) // 2))
            _log(f"streamed N={n}: {streamed[-1]['xla_compilations']:.0f} XLA compilations")
        results["streamed"] = streamed
        results["load"] = others(mark, load.mark())
    results["expected"] = {"unary": len(plan.batches), "streamed": 2}
    return results


# -- the report ------------------------------------------------------------------------------


def _total(rows: list[dict[str, Any]], key: str) -> float:
    return float(sum(r[key] for r in rows))


def _ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1e3:,.1f}"


def _table(rows: list[dict[str, Any]], programs: str, what: str) -> list[str]:
    lines = [
        f"| {what} | calls | XLA compilations | compile (s) | {programs} misses / hits "
        "| first call (ms) | later calls, median (ms) | first / later |",
        "|---:|---:|---:|---:|---|---:|---:|---:|",
    ]
    for r in rows:
        later = r["later_median_s"]
        ratio = "-" if not later else f"{r['first_s'] / later:.1f}"
        lines.append(
            f"| {r['n']} | {r['calls']} | {r['xla_compilations']:.0f} | "
            f"{r['xla_compile_s']:.2f} | {r[programs + '_misses']:.0f} / "
            f"{r[programs + '_hits']:.0f} | {_ms(r['first_s'])} | {_ms(later)} | {ratio} |"
        )
    return lines


def _verdict(observed: float, expected: int, what: str) -> str:
    if observed == expected:
        return (
            f"{what}: {observed:.0f} XLA compilations observed, {expected} expected: as designed."
        )
    word = "MORE" if observed > expected else "fewer"
    return (
        f"{what}: **{observed:.0f} XLA compilations observed, {expected} expected: {word} "
        "than the design says.**"
    )


def markdown(results: dict[str, Any]) -> str:
    """The section: what was swept, the expectation, and a table per path."""
    unary, streamed = results["unary"], results["streamed"]
    expected = results["expected"]
    networks = len(results["w_std"])
    load = results["load"]
    lines = [
        "## Compilation",
        "",
        f"{networks} networks that differ only in W_std (3 x [Dense(512), Relu] + Dense(1), "
        f"W_std from {results['w_std'][0]} to {results['w_std'][-1]}, b_std 0.05; d={FEATURES} "
        "float32 inputs, NTK) registered on a fresh `ntkserve serve` (empty compilation "
        "cache), then one unary ComputeKernel (x1 only) per network for each of "
        f"{len(unary)} batch sizes, then streamed kernels (tile {results['tile']}, x2=None) "
        f"for {len(streamed)} values of N. Counts are differences of the server's Prometheus "
        "counters around each step: `ntkserve_xla_compile_seconds` (every XLA compilation in "
        "the server) and its program caches (`ntkserve_compile_cache_*`). Expected: the "
        "unary path pads nothing, so one program per (topology, x1 shape) = "
        f"{expected['unary']}; the streamed path pads edge tiles to the tile size, so one "
        "program per (topology, tile shape), diagonal and off-diagonal = "
        f"{expected['streamed']}, whatever N. Calls are sequential; the first call of a step "
        "includes any compilation and, beyond XLA's compile seconds, jax's tracing and "
        "lowering, and for a stream the server's choice of tile size for a new N. One run "
        "(counts do not vary; times are single calls or medians of the later ones). Other "
        "processes took "
        f"{load['other_fraction']:.0%} of the machine while it ran, so times are noisy.",
        "",
        f"Registration of {networks} networks: {results['distinct_ids']} distinct ids, "
        f"{results['registration']['xla_compilations']:.0f} XLA compilations, topology "
        f"programs made {results['registration']['topology_misses']:.0f} (the jitted "
        "functions are made at registration; XLA compiles them at the first call of a shape).",
        "",
        "Unary ComputeKernel, x1 (N, 784), each network once per N:",
        "",
        *_table(unary, "topology", "N"),
        "",
        f"Streamed kernels, tile {results['tile']}, x2=None:",
        "",
        *_table(streamed, "tile_program", "N"),
        "",
        _verdict(_total(unary, "xla_compilations"), expected["unary"], "Unary")
        + f" {_total(unary, 'xla_compile_s'):.2f} s compiling.",
        "",
        _verdict(_total(streamed, "xla_compilations"), expected["streamed"], "Streamed")
        + f" {_total(streamed, 'xla_compile_s'):.2f} s compiling;"
        f" tile programs compiled: {_total(streamed, 'tile_program_misses'):.0f}.",
    ]
    return "\n".join(lines)


def plots(results: dict[str, Any], directory: Path) -> list[Path]:
    """No plot: the tables say it."""
    return []


def main(argv: Sequence[str] | None = None) -> int:
    return section_main(__doc__, run, markdown, argv)


if __name__ == "__main__":
    raise SystemExit(main())
