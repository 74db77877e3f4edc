"""Service overhead: the same kernel through the gRPC client over loopback divided by the
in-process engine, for small, medium and large (streamed) requests.

    python -m benchmarks.overhead [--quick] [--json PATH]

Network: FC3 = 3 x [Dense(512), Relu] + Dense(1) on d=784 float32 random inputs, NTK only.
Served: a real `ntkserve serve` process (`service_support.KernelServer`, log level WARNING)
and one `Client`, which is given the spec at every call (as users call it; the client
remembers its id). In-process: `jax.jit(kernel_fn(arch).apply)` in this process, with
`jax_enable_x64` on as the server has it, each call ended by block_until_ready. Both are
warm: every shape is computed once, unmeasured, before timing. The two never run at the
same time: timed calls alternate, one served, one in-process.

  small   x1, x2 both (10, 784): p50 and p99 of sequential calls each way;
  medium  x1, x2 both (1000, 784), a unary ComputeKernel; medians;
  large   x1 (10000, 784), x2=None, streamed (StreamKernel, the server picks the tile and
          sends the upper triangle, the client mirrors it); in-process the whole
          10,000 x 10,000 at once, and also the server's tile programs run here on the same
          tiles (the stream without the service); medians.

Beside each served time, the server's own time per call (`handler`: the mean of its
`ntkserve_call_seconds` histogram, scraped from `--metrics-port`), so the rest is transport
and client.

`--quick` shrinks medium to 500 and large to 3,000 (still streamed: 36 MB > the client's
32 MiB threshold) and takes fewer repeats.
"""

from __future__ import annotations

import dataclasses
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from benchmarks.service_cases import Run, fc3, inputs, medians, timed
from benchmarks.service_small import _percentile
from benchmarks.service_support import (
    KernelServer,
    LoadMonitor,
    free_port,
    others,
    scrape,
    section_main,
)

FEATURES = 784
SMALL_N = 10
SMALL_AIM_S = 0.003
RATIO_AIM = 1.10


@dataclasses.dataclass(frozen=True)
class Plan:
    small_calls: int  # per side, timed
    medium_n: int
    medium_repeats: int
    large_n: int
    large_repeats: int


FULL = Plan(small_calls=300, medium_n=1000, medium_repeats=5, large_n=10_000, large_repeats=3)
QUICK = Plan(small_calls=100, medium_n=500, medium_repeats=3, large_n=3000, large_repeats=3)


def _log(message: str) -> None:
    print(f"  [overhead] {message}", file=sys.stderr, flush=True)


def _engine() -> Callable[[Any, Any], None]:
    """The in-process engine: one warm-able call of the jitted kernel function (NTK)."""
    import jax

    jax.config.update("jax_enable_x64", True)  # type: ignore[no-untyped-call]
    from ntkserve_engine.kernels import kernel_fn

    kfn = kernel_fn(fc3())
    f = jax.jit(kfn.apply, static_argnames=("get",))

    def call(x1: Any, x2: Any) -> None:
        for array in f(kfn.params, x1, x2, get=("ntk",)):
            array.block_until_ready()

    return call


def _tiled_engine(x: Any, size: int) -> Callable[[], None]:
    """The server's own tile programs in this process (`TilePrograms`, the tiles the server
    computes for x2=None: the upper triangle, edge tiles padded), each tile copied into a
    numpy kernel; no mirroring. What a stream costs without the service around it."""
    import jax
    import numpy as np
    from ntkserve_engine.kernels import kernel_fn
    from ntkserve_server.tile_programs import TiledKernel, TilePrograms
    from ntkserve_server.tiles import TileGrid, padded_rows

    kfn = kernel_fn(fc3())
    n = x.shape[0]
    kernel = TiledKernel(n, n, x.shape[1:], x.dtype.name, ("ntk",), symmetric=True)
    grid = TileGrid(n, n, size, symmetric=True)
    programs = TilePrograms(budget_bytes=1 << 40)
    device = jax.devices()[0]

    def call() -> None:
        out = np.empty((n, n), x.dtype)
        for i, j in grid.all_tiles():
            rows, cols = grid.rows_of(i), grid.cols_of(j)
            a = padded_rows(x, rows, size)
            b = None if i == j else padded_rows(x, cols, size)
            (tile,) = programs.run(kfn, kernel.shape(size, i == j), device, a, b)
            out[rows, cols] = tile[: rows.stop - rows.start, : cols.stop - cols.start]

    return call


