"""The service benchmark's streamed-kernel measurements: the big job (its client in a fresh
process, `big_child`), a raw gRPC byte stream of as many bytes, the same kernels through the
raw generated stub with nothing assembled, and medians of streamed kernels into memory.
"""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from benchmarks.memory import AnonSampler, proc_status
from benchmarks.service_cases import (
    BYTES,
    MESSAGE_BYTES,
    NETWORKS,
    ROOT,
    Sizes,
    fc3,
    inputs,
    medians,
    timed,
    wire_bytes,
)
from benchmarks.service_support import (
    KernelServer,
    LoadMonitor,
    RawServer,
    cpu_seconds,
    raw_channel,
    raw_stream,
)

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
