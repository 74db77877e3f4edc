"""The served kernels end to end: a real `ntkserve serve` process and the Python client.

    python -m benchmarks.service [--json PATH] [--quick] [--repeats N]

Four measurements, all float32 NNGP over loopback gRPC on this machine (server and client
share its cpus; the server runs with --log-level WARNING, so no per-call log lines):

  big        a streamed 20,000 x 20,000 NNGP of FC3 = 3 x [Dense(512), Relu] + Dense(1) on
             d=784 random inputs, x2=None (upper-triangle tiles, mirrored by the client),
             written by `Client.kernel(..., out=PATH)` into a .npy memmap. The client runs in
             a fresh process; reported: wall time, the server's peak RSS (VmHWM of its
             /proc/PID/status, read after the job; the issue asks < 1 GiB) and the client's
             (VmHWM, which counts the memmap's page-cache pages, and the peak of its
             anonymous memory, RssAnon, sampled every 20 ms). One run (it is the big one);
             the server is warmed first by a 4,096-row job that compiles the same tile
             programs. A random block is checked against a unary ComputeKernel call.
  throughput the kernel stream's bytes per second (kernel bytes on the wire / wall time of the
             whole call, inputs sent included) against a raw gRPC server stream of the same
             number of bytes in 1 MiB messages on the same loopback (`service_support`: a
             grpc.aio server in its own process, identity serializers, the client
             discarding the bytes, or also copying them into a fresh numpy array). Each
             kernel is also streamed through the raw generated stub with nothing assembled
             ("no-asm"), which separates the server and transport from the client's
             assembly. Rows: FC3 (the big job; compute-bound on few cpus), and Dense(1) on
             d=64 inputs, whose tiles cost next to nothing to compute, x2=None and x2=X.
             CPU seconds of the server process and of the client for each.
  triangle   the same streamed FC3 kernel with x2=None (upper triangle) and with x2=X (the
             same array: every tile of the square), at a fixed tile size;
             ratio time(full) / time(triangle), against the ratio of tile counts.
  small      10 x 10 kernels (x1, x2 both (10, 784)) of FC3 from concurrent client threads,
             each with its own `Client` (its own channel), after a warm-up, against a server
             with --batch-window-ms 2 (dynamic batching on) and one with 0 (off), rounds
             alternating between the two: requests/s, p50/p99 latency, CPU per request.

Medians of `--repeats` (>= 3) runs where a run is cheap. The machines are shared and noisy:
each section says how much CPU other processes (and the hypervisor's steal) took while it
ran; compare the ratios measured in one run, not lone times. `--quick` shrinks every size
for a smoke run (about 15 s); the full run takes about 2 minutes on two cpus.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import importlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from benchmarks.service_support import (
    AnonSampler,
    KernelServer,
    LoadMonitor,
    Mark,
    RawServer,
    cpu_seconds,
    machine,
    machine_cpu,
    others,
    proc_status,
    raw_channel,
    raw_stream,
)

ROOT = Path(__file__).resolve().parents[1]
BYTES = 4  # float32
MESSAGE_BYTES = 1 << 20  # the raw stream's messages; the server's KernelTile blocks are ~1 MiB
GIB = 1 << 30


@dataclasses.dataclass(frozen=True)
class Sizes:
    big_n: int
    big_warmup_n: int
    features: int
    cheap_n: int
    cheap_features: int
    triangle_n: int
    triangle_tile: int
    clients: int
    requests: int  # per client, timed
    warmup_requests: int  # per client
    small_n: int


FULL = Sizes(
    big_n=20_000, big_warmup_n=4096, features=784, cheap_n=20_000, cheap_features=64,
    triangle_n=8000, triangle_tile=1024, clients=32, requests=200, warmup_requests=30,
    small_n=10,
)  # fmt: skip
QUICK = Sizes(
    big_n=3000, big_warmup_n=2100, features=784, cheap_n=3000, cheap_features=64,
    triangle_n=2000, triangle_tile=512, clients=8, requests=30, warmup_requests=10,
    small_n=10,
)  # fmt: skip


def fc3() -> Any:
    from ntkserve import stax

    hidden = [layer for _ in range(3) for layer in (stax.Dense(512), stax.Relu())]
    return stax.serial(*hidden, stax.Dense(1))


def dense1() -> Any:
    from ntkserve import stax

    return stax.Dense(1)


NETWORKS: dict[str, Callable[[], Any]] = {"fc3": fc3, "dense1": dense1}
TITLES = {
    "fc3": "3x[Dense(512)-Relu]-Dense(1)",
    "dense1": "Dense(1)",
}


def inputs(n: int, d: int, seed: int = 0) -> Any:
    import numpy as np

    return np.random.default_rng(seed).standard_normal((n, d), dtype=np.float32)


def wire_bytes(n1: int, n2: int, tile: int, mirrored: bool) -> int:
    """Kernel bytes the server sends: every tile, or those on and above the diagonal."""
    rows = [min(tile, n1 - s) for s in range(0, n1, tile)]
    cols = [min(tile, n2 - s) for s in range(0, n2, tile)]
    total = sum(
        r * c for i, r in enumerate(rows) for j, c in enumerate(cols) if j >= i or not mirrored
    )
    return total * BYTES


@dataclasses.dataclass(frozen=True)
class Run:
    """One timed call: wall seconds and the CPU seconds the server and this process used."""

    wall_s: float
    server_cpu_s: float
    client_cpu_s: float


def timed(fn: Callable[[], Any], server_pid: int) -> Run:
    s0, c0 = cpu_seconds(server_pid), cpu_seconds()
    start = time.perf_counter()
    fn()
    wall = time.perf_counter() - start
    return Run(wall, cpu_seconds(server_pid) - s0, cpu_seconds() - c0)


def medians(runs: Sequence[Run]) -> dict[str, Any]:
    return {
        "times_s": [r.wall_s for r in runs],
        "wall_s": statistics.median(r.wall_s for r in runs),
        "server_cpu_s": statistics.median(r.server_cpu_s for r in runs),
        "client_cpu_s": statistics.median(r.client_cpu_s for r in runs),
    }


def _percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    k = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[k]


# -- 1. the big streamed kernel (client in a fresh process) -----------------------------------


def big_child(spec: dict[str, Any]) -> dict[str, Any]:
    """The client side of the big job, in this (fresh) process."""
    import numpy as np
    from ntkserve import Client

    x = inputs(spec["n"], spec["features"])
    net = NETWORKS[spec["network"]]()
    before = proc_status()
    out = Path(spec["out"])
    with Client(spec["target"]) as client:
        client.register(net)
        with AnonSampler() as sampler:
            run = timed(
                lambda: client.kernel(net, x, None, get="nngp", out=out, progress=False),
                spec["server_pid"],
            )
        after = proc_status()
        k = np.load(out, mmap_mode="r")
        report = client.last_stream
        assert report is not None
        # Checks, after the memory was read: a random principal block against one unary
        # ComputeKernel call, symmetry of an off-diagonal block, every entry finite.
        rng = np.random.default_rng(1)
        idx = np.sort(rng.choice(spec["n"], size=min(64, spec["n"]), replace=False))
        ref = client.kernel(net, x[idx], None, get="nngp")
        got = np.asarray(k[np.ix_(idx, idx)])
        rel = float(np.abs(got - ref).max() / np.abs(ref).max())
        half = spec["n"] // 2
        sym = float(np.abs(k[:200, half : half + 200] - k[half : half + 200, :200].T).max())
        finite = all(bool(np.isfinite(k[r : r + 1000]).all()) for r in range(0, spec["n"], 1000))
    return {
        "wall_s": run.wall_s,
        "server_cpu_s": run.server_cpu_s,
        "client_cpu_s": run.client_cpu_s,
        "child_cpu_s": cpu_seconds(),  # the whole process's, for the load monitor
        "tile_size": report.tile_size,
        "tiles": report.tiles,
        "client_vmhwm_bytes": after["VmHWM"],
        "client_rss_before_bytes": before["VmRSS"],
        "client_peak_anon_bytes": sampler.peak_anon,
        "client_peak_file_bytes": sampler.peak_file,
        "max_rel_err_vs_unary": rel,
        "max_asym": sym,
        "finite": finite,
        "out_bytes": out.stat().st_size,
    }


def measure_big(
    sizes: Sizes, server: KernelServer, scratch: Path, load: LoadMonitor
) -> dict[str, Any]:
    from ntkserve import Client

    net = fc3()
    idle = server.status()
    with Client(server.target) as client:
        x = inputs(sizes.big_warmup_n, sizes.features, seed=7)
        path = scratch / "warm.npy"  # out= makes it a stream, whatever its size

        def warmup() -> None:
            client.kernel(net, x, None, get="nngp", out=path, progress=False)

        first, warm = timed(warmup, server.pid), timed(warmup, server.pid)
        warm_tile = client.last_stream.tile_size if client.last_stream else 0
        path.unlink()
    warmed = server.status()
    spec = {
        "target": server.target,
        "server_pid": server.pid,
        "n": sizes.big_n,
        "features": sizes.features,
        "network": "fc3",
        "out": str(scratch / "big.npy"),
    }
    cmd = [sys.executable, "-m", "benchmarks.service", "--child-big", json.dumps(spec)]
    proc = subprocess.Popen(
        cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    stdout, stderr = proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(f"big job failed (rc {proc.returncode}):\n{stderr[-4000:]}")
    child: dict[str, Any] = json.loads(stdout.strip().splitlines()[-1])
    load.exited(proc.pid, child.pop("child_cpu_s"))
    after = server.status()
    (scratch / "big.npy").unlink()
    n = sizes.big_n
    # The same job once more through the raw stub, nothing assembled (`stream_discard`).
    with Client(server.target) as client:
        architecture_id = client.register(net)
    x = inputs(n, sizes.features)
    got: list[tuple[int, int]] = []
    bare = timed(
        lambda: got.append(
            stream_discard(server.target, architecture_id, x, None, child["tile_size"])
        ),
        server.pid,
    )
    wire = wire_bytes(n, n, child["tile_size"], mirrored=True)
    return {
        **child,
        "discard_wall_s": bare.wall_s,
        "discard_server_cpu_s": bare.server_cpu_s,
        "discard_client_cpu_s": bare.client_cpu_s,
        "wire_bytes_checked": got[0] == (child["tiles"], wire),
        "n": n,
        "features": sizes.features,
        "warmup_n": sizes.big_warmup_n,
        "warmup_first_s": first.wall_s,
        "warmup_warm_s": warm.wall_s,
        "warmup_tile_size": warm_tile,
        "server_idle_vmhwm_bytes": idle["VmHWM"],
        "server_warmed_vmhwm_bytes": warmed["VmHWM"],
        "server_vmhwm_bytes": after["VmHWM"],
        "server_rss_after_bytes": after["VmRSS"],
        "result_bytes": n * n * BYTES,
        "wire_bytes": wire,
    }


# -- 2. throughput against a raw gRPC stream ---------------------------------------------------


def measure_raw(server: RawServer, total: int, repeats: int) -> dict[str, Any]:
    import numpy as np

    with raw_channel(server.target) as channel:
        raw_stream(channel, MESSAGE_BYTES, MESSAGE_BYTES)  # connect

        def copied() -> None:
            raw_stream(channel, total, MESSAGE_BYTES, into=np.empty(total, np.uint8))

        plain = medians(
            [
                timed(lambda: raw_stream(channel, total, MESSAGE_BYTES), server.pid)
                for _ in range(repeats)
            ]
        )
        copy = medians([timed(copied, server.pid) for _ in range(repeats)])
    return {
        "raw_s": plain["wall_s"],
        "raw_server_cpu_s": plain["server_cpu_s"],
        "raw_client_cpu_s": plain["client_cpu_s"],
        "raw_copy_s": copy["wall_s"],
        "raw_copy_client_cpu_s": copy["client_cpu_s"],
    }


def stream_discard(
    target: str, architecture_id: str, x1: Any, x2: Any, tile: int
) -> tuple[int, int]:
    """One StreamKernel call (NNGP) through the raw generated stub, every answer parsed and
    its block's bytes read, nothing assembled: the server's side and the transport alone.
    Returns (tiles done, kernel bytes received)."""
    import numpy as np
    from ntkserve import tensor

    # By name: a direct `from ntkserve.v1 import ...` here makes mypy take `ntkserve` for a
    # namespace package (the generated modules are stubs only), and then lose its names.
    ks: Any = importlib.import_module("ntkserve.v1.kernel_service_pb2")
    stubs: Any = importlib.import_module("ntkserve.v1.kernel_service_pb2_grpc")

    def requests() -> Iterator[Any]:
        header = ks.StreamKernelHeader(
            architecture_id=architecture_id,
            get=[ks.KERNEL_KIND_NNGP],
            dtype=tensor.dtype_code(x1.dtype),
            x1_shape=list(x1.shape),
            x2_shape=[] if x2 is None else list(x2.shape),
            tile_size=tile,
        )
        yield ks.StreamKernelRequest(header=header)
        for slot, x in ((ks.INPUT_SLOT_X1, x1), (ks.INPUT_SLOT_X2, x2)):
            if x is None:
                continue
            data = np.ascontiguousarray(x).reshape(-1).view(np.uint8)
            for offset in range(0, len(data), MESSAGE_BYTES):
                piece = data[offset : offset + MESSAGE_BYTES].tobytes()
                yield ks.StreamKernelRequest(
                    chunk=ks.InputChunk(slot=slot, offset=offset, data=piece)
                )

    tiles = received = 0
    with raw_channel(target) as channel:
        stub = stubs.KernelServiceStub(channel)
        for answer in stub.StreamKernel(requests()):
            kind = answer.WhichOneof("payload")
            if kind == "tile":
                received += len(answer.tile.values.data)
            elif kind == "tile_done":
                tiles += 1
    return tiles, received


def measure_stream(
    server: KernelServer,
    network: str,
    n: int,
    d: int,
    full: bool,
    repeats: int,
    tile: int | None = None,
    discard: bool = False,
) -> dict[str, Any]:
    """Medians of a streamed NNGP (x2=None, or x2=X when `full`) into memory (out=None);
    with `discard`, also of the same call through `stream_discard` (runs alternating)."""
    from ntkserve import Client

    net = NETWORKS[network]()
    x = inputs(n, d)
    x2 = x if full else None
    with Client(server.target) as client:
        client.kernel(net, x[: min(n, 64)], None, get="nngp", tile=16)  # register, connect
        architecture_id = client.register(net)

        def run() -> None:
            client.kernel(net, x, x2, get="nngp", tile=tile, progress=False)

        run()  # warm: compiles the tile programs
        report = client.last_stream
        assert report is not None
        runs, bare = [], []
        got: list[tuple[int, int]] = []
        for _ in range(repeats):
            runs.append(timed(run, server.pid))
            if discard:

                def discarded() -> None:
                    got.append(
                        stream_discard(server.target, architecture_id, x, x2, report.tile_size)
                    )

                bare.append(timed(discarded, server.pid))
    found = {
        "network": network,
        "n": n,
        "features": d,
        "x2": "X" if full else "None",
        "tile_size": report.tile_size,
        "tiles": report.tiles,
        **medians(runs),
        "wire_bytes": wire_bytes(n, n, report.tile_size, mirrored=not full),
        "result_bytes": n * n * BYTES,
    }
    if bare:
        found.update({f"discard_{k}": v for k, v in medians(bare).items()})
        found["wire_bytes_checked"] = all(g == (report.tiles, found["wire_bytes"]) for g in got)
    return found


# -- 4. small kernels from concurrent clients --------------------------------------------------


def measure_small(server: KernelServer, sizes: Sizes, warmup: int) -> dict[str, Any]:
    """One round: every thread its own Client; all start together after their warm-up."""
    from ntkserve import Client

    net = fc3()
    count = sizes.clients
    latencies: list[list[float]] = [[] for _ in range(count)]
    spans: list[tuple[float, float]] = [(0.0, 0.0)] * count
    errors: list[BaseException] = []
    barrier = threading.Barrier(count + 1)

    def worker(k: int) -> None:
        try:
            x1 = inputs(sizes.small_n, sizes.features, seed=100 + 2 * k)
            x2 = inputs(sizes.small_n, sizes.features, seed=101 + 2 * k)
            with Client(server.target) as client:
                for _ in range(warmup):
                    client.kernel(net, x1, x2, get="nngp")
                barrier.wait()
                mine = latencies[k]
                start = time.perf_counter()
                for _ in range(sizes.requests):
                    t = time.perf_counter()
                    client.kernel(net, x1, x2, get="nngp")
                    mine.append(time.perf_counter() - t)
                spans[k] = (start, time.perf_counter())
        except BaseException as e:
            errors.append(e)
            barrier.abort()

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(count)]
    for t in threads:
        t.start()
    with contextlib.suppress(threading.BrokenBarrierError):
        barrier.wait()  # every thread is warm: the timed part starts
    cpu = [server.cpu(), cpu_seconds()]
    for t in threads:
        t.join()
    cpu = [server.cpu() - cpu[0], cpu_seconds() - cpu[1]]
    if errors:
        raise errors[0]
    flat = [v for per in latencies for v in per]
    wall = max(e for _, e in spans) - min(s for s, _ in spans)
    return {
        "requests": len(flat),
        "wall_s": wall,
        "rps": len(flat) / wall,
        "p50_s": _percentile(flat, 50),
        "p99_s": _percentile(flat, 99),
        "mean_s": statistics.fmean(flat),
        "server_cpu_s": cpu[0],
        "client_cpu_s": cpu[1],
    }


def summarize_small(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    per_request = [
        (r["server_cpu_s"] / r["requests"], r["client_cpu_s"] / r["requests"]) for r in rounds
    ]
    return {
        "rounds": rounds,
        "rps": statistics.median(r["rps"] for r in rounds),
        "p50_s": statistics.median(r["p50_s"] for r in rounds),
        "p99_s": statistics.median(r["p99_s"] for r in rounds),
        "server_cpu_per_request_s": statistics.median(s for s, _ in per_request),
        "client_cpu_per_request_s": statistics.median(c for _, c in per_request),
    }


# -- the report ------------------------------------------------------------------------------


def _mb(n: float) -> str:
    return f"{n / 1e6:,.0f}"


def _gib(n: float) -> str:
    return f"{n / GIB:.2f}"


def _load(load: dict[str, float]) -> str:
    return (
        f"[while it ran, other processes took {load['other_cpu_s']:.1f} cpu-s + steal "
        f"{load['steal_s']:.1f} s = {load['other_fraction']:.0%} of the machine]"
    )


def report(results: dict[str, Any]) -> str:
    m = results["machine"]
    cpus = m["cpus"]
    lines = [
        f"machine: {m['cpu']}, {cpus} cpus, {m['memory_bytes'] / GIB:.0f} GiB; python "
        f"{m['python']}, grpcio {m['grpcio']}, protobuf {m['protobuf']}, jax {m['jax']}, "
        f"numpy {m['numpy']}; server and client share the cpus, loopback gRPC",
        f"sizes: {'--quick' if results['quick'] else 'full'}; medians of {results['repeats']}"
        f" runs unless said; before the start other processes kept "
        f"{results['background_fraction']:.0%} of the machine busy",
        "",
    ]
    big = results.get("big")
    if big:
        n = big["n"]
        lines += [
            f"1. streamed {n:,} x {n:,} float32 NNGP, {TITLES['fc3']}, d={big['features']}, "
            f"x2=None, out=.npy memmap; one run, the client in a fresh process "
            f"{_load(big['load'])}",
            f"   wall {big['wall_s']:.1f} s; tile {big['tile_size']}, {big['tiles']} tiles "
            f"(upper triangle), {_mb(big['wire_bytes'])} MB on the wire, "
            f"{_mb(big['result_bytes'])} MB result; CPU: server {big['server_cpu_s']:.1f} s, "
            f"client {big['client_cpu_s']:.1f} s (of {cpus} x {big['wall_s']:.1f} s)",
            f"   server peak RSS (VmHWM) {_gib(big['server_vmhwm_bytes'])} GiB "
            f"({big['server_vmhwm_bytes'] / 1e9:.2f} GB) = "
            f"{big['server_vmhwm_bytes'] / GIB:.2f} x the 1 GiB limit (idle after start "
            f"{_gib(big['server_idle_vmhwm_bytes'])}, after a {big['warmup_n']}-row warm-up "
            f"{_gib(big['server_warmed_vmhwm_bytes'])}; VmRSS after the job "
            f"{_gib(big['server_rss_after_bytes'])})",
            f"   client peak RSS (VmHWM) {_gib(big['client_vmhwm_bytes'])} GiB, of which "
            f"anonymous at most {_gib(big['client_peak_anon_bytes'])} GiB (the rest is the "
            f"memmap's page cache, RssFile at most {_gib(big['client_peak_file_bytes'])} GiB)",
            f"   checks: a {min(64, n)}x{min(64, n)} random block vs unary ComputeKernel, max "
            f"rel err {big['max_rel_err_vs_unary']:.1e}; mirror asymmetry {big['max_asym']:.1e}"
            f"; all finite: {big['finite']}. Warm-up job ({big['warmup_tile_size']}-tiles): "
            f"first call {big['warmup_first_s']:.1f} s (compiles), second "
            f"{big['warmup_warm_s']:.2f} s",
            "",
        ]
    rows = results.get("throughput")
    if rows:
        head = (
            f"{'network':<8}{'N':>7}{'d':>5}{'x2':>5}{'tiles':>6}{'wire MB':>8} |"
            f"{'Client s':>9}{'MB/s':>7}{'ratio':>6} |{'no-asm s':>9}{'MB/s':>7}{'ratio':>6} |"
            f"{'raw s':>6}{'MB/s':>7} |{'+copy MB/s':>11}{'ratio':>6}"
        )
        lines += [
            "2. stream throughput: kernel bytes on the wire / wall time of the whole call, vs a "
            f"raw gRPC byte stream of as many bytes in 1 MiB messages "
            f"{_load(results['throughput_load'])}",
            head,
            "-" * len(head),
        ]
        for r in rows:
            wire = r["wire_bytes"]
            lines.append(
                f"{r['network']:<8}{r['n']:>7}{r['features']:>5}{r['x2']:>5}{r['tiles']:>6}"
                f"{_mb(wire):>8} |{r['wall_s']:>9.2f}{wire / r['wall_s'] / 1e6:>7,.0f}"
                f"{r['ratio']:>6.2f} |{r['discard_wall_s']:>9.2f}"
                f"{wire / r['discard_wall_s'] / 1e6:>7,.0f}{r['ratio_discard']:>6.2f} |"
                f"{r['raw_s']:>6.2f}{wire / r['raw_s'] / 1e6:>7,.0f} |"
                f"{wire / r['raw_copy_s'] / 1e6:>11,.0f}{r['ratio_copy']:>6.2f}"
            )
        lines += [
            "",
            f"{'CPU seconds, server / client':<37}{'Client':>13}{'no-asm':>13}{'raw':>13}",
        ]
        for r in rows:
            label = f"{r['network']} {r['n']} x2={r['x2']}"
            lines.append(
                f"{label:<37}"
                + "".join(
                    f"{r[f'{k}server_cpu_s']:>7.2f} /{r[f'{k}client_cpu_s']:>4.1f}"
                    for k in ("", "discard_", "raw_")
                )
            )
        checked = all(r.get("wire_bytes_checked", False) for r in rows)
        lines += [
            "   Client: `Client.kernel` into memory (the fc3 row: the big job above, into its "
            "memmap); no-asm: the same call through the raw generated stub, every message "
            "parsed and its bytes read, nothing assembled (the server's side and the "
            "transport); raw: a grpc.aio server streaming bytes, the client discarding them; "
            "+copy: that client also copies each message into a fresh numpy array, the least "
            "any assembly does. ratio: raw s / that column's s (1.00: as fast as raw). "
            f"Wire bytes counted by the no-asm client agree with the plan: {checked}.",
            "   fc3's tiles are arithmetic-heavy (compute-bound on few cores: its ratio is no "
            "transport figure); dense1's cost next to nothing to compute, so its ratios show "
            "what the transport, protobuf and the client's assembly cost (x2=None: the client "
            "also writes each off-diagonal block's mirror image, a transposed copy).",
            "",
        ]
    tri = results.get("triangle")
    if tri:
        lines += [
            f"3. triangle-only path: streamed {tri['n']:,} x {tri['n']:,} NNGP of "
            f"{TITLES['fc3']}, tile {tri['tile']} {_load(tri['load'])}",
            f"   x2=None (upper triangle, {tri['sym']['tiles']} tiles) {tri['sym']['wall_s']:.2f}"
            f" s; x2=X (the whole square, {tri['full']['tiles']} tiles) "
            f"{tri['full']['wall_s']:.2f} s; speed-up time(full) / time(triangle) = "
            f"{tri['speedup']:.2f} (ratio of tile counts {tri['ideal']:.2f}; server CPU "
            f"{tri['full']['server_cpu_s']:.1f} vs {tri['sym']['server_cpu_s']:.1f} s)",
            "",
        ]
    small = results.get("small")
    if small:
        on, off = small["on"], small["off"]
        lines += [
            f"4. small kernels: {small['n']}x{small['n']} NNGP of {TITLES['fc3']} (x1, x2 both "
            f"({small['n']}, {small['features']})) from {small['clients']} client threads in one"
            f" process, each its own Client (channel), {small['requests']} requests each after "
            f"{small['warmup']} warm-up; {len(on['rounds'])} rounds per server, alternating "
            f"{_load(small['load'])}",
            f"   {'dynamic batching':<27}{'req/s':>7}{'p50 ms':>8}{'p99 ms':>8}"
            f"{'cpu-ms/req srv':>16}{'cli':>6}",
        ]
        for name, r in (("on (--batch-window-ms 2)", on), ("off (--batch-window-ms 0)", off)):
            lines.append(
                f"   {name:<27}{r['rps']:>7,.0f}{r['p50_s'] * 1e3:>8.1f}{r['p99_s'] * 1e3:>8.1f}"
                f"{r['server_cpu_per_request_s'] * 1e3:>16.2f}"
                f"{r['client_cpu_per_request_s'] * 1e3:>6.2f}"
            )
        lines += [
            f"   on / off: {on['rps'] / off['rps']:.2f} x the requests/s; latency p50 "
            f"{off['p50_s'] / on['p50_s']:.2f} x, p99 {off['p99_s'] / on['p99_s']:.2f} x lower",
            "",
        ]
    return "\n".join(lines)


# -- main --------------------------------------------------------------------------------------


def _log(message: str) -> None:
    print(f"  {message}", file=sys.stderr, flush=True)


def background_load(seconds: float = 1.0) -> float:
    """The share of the machine busy (steal included) over `seconds` of doing nothing."""
    busy0, steal0 = machine_cpu()
    time.sleep(seconds)
    busy1, steal1 = machine_cpu()
    return ((busy1 - busy0) + (steal1 - steal0)) / (seconds * (os.cpu_count() or 1))


def run_all(sizes: Sizes, repeats: int, quick: bool) -> dict[str, Any]:
    results: dict[str, Any] = {
        "machine": machine(),
        "quick": quick,
        "repeats": repeats,
        "background_fraction": background_load(),
    }
    with tempfile.TemporaryDirectory(prefix="ntkserve-bench-") as tmp, LoadMonitor() as load:
        scratch = Path(tmp)

        def section(name: str, mark: Mark, **values: Any) -> dict[str, Any]:
            results[name] = {**values, "load": others(mark, load.mark())}
            return dict(results[name])

        with KernelServer(scratch / "data-on") as server:
            _log(f"server (batching on) at {server.target}")
            mark = load.mark()
            big = section("big", mark, **measure_big(sizes, server, scratch, load))
            _log(f"big: {big['wall_s']:.1f} s")

            mark = load.mark()
            keys = ("wall_s", "times_s", "server_cpu_s", "client_cpu_s", "tiles", "tile_size")
            rows: list[dict[str, Any]] = [
                {"network": "fc3", "n": big["n"], "features": big["features"], "x2": "None"}
                | {k: big[k] for k in big if k in keys or k.startswith(("discard_", "wire_"))}
                | {"result_bytes": big["result_bytes"]}
                | {"times_s": [big["wall_s"]]}
            ]
            for full in (False, True):
                rows.append(
                    measure_stream(
                        server,
                        "dense1",
                        sizes.cheap_n,
                        sizes.cheap_features,
                        full,
                        repeats,
                        discard=True,
                    )
                )
                _log(f"dense1 x2={'X' if full else 'None'}: {rows[-1]['wall_s']:.2f} s")
            raw: dict[int, dict[str, Any]] = {}
            with RawServer() as raw_server:
                for r in rows:
                    if r["wire_bytes"] not in raw:
                        raw[r["wire_bytes"]] = measure_raw(raw_server, r["wire_bytes"], repeats)
                    r.update(raw[r["wire_bytes"]])
                    r["ratio"] = r["raw_s"] / r["wall_s"]
                    r["ratio_copy"] = r["raw_copy_s"] / r["wall_s"]
                    r["ratio_discard"] = r["raw_s"] / r["discard_wall_s"]
            results["throughput"] = rows
            results["throughput_load"] = others(mark, load.mark())
            _log("raw streams done")

            mark = load.mark()
            n, tile = sizes.triangle_n, sizes.triangle_tile
            sym = measure_stream(server, "fc3", n, sizes.features, False, repeats, tile)
            square = measure_stream(server, "fc3", n, sizes.features, True, repeats, tile)
            section(
                "triangle",
                mark,
                n=n,
                tile=tile,
                sym=sym,
                full=square,
                speedup=square["wall_s"] / sym["wall_s"],
                ideal=square["tiles"] / sym["tiles"],
            )
            _log(f"triangle {sym['wall_s']:.2f} s, the square {square['wall_s']:.2f} s")

            with KernelServer(scratch / "data-off", "--batch-window-ms", "0") as off_server:
                mark = load.mark()
                rounds: dict[str, list[dict[str, Any]]] = {"on": [], "off": []}
                for k in range(repeats):
                    for name, target in (("off", off_server), ("on", server)):
                        warmup = sizes.warmup_requests if k == 0 else 2
                        rounds[name].append(measure_small(target, sizes, warmup))
                        _log(f"small, batching {name}: {rounds[name][-1]['rps']:.0f} req/s")
                section(
                    "small",
                    mark,
                    n=sizes.small_n,
                    features=sizes.features,
                    clients=sizes.clients,
                    requests=sizes.requests,
                    warmup=sizes.warmup_requests,
                    on=summarize_small(rounds["on"]),
                    off=summarize_small(rounds["off"]),
                )
    return results


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--quick", action="store_true", help="small sizes: a smoke run")
    parser.add_argument("--repeats", type=int, default=3, help="runs per cheap case (>= 3)")
    parser.add_argument("--child-big", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child_big is not None:
        print(json.dumps(big_child(json.loads(args.child_big))))
        return 0
    repeats = max(3, args.repeats)
    results = run_all(QUICK if args.quick else FULL, repeats, args.quick)
    print(report(results))
    if args.json is not None:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