class _Handler:
    """The server's own mean time per call of a method (its handler, from receiving the whole
    request to handing over the response), from its Prometheus histogram between marks."""

    def __init__(self, port: int, method: str) -> None:
        self.port = port
        self.labels = f'{{method="{method}"}}'
        self._start = self._read()

    def _read(self) -> tuple[float, float]:
        found = scrape(self.port)
        name = "ntkserve_call_seconds"
        return found.get(f"{name}_sum{self.labels}", 0.0), found.get(
            f"{name}_count{self.labels}", 0.0
        )

    def mean(self) -> float | None:
        total, count = self._read()
        calls = count - self._start[1]
        return (total - self._start[0]) / calls if calls else None


def _alternate(
    served: Callable[[], Any],
    local: dict[str, Callable[[], Any]],
    repeats: int,
    server: KernelServer,
    handler: Callable[[], _Handler],
    **extra: Any,
) -> dict[str, Any]:
    """Every way warmed once (unmeasured), then `repeats` timed calls each, in turn: medians,
    the ratios served / each in-process way, the server handler's mean time per timed call.
    The first in-process way is "engine"."""
    served()
    for call in local.values():
        call()
    watch = handler()
    runs: dict[str, list[Run]] = {"served": [], **{name: [] for name in local}}
    for _ in range(repeats):
        runs["served"].append(timed(served, server.pid))
        for name, call in local.items():
            runs[name].append(timed(call, server.pid))
    found = {name: medians(r) for name, r in runs.items()}
    wall = found["served"]["wall_s"]
    return {
        **extra,
        "repeats": repeats,
        **found,
        "ratio": wall / found["engine"]["wall_s"],
        "ratios": {name: wall / found[name]["wall_s"] for name in local},
        "handler_mean_s": watch.mean(),
    }


