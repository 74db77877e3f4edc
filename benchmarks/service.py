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

This module runs the sections in order and prints the report; the measurements live in
`service_streams` (1-3) and `service_small` (4), what they share in `service_cases`, the
report's text in `service_report`, the processes and probes in `service_support`.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks.service_cases import FULL, QUICK, Sizes
from benchmarks.service_report import report
from benchmarks.service_small import measure_small, summarize_small
from benchmarks.service_streams import big_child, measure_big, measure_raw, measure_stream
from benchmarks.service_support import (
    KernelServer,
    LoadMonitor,
    Mark,
    RawServer,
    machine,
    machine_cpu,
    others,
)


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
