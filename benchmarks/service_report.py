"""The service benchmark's text report: the results of `benchmarks.service.run_all` as the
lines printed at the end of a run.
"""

from __future__ import annotations

from typing import Any

from benchmarks.service_cases import GIB, TITLES


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