def _small(
    client: Any, engine: Callable[[Any, Any], None], calls: int, port: int
) -> dict[str, Any]:
    x1, x2 = inputs(SMALL_N, FEATURES, seed=1), inputs(SMALL_N, FEATURES, seed=2)
    net = fc3()
    rounds = 4
    served: list[float] = []
    local: list[float] = []
    for _ in range(20):  # warm both: compile, first-call paths, channel set-up
        client.kernel(net, x1, x2, get="ntk")
        engine(x1, x2)
    handler = _Handler(port, "ComputeKernel")
    for _ in range(rounds):  # blocks of calls, alternating
        for _ in range(calls // rounds):
            t = time.perf_counter()
            client.kernel(net, x1, x2, get="ntk")
            served.append(time.perf_counter() - t)
        for _ in range(calls // rounds):
            t = time.perf_counter()
            engine(x1, x2)
            local.append(time.perf_counter() - t)
    p50, p99 = _percentile(served, 50), _percentile(served, 99)
    e50, e99 = _percentile(local, 50), _percentile(local, 99)
    return {
        "n": SMALL_N,
        "calls": len(served),
        "served_p50_s": p50,
        "served_p99_s": p99,
        "engine_p50_s": e50,
        "engine_p99_s": e99,
        "ratio_p50": p50 / e50,
        "ratio_p99": p99 / e99,
        "p50_under_aim": p50 < SMALL_AIM_S,
        "handler_mean_s": handler.mean(),
    }


def _medium(
    client: Any, engine: Callable[[Any, Any], None], plan: Plan, server: KernelServer, port: int
) -> dict[str, Any]:
    n, net = plan.medium_n, fc3()
    x1, x2 = inputs(n, FEATURES, seed=3), inputs(n, FEATURES, seed=4)
    return _alternate(
        lambda: client.kernel(net, x1, x2, get="ntk"),
        {"engine": lambda: engine(x1, x2)},
        plan.medium_repeats,
        server,
        lambda: _Handler(port, "ComputeKernel"),
        n=n,
    )


def _large(
    client: Any, engine: Callable[[Any, Any], None], plan: Plan, server: KernelServer, port: int
) -> dict[str, Any]:
    n, net = plan.large_n, fc3()
    x = inputs(n, FEATURES, seed=5)
    client.kernel(net, x, None, get="ntk")  # the server's tile size, for the tiled engine
    stream = client.last_stream
    assert stream is not None
    found = _alternate(
        lambda: client.kernel(net, x, None, get="ntk"),
        {"engine": lambda: engine(x, None), "engine_tiled": _tiled_engine(x, stream.tile_size)},
        plan.large_repeats,
        server,
        lambda: _Handler(port, "StreamKernel"),
        n=n,
    )
    return {**found, "tile": stream.tile_size, "tiles": stream.tiles}


def run(quick: bool) -> dict[str, Any]:
    """Measures the three cases (see the module docstring); progress on stderr."""
    plan = QUICK if quick else FULL
    engine = _engine()
    results: dict[str, Any] = {"quick": quick, "plan": dataclasses.asdict(plan)}
    from ntkserve import Client

    port = free_port()
    with (
        tempfile.TemporaryDirectory(prefix="ntkserve-overhead-") as tmp,
        LoadMonitor() as load,
        KernelServer(Path(tmp) / "data", "--metrics-port", str(port)) as server,
        Client(server.target) as client,
    ):
        _log(f"server at {server.target}")
        cases: list[tuple[str, Callable[[], dict[str, Any]]]] = [
            ("small", lambda: _small(client, engine, plan.small_calls, port)),
            ("medium", lambda: _medium(client, engine, plan, server, port)),
            ("large", lambda: _large(client, engine, plan, server, port)),
        ]
        for name, measure in cases:
            mark = load.mark()
            results[name] = {**measure(), "load": others(mark, load.mark())}
            ratio = results[name].get("ratio", results[name].get("ratio_p50"))
            _log(f"{name}: served / in-process {ratio:.2f}")
    return results


# -- the report ------------------------------------------------------------------------------


def _ms(seconds: float) -> str:
    return f"{seconds * 1e3:,.2f}"


def _s(seconds: float) -> str:
    return f"{seconds:,.3f}"


def _verdict(ok: bool) -> str:
    return "yes" if ok else "**no**"


def _load_note(results: dict[str, Any]) -> str:
    parts = [
        f"{c} {results[c]['load']['other_fraction']:.0%}" for c in ("small", "medium", "large")
    ]
    return f"Share of the machine other processes (and steal) took: {', '.join(parts)}."


WAYS = {"engine": "jitted engine, one call", "engine_tiled": "server's tile programs, same tiles"}


def markdown(results: dict[str, Any]) -> str:
    """The section: what was measured, and a table per case size with its ratios."""
    plan = results["plan"]
    small, medium, large = results["small"], results["medium"], results["large"]
    lines = [
        "## Service overhead",
        "",
        "The same NTK of FC3 = 3 x [Dense(512), Relu] + Dense(1) on d=784 float32 inputs "
        "through the Python `Client` and a real `ntkserve serve` process over loopback gRPC, "
        "divided by the in-process engine: `jax.jit(kernel_fn(arch).apply)` in the benchmark "
        "process (x64 enabled as in the server) on the whole request, ended by "
        "`block_until_ready`, without copying the result to numpy. For the large, streamed "
        "request (the server computes only the upper-triangle tiles, the client mirrors "
        "them) a second in-process way runs the server's own tile programs on the same "
        "tiles in this process, copying each into a numpy kernel: the stream without the "
        "service around it. Everything is warm; timed calls take turns, never overlapping. "
        "`handler` is the server's own time per call, the mean of its `ntkserve_call_seconds` "
        "histogram (Prometheus) over the timed calls, from the request received to the "
        "response handed to gRPC; the rest of a served call is transport and the client. "
        "Server, client and other users' jobs share this machine's cpus, so timings are "
        "noisy.",
        "",
        f"Small requests (x1, x2 both {small['n']} x {FEATURES}), "
        f"{small['calls']} sequential calls each way, percentiles:",
        "",
        "| | served (ms) | in-process (ms) | ratio | aim | met |",
        "|---|---:|---:|---:|---|---|",
        f"| p50 | {_ms(small['served_p50_s'])} | {_ms(small['engine_p50_s'])} | "
        f"{small['ratio_p50']:.1f} | served p50 < {SMALL_AIM_S * 1e3:.0f} ms | "
        f"{_verdict(small['p50_under_aim'])} |",
        f"| p99 | {_ms(small['served_p99_s'])} | {_ms(small['engine_p99_s'])} | "
        f"{small['ratio_p99']:.1f} | | |",
        "",
        f"The server's handler took {_ms(small['handler_mean_s'] or 0.0)} ms a call (mean).",
        "",
        "Medium and large requests, medians of the timed calls (server and client CPU: "
        "seconds of the server process and of this process, medians):",
        "",
        "| request | in-process way | calls | served (s) | in-process (s) | ratio | aim | met "
        "| handler (s) | server cpu (s) | client cpu (s) |",
        "|---|---|---:|---:|---:|---:|---|---|---:|---:|---:|",
    ]
    for case, what in (
        (medium, f"medium: {medium['n']:,} x {medium['n']:,} unary"),
        (large, f"large: {large['n']:,} x {large['n']:,} streamed, tile {large['tile']}"),
    ):
        served = case["served"]
        for way, ratio in case["ratios"].items():
            lines.append(
                f"| {what} | {WAYS[way]} | {case['repeats']} | {_s(served['wall_s'])} | "
                f"{_s(case[way]['wall_s'])} | {ratio:.2f} | <= {RATIO_AIM:.2f} | "
                f"{_verdict(ratio <= RATIO_AIM)} | {_s(case['handler_mean_s'] or 0.0)} | "
                f"{served['server_cpu_s']:.2f} | {served['client_cpu_s']:.2f} |"
            )
    lines += ["", _load_note(results)]
    if results["quick"]:
        lines += [
            "",
            f"(`--quick`: medium {plan['medium_n']}, large {plan['large_n']}; the aims are "
            "for the full sizes.)",
        ]
    return "\n".join(lines)


def plots(results: dict[str, Any], directory: Path) -> list[Path]:
    """One bar chart: served / in-process ratio per request size, the aim drawn beside."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    directory.mkdir(parents=True, exist_ok=True)
    large = results["large"]["ratios"]
    names = ["small (p50)", "medium", "large\n(one call)", "large\n(same tiles)"]
    ratios = [
        results["small"]["ratio_p50"],
        results["medium"]["ratio"],
        large["engine"],
        large.get("engine_tiled", float("nan")),
    ]
    fig, ax = plt.subplots(figsize=(6, 3.4))
    ax.bar(names, ratios, color=["#999999", "#4477aa", "#4477aa", "#4477aa"])
    ax.axhline(RATIO_AIM, color="#cc3311", linestyle="--", label=f"aim {RATIO_AIM} (medium, large)")
    ax.axhline(1.0, color="black", linewidth=0.8)
    ax.set_yscale("log")
    ax.set_ylabel("served / in-process time")
    ax.set_title("Service overhead (FC3, NTK, float32)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    path = directory / "overhead.png"
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return [path]


def main(argv: Sequence[str] | None = None) -> int:
    return section_main(__doc__, run, markdown, argv)


if __name__ == "__main__":
    raise SystemExit(main())
