"""Assembles and runs the gRPC server: KernelService, the KServe v2 inference protocol,
health, reflection, graceful stop.

Health reports SERVING only once jax has initialised its device and the port is open; on
SIGTERM or SIGINT it turns NOT_SERVING first, then in-flight calls get `grace` seconds to
finish while new ones are refused, then the process exits.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import jax
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from ntkserve.v1 import kernel_service_pb2

import ntkserve_server
from ntkserve_server import inference, wire
from ntkserve_server.admission import Admission
from ntkserve_server.batching import DynamicBatcher
from ntkserve_server.compute import ComputeEngine
from ntkserve_server.config import ServerConfig
from ntkserve_server.metrics import ComponentCollector, Metrics
from ntkserve_server.registry import Registry
from ntkserve_server.service import KernelService
from ntkserve_server.tile_programs import TilePrograms

log = logging.getLogger("ntkserve")
FLUSH_SECONDS = 0.5
SERVICE_NAME = kernel_service_pb2.DESCRIPTOR.services_by_name["KernelService"].full_name


def _devices() -> str:
    return ", ".join(f"{d.platform}:{d.id} ({d.device_kind})" for d in jax.local_devices())


def _persistent_compilation_cache(path: Path) -> None:
    """jax's on-disk cache of compiled programs, in the data dir: a restarted server loads
    what it compiled before instead of compiling it again (every program, however quick)."""
    path.mkdir(parents=True, exist_ok=True)
    jax.config.update("jax_compilation_cache_dir", str(path))  # type: ignore[no-untyped-call]
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)  # type: ignore[no-untyped-call]
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)  # type: ignore[no-untyped-call]


def _tile_budget(config: ServerConfig) -> int:
    if config.tile_memory_bytes is not None:
        return config.tile_memory_bytes
    stats = jax.local_devices()[0].memory_stats() or {}
    limit = stats.get("bytes_limit")
    return int(limit) // 2 if limit else 1 << 30


async def serve(config: ServerConfig) -> None:
    """Runs until SIGTERM/SIGINT, then drains and returns."""
    jax.config.update("jax_enable_x64", True)  # type: ignore[no-untyped-call]  # float64 requests stay float64 end to end
    _persistent_compilation_cache(config.data_dir / "jax-cache")
    devices = _devices()  # initialises the backend before we say SERVING
    registry = Registry(config.data_dir / "registry.sqlite3")
    executor = ThreadPoolExecutor(max_workers=config.workers, thread_name_prefix="ntkserve-jax")
    server = grpc.aio.server(
        interceptors=config.security.interceptors(),
        options=[
            ("grpc.max_send_message_length", config.max_message_bytes),
            ("grpc.max_receive_message_length", config.max_message_bytes),
        ],
    )
    programs = TilePrograms(
        _tile_budget(config), max_tile=config.max_tile_size, max_programs=config.max_tile_programs
    )
    engine = ComputeEngine(config.max_topologies)
    admission = Admission(
        config.max_concurrent_jobs or 8 * config.workers,
        config.max_queue,
        config.max_jobs_per_tenant,
    )
    metrics = None
    if config.metrics_port is not None:
        metrics = Metrics()
        metrics.listen_to_jax()
        metrics.watch(ComponentCollector(engine, programs, admission, jax.local_devices()))
    kernel_service = KernelService(
        registry,
        engine,
        executor,
        programs,
        DynamicBatcher(
            executor,
            window_seconds=config.batch_window_seconds,
            max_entries=config.batch_max_entries,
            max_programs=config.max_tile_programs,
        ),
        devices=jax.local_devices(),
        max_stream_input_bytes=config.max_stream_input_bytes,
        admission=admission,
        max_tensor_elements=config.max_tensor_elements,
        max_unary_kernel_entries=config.max_unary_kernel_entries,
        max_response_bytes=config.max_message_bytes,
        observer=metrics,
    )
    wire.add_to_server(kernel_service, server)
    inference.add_to_server(
        inference.InferenceService(
            kernel_service,
            admission=admission,
            server_version=ntkserve_server.__version__,
            observer=metrics,
        ),
        server,
    )
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(
        (
            SERVICE_NAME,
            inference.SERVICE.full_name,
            health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
            reflection.SERVICE_NAME,
        ),
        server,
    )
    port = config.security.bind(server, config.host, config.port)
    if port == 0:
        raise SystemExit(f"cannot listen on {config.host}:{config.port}")
    await server.start()
    for service in ("", SERVICE_NAME, inference.SERVICE.full_name):
        await health_servicer.set(service, health_pb2.HealthCheckResponse.SERVING)

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    log.info(
        "devices: %s; registry: %s; tile memory budget %d MiB; device memory preallocate=%s",
        devices,
        registry.path,
        programs.budget_bytes >> 20,
        os.environ.get("XLA_PYTHON_CLIENT_PREALLOCATE", "true (jax's default)"),
    )
    config.security.log_summary(config.host)
    if metrics is not None:
        metrics_port = metrics.serve(config.host, config.metrics_port or 0)
        log.info("metrics on http://%s:%d/metrics", config.host, metrics_port)
    # The one line that says where it listens (tests read it to learn the port).
    print(f"ntkserve listening on {config.host}:{port}", flush=True)
    sys.stdout.flush()

    await stop.wait()
    log.info("shutting down: health NOT_SERVING, draining for up to %.0fs", config.grace_seconds)
    await health_servicer.enter_graceful_shutdown()
    await server.stop(config.grace_seconds)
    # stop() returns once every call has *queued* its last frames; give the transports a
    # moment to flush them before the process exits, or a large final response can be cut
    # off (the client then sees "connection reset" for a call that had completed).
    await asyncio.sleep(FLUSH_SECONDS)
    executor.shutdown(wait=True)
    registry.close()
    log.info("stopped")
