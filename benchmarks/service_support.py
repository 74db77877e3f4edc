"""Processes and probes for `benchmarks.service`: a real ntkserve server (the tests' harness,
`ntkserve_server.testing`, with CPU and memory readings), a raw gRPC bytes-stream server (the
transport's ceiling on the same loopback), CPU readings (memory readings are
`benchmarks.memory`'s), a server's Prometheus metrics, a report section's command line.

    python -m benchmarks.service_support raw-server   # prints "raw listening on HOST:PORT"

The raw service is one server-streaming method, `/bench.RawStream/Stream`, with identity
(bytes) serializers: the request is b"TOTAL,SIZE", the answer TOTAL bytes in messages of SIZE
bytes (the last one shorter), all views of one preallocated buffer. It runs on grpc.aio with
the same message limits as the ntkserve server, so the two differ only in what the kernel
server does on top: compute, protobuf encoding, and (on the client) decoding and assembly.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import re
import signal
import socket
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import Any

import grpc
from ntkserve_server.testing import ListeningProcess, ServerProcess

from benchmarks.memory import proc_status

ROOT = Path(__file__).resolve().parents[1]
MAX_MESSAGE_BYTES = 256 * 1024 * 1024
RAW_METHOD = "/bench.RawStream/Stream"
_RAW_LISTENING = re.compile(r"raw listening on (\S+):(\d+)")
_CHANNEL_OPTIONS = [
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
]


# -- CPU time: ours, and everyone else's -------------------------------------------------------

HZ = os.sysconf("SC_CLK_TCK")


def _stat_fields(pid: int | str) -> list[str]:
    """/proc/PID/stat after the command name: fields[1] is the ppid, [11:13] utime, stime."""
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def cpu_seconds(pid: int | str = "self") -> float:
    """User + system CPU seconds of a process (all its threads), from /proc/PID/stat."""
    fields = _stat_fields(pid)
    return (int(fields[11]) + int(fields[12])) / HZ


def machine_cpu() -> tuple[float, float]:
    """(busy, steal) CPU seconds of the whole machine since boot, from /proc/stat."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = values[:8]
    return (user + nice + system + irq + softirq) / HZ, steal / HZ


