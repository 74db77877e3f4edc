"""Prometheus metrics on `--metrics-port`: calls, latency, compilations, tiles, queue, memory.

Calls are counted as they end (`observe_call`, the call boundary's observer). Everything
else is read when Prometheus scrapes, from the counters the components keep themselves
(the compiled-program caches, the tile programs, admission control, the devices), so the
engine knows nothing of Prometheus. XLA compilations and persistent-cache hits come from
jax's own monitoring events.

The endpoint has no authentication: it tells method names, counts and timings, never a
tenant, an id or a tensor. Bind it where only the scraper can reach it.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from typing import Any

import jax.monitoring
import prometheus_client
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry

from ntkserve_server.admission import Admission
from ntkserve_server.compile_workers import WORKER_COMPILE_EVENT
from ntkserve_server.compute import ComputeEngine
from ntkserve_server.device_work import DeviceWork
from ntkserve_server.tile_programs import TilePrograms
from ntkserve_server.unary_programs import UnaryPrograms

# jax.monitoring event names (jax._src.dispatch and jax._src.compiler).
BACKEND_COMPILE_EVENT = "/jax/core/compile/backend_compile_duration"
PERSISTENT_CACHE_HIT_EVENT = "/jax/compilation_cache/cache_hits"
# Small calls take about a millisecond, streamed kernels minutes.
LATENCY_BUCKETS = (0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
COMPILE_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


class ComponentCollector(Collector):
    """Reads the components' own counters at scrape time."""

    def __init__(
        self,
        engine: ComputeEngine,
        programs: TilePrograms,
        admission: Admission,
        devices: Sequence[Any],
        unary: UnaryPrograms | None = None,
        work: DeviceWork | None = None,
    ) -> None:
        self._unary = unary
        self._work = work
        self._engine = engine
        self._tile_programs = programs
        self._admission = admission
        self._devices = tuple(devices)

    def collect(self) -> Iterator[Metric]:
        hits = CounterMetricFamily(
            "ntkserve_compile_cache_hits",
            "Compiled programs found in the server's caches, by cache",
            labels=["cache"],
        )
        misses = CounterMetricFamily(
            "ntkserve_compile_cache_misses",
            "Compiled programs not found (so made and compiled), by cache",
            labels=["cache"],
        )
        hits.add_metric(["topology"], self._engine.hits)
        misses.add_metric(["topology"], self._engine.misses)
        hits.add_metric(["tile_program"], self._tile_programs.hits)
        misses.add_metric(["tile_program"], self._tile_programs.compilations)
        if self._unary is not None:
            misses.add_metric(["unary_program"], self._unary.compilations)
        yield hits
        yield misses
        yield from self._unary_costs()
        tiles = CounterMetricFamily(
            "ntkserve_tiles_computed",
            "Streamed kernel tiles computed, by device",
            labels=["device"],
        )
        for device in self._devices:
            tiles.add_metric([str(device.id)], self._tile_programs.tiles_computed[device.id])
        yield tiles
        yield GaugeMetricFamily(
            "ntkserve_jobs_running", "Compute calls running now", value=self._admission.running
        )
        yield GaugeMetricFamily(
            "ntkserve_queue_depth",
            "Compute calls waiting for a slot now",
            value=self._admission.waiting,
        )
        memory = GaugeMetricFamily(
            "ntkserve_device_memory_bytes_in_use",
            "Device memory in use, as the device reports it (GPUs; none on CPU)",
            labels=["device"],
        )
        for device in self._devices:
            stats = device.memory_stats() or {}
            if "bytes_in_use" in stats:
                memory.add_metric([str(device.id)], stats["bytes_in_use"])
        yield memory

    def _unary_costs(self) -> Iterator[Metric]:
        """Unary calls refused by a cost budget; unary device work run, or dropped before it
        started because its callers had left."""
        if self._unary is not None:
            yield CounterMetricFamily(
                "ntkserve_unary_cost_refusals",
                "Unary programs refused (a cost budget, a failed compile) and refusals recalled",
                value=self._unary.refusals,
            )
            yield CounterMetricFamily(
                "ntkserve_engine_processes_lost",
                "Engine processes that died, or were stopped, during a compile or a "
                "computation, unary or a stream's tile (each replaced; its call got "
                "RESOURCE_EXHAUSTED)",
                value=self._unary.processes_lost,
            )
        if self._work is not None:
            work = CounterMetricFamily(
                "ntkserve_unary_device_work",
                "Unary device work, by outcome: started, or dropped (callers gone) before it",
                labels=["outcome"],
            )
            work.add_metric(["started"], self._work.started)
            work.add_metric(["dropped"], self._work.dropped)
            yield work


class Metrics:
    """The server's metrics in a registry of their own (not the process-global one)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self._calls = prometheus_client.Counter(
            "ntkserve_calls",
            "RPCs of KernelService ended, by method and status code",
            ["method", "code"],
            registry=self.registry,
        )
        self._latency = prometheus_client.Histogram(
            "ntkserve_call_seconds",
            "RPC duration, by method",
            ["method"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self._compile = prometheus_client.Histogram(
            "ntkserve_xla_compile_seconds",
            "XLA compilations (jax's backend compile, in the server or its engine processes), "
            "and the seconds each took",
            buckets=COMPILE_BUCKETS,
            registry=self.registry,
        )
        self._persistent_hits = prometheus_client.Counter(
            "ntkserve_persistent_compile_cache_hits",
            "Programs loaded from jax's compilation cache in the data dir instead of compiled",
            registry=self.registry,
        )
        self._lock = threading.Lock()
        self._listening = False

    def observe_call(self, method: str, code: str, seconds: float) -> None:
        self._calls.labels(method, code).inc()
        self._latency.labels(method).observe(seconds)

    def watch(self, components: Collector) -> None:
        """Reports the components' counters (a `ComponentCollector`) at every scrape."""
        self.registry.register(components)

    def listen_to_jax(self) -> None:
        """Counts jax's compilations and persistent-cache hits (listeners are process-wide:
        once per Metrics)."""
        with self._lock:
            if self._listening:
                return
            self._listening = True

        def duration(event: str, duration_secs: float, **_: str | int) -> None:
            if event in (BACKEND_COMPILE_EVENT, WORKER_COMPILE_EVENT):
                self._compile.observe(duration_secs)

        def event(event: str, **_: str | int) -> None:
            if event == PERSISTENT_CACHE_HIT_EVENT:
                self._persistent_hits.inc()

        jax.monitoring.register_event_duration_secs_listener(duration)
        jax.monitoring.register_event_listener(event)

    def serve(self, host: str, port: int) -> int:
        """Serves /metrics over HTTP on a daemon thread; returns the port (0 picks one)."""
        server, _ = prometheus_client.start_http_server(port, addr=host, registry=self.registry)
        return int(server.server_port)