def _process_tree(root: int) -> set[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int(_stat_fields(entry.name)[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    tree, todo = set(), [root]
    while todo:
        pid = todo.pop()
        tree.add(pid)
        todo.extend(children.get(pid, ()))
    return tree


@dataclasses.dataclass(frozen=True)
class Mark:
    wall: float  # perf_counter seconds
    busy: float  # the machine's busy CPU seconds since boot
    steal: float
    ours: float  # CPU seconds of this process tree since the monitor started


class LoadMonitor:
    """How much CPU other processes took while the benchmark ran: the machine's busy time
    (/proc/stat) minus the CPU of this process and its descendants (servers, children), the
    latter sampled every `interval` seconds (a process that ends loses at most its last
    interval). Also the hypervisor's steal time. The machines are shared: numbers measured
    while others ran are slower and noisier."""

    def __init__(self, interval: float = 0.5) -> None:
        self.interval = interval
        self._first: dict[int, float] = {}
        self._last: dict[int, float] = {}
        self._lock = threading.Lock()
        self._root = os.getpid()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _scan(self) -> None:
        for pid in _process_tree(self._root):
            try:
                used = cpu_seconds(pid)
            except (OSError, IndexError, ValueError):
                continue
            with self._lock:
                # Processes started after the monitor count from their birth.
                self._first.setdefault(pid, used if pid == self._root else 0.0)
                self._last[pid] = max(used, self._last.get(pid, 0.0))

    def exited(self, pid: int, cpu: float) -> None:
        """A child's own count of its CPU seconds, taken just before it ended (the samples
        miss its last interval)."""
        with self._lock:
            self._first.setdefault(pid, 0.0)
            self._last[pid] = max(cpu, self._last.get(pid, 0.0))

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self._scan()

    def mark(self) -> Mark:
        """CPU seconds so far; two marks make a span (`others`)."""
        self._scan()
        busy, steal = machine_cpu()
        with self._lock:
            ours = sum(self._last[p] - self._first[p] for p in self._last)
        return Mark(time.perf_counter(), busy, steal, ours)

    def __enter__(self) -> LoadMonitor:
        self._scan()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def others(start: Mark, end: Mark) -> dict[str, float]:
    """Other processes' CPU seconds and the hypervisor's steal between two marks, and the
    share of the machine (every cpu over the span) the two took."""
    wall = max(1e-9, end.wall - start.wall)
    other = max(0.0, (end.busy - start.busy) - (end.ours - start.ours))
    steal = end.steal - start.steal
    return {
        "other_cpu_s": other,
        "steal_s": steal,
        "other_fraction": (other + steal) / (wall * (os.cpu_count() or 1)),
    }


def machine() -> dict[str, Any]:
    """CPU model, cores, memory and the versions that matter here."""
    from importlib import metadata

    model = "?"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    versions = {}
    for dist in ("grpcio", "protobuf", "jax", "numpy"):
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            versions[dist] = "?"
    return {
        "cpu": model,
        "cpus": os.cpu_count(),
        "memory_bytes": proc_meminfo().get("MemTotal", 0),
        "python": sys.version.split()[0],
        **versions,
    }


def proc_meminfo() -> dict[str, int]:
    found: dict[str, int] = {}
    for line in Path("/proc/meminfo").read_text().splitlines():
        name, _, value = line.partition(":")
        parts = value.split()
        if parts and parts[-1] == "kB":
            found[name] = int(parts[0]) * 1024
    return found


# -- Prometheus metrics of a server started with --metrics-port --------------------------------


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nothing listens on now (bound and released: a small race, fine here)."""
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def scrape(port: int, host: str = "127.0.0.1") -> dict[str, float]:
    """The samples of http://HOST:PORT/metrics (Prometheus text), by name with labels as
    written, e.g. 'ntkserve_compile_cache_misses_total{cache="topology"}'."""
    import urllib.request

    with urllib.request.urlopen(f"http://{host}:{port}/metrics", timeout=10) as response:
        text = response.read().decode()
    samples: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            samples[name] = float(value)
    return samples


def section_main(
    doc: str | None,
    run: Callable[[bool], dict[str, Any]],
    markdown: Callable[[dict[str, Any]], str],
    argv: Sequence[str] | None = None,
) -> int:
    """`python -m benchmarks.<section> [--quick] [--json PATH]`: runs one report section
    alone (its `run` and `markdown`) and prints its markdown."""
    import argparse
    import json

    parser = argparse.ArgumentParser(description=doc.split("\n")[0] if doc else None)
    parser.add_argument("--quick", action="store_true", help="small sizes: a smoke run")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    start = time.monotonic()
    results = run(args.quick)
    results["seconds"] = time.monotonic() - start
    if args.json is not None:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    print(markdown(results))
    return 0


# -- server processes ------------------------------------------------------------------------


class _Readings:
    """The memory (/proc/PID/status) and CPU seconds of a server process."""

    pid: int

    def status(self) -> dict[str, int]:
        return proc_status(self.pid)

    def cpu(self) -> float:
        return cpu_seconds(self.pid)


class KernelServer(_Readings, ServerProcess):
    """`python -m ntkserve_server serve --port 0 --data-dir DIR --log-level WARNING *flags`,
    run from the repository root, with its CPU and memory readings."""

    def __init__(self, data_dir: Path, *flags: str) -> None:
        super().__init__(data_dir, "--log-level", "WARNING", *flags, cwd=ROOT)
        self.flags = flags


class RawServer(_Readings, ListeningProcess):
    """The raw bytes-stream server (this module's `raw-server`), in its own process."""

    def __init__(self) -> None:
        super().__init__(
            [sys.executable, "-m", "benchmarks.service_support", "raw-server"],
            _RAW_LISTENING,
            "raw bytes-stream server",
            cwd=ROOT,
        )


# -- the raw stream: server and client -------------------------------------------------------


async def _raw_serve(host: str) -> None:
    buffer = bytes(os.urandom(1 << 20)) * 4  # 4 MiB of noise; messages are views of it
    view = memoryview(buffer)

    async def stream(request: bytes, context: Any) -> AsyncIterator[bytes]:
        total, size = (int(v) for v in request.split(b","))
        if size > len(buffer):
            raise ValueError("message size over 4 MiB")
        sent = 0
        while sent < total:
            n = min(size, total - sent)
            yield bytes(view[:n])  # a fresh bytes object per message, as a serializer makes
            sent += n

    handler = grpc.method_handlers_generic_handler(
        "bench.RawStream",
        {"Stream": grpc.unary_stream_rpc_method_handler(stream)},  # identity serializers
    )
    server = grpc.aio.server(options=_CHANNEL_OPTIONS)
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port(f"{host}:0")
    await server.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print(f"raw listening on {host}:{port}", flush=True)
    await stop.wait()
    await server.stop(1)


def raw_stream(channel: grpc.Channel, total: int, size: int, into: Any = None) -> int:
    """Receives TOTAL bytes in SIZE-byte messages; with `into` (a uint8 numpy array of at
    least TOTAL bytes) each message is also copied into place, the least any assembly does.
    Returns the bytes received."""
    import numpy as np

    call = channel.unary_stream(RAW_METHOD)  # no (de)serializers: bytes in, bytes out
    received = 0
    for message in call(f"{total},{size}".encode()):
        n = len(message)
        if into is not None:
            into[received : received + n] = np.frombuffer(message, np.uint8)
        received += n
    if received != total:
        raise RuntimeError(f"raw stream ended after {received} of {total} bytes")
    return received


def raw_channel(target: str) -> grpc.Channel:
    return grpc.insecure_channel(target, options=_CHANNEL_OPTIONS)


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] != ["raw-server"]:
        print("usage: python -m benchmarks.service_support raw-server [HOST]", file=sys.stderr)
        return 2
    asyncio.run(_raw_serve(args[1] if len(args) > 1 else "127.0.0.1"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
