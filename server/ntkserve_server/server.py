"""Assembles the gRPC server (KernelService, the KServe v2 inference protocol, health,
reflection) from a ServerConfig, and runs it until a signal, then drains.

Building and running are apart so that a test can build a server in its own process, start
it on port 0, call it and stop it, with no subprocess and no signal: `build` returns the
assembled, bound, not yet started server and its parts; `start` opens it and says SERVING;
`stop` drains it. `serve` is the three around a wait for SIGTERM or SIGINT: what
`ntkserve serve` runs.

Health reports SERVING only once jax has initialised its device and the port is open; on
SIGTERM or SIGINT it turns NOT_SERVING first, then in-flight calls get `grace` seconds to
finish while new ones are refused, then the process exits.
"""

from __future__ import annotations

import asyncio
import dataclasses
import errno
import logging
import os
import signal
import socket
import sys
from concurrent.futures import ThreadPoolExecutor

import grpc
import jax
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from ntkserve.v1 import kernel_service_pb2, model_service_pb2

import ntkserve_server
from ntkserve_server import budgets, inference, wire
from ntkserve_server.admission import Admission
from ntkserve_server.batching import DynamicBatcher
from ntkserve_server.compile_workers import CompileWorkers
from ntkserve_server.compute import ComputeEngine
from ntkserve_server.config import ServerConfig
from ntkserve_server.device_work import DeviceWork
from ntkserve_server.engine_processes import EngineProcesses
from ntkserve_server.metrics import ComponentCollector, Metrics
from ntkserve_server.model_service import ModelService
from ntkserve_server.model_store import ModelStore
from ntkserve_server.models import Predictors
from ntkserve_server.registry import Quotas, Registry
from ntkserve_server.service import KernelService
from ntkserve_server.tile_programs import TilePrograms
from ntkserve_server.unary_programs import UnaryPrograms
from ntkserve_server.zygote import Zygote

log = logging.getLogger("ntkserve")
FLUSH_SECONDS = 0.5
SERVICE_NAME = kernel_service_pb2.DESCRIPTOR.services_by_name["KernelService"].full_name
MODEL_SERVICE = model_service_pb2.DESCRIPTOR.services_by_name["ModelService"]
HEALTH_SERVICES = ("", SERVICE_NAME, MODEL_SERVICE.full_name, inference.SERVICE.full_name)


class CannotListen(OSError):
    """The configured host and port cannot be bound."""


@dataclasses.dataclass
class BuiltServer:
    """An assembled server and the parts a caller (or a test) may want to look at; bound to
    `port`, not started."""

    config: ServerConfig
    server: grpc.aio.Server
    port: int
    health: health.aio.HealthServicer
    kernel_service: KernelService
    registry: Registry
    model_store: ModelStore
    executor: ThreadPoolExecutor
    compile_executor: ThreadPoolExecutor
    engines: EngineProcesses
    programs: TilePrograms
    engine: ComputeEngine
    admission: Admission
    metrics: Metrics | None

    @property
    def target(self) -> str:
        """host:port, for a client's channel."""
        return f"{self.config.host}:{self.port}"


def _devices() -> str:
    return ", ".join(f"{d.platform}:{d.id} ({d.device_kind})" for d in jax.local_devices())


def configure_jax(config: ServerConfig) -> None:
    """What the server sets for its whole process, before anything compiles: float64 requests
    stay float64 end to end, and compiled programs go to jax's on-disk cache (--compile-cache,
    by default in the data dir): a restarted server loads what it compiled before instead of
    compiling it again, every program, however quick. Process-wide, so `serve` does it, not
    `build`: a test that builds a server in its own process keeps its jax settings. With
    isolated tenant caches there is no on-disk cache: it would give one tenant's compilation
    to another."""
    jax.config.update("jax_enable_x64", True)  # type: ignore[no-untyped-call]
    if config.isolate_tenant_caches:  # its keys are the programs', not the tenants'
        return
    path = config.compile_cache or config.data_dir / "jax-cache"
    path.mkdir(parents=True, exist_ok=True)
    jax.config.update("jax_compilation_cache_dir", str(path))  # type: ignore[no-untyped-call]
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)  # type: ignore[no-untyped-call]
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)  # type: ignore[no-untyped-call]


def _grpc_server(config: ServerConfig) -> grpc.aio.Server:
    return grpc.aio.server(
        interceptors=config.security.interceptors(),
        options=[
            ("grpc.max_send_message_length", config.max_message_bytes),
            ("grpc.max_receive_message_length", config.max_message_bytes),
            # grpc sets SO_REUSEPORT by default: a second server on a port in use would bind
            # it too, say "listening", and share its calls. One server per port.
            ("grpc.so_reuseport", 0),
        ],
    )


def _bind(config: ServerConfig, server: grpc.aio.Server) -> int:
    """The port bound (grpc.aio raises RuntimeError where it cannot bind, older grpc returned
    0): CannotListen, with the address and why, either way."""
    where = f"{config.host}:{config.port}"
    try:
        port = config.security.bind(server, config.host, config.port)
    except RuntimeError as e:
        why = _why_not(config.host, config.port, e)
        raise CannotListen(f"cannot listen on {where}: {why}") from None
    if port == 0:
        raise CannotListen(f"cannot listen on {where}: {_why_not(config.host, config.port)}")
    return port


def _why_not(host: str, port: int, error: Exception | None = None) -> str:
    """Why grpc could not bind: it does not say, so a plain socket tries the same address
    (a port in use is the common case: another server listens there)."""
    grpc_said = str(error) if error else "grpc could not bind it"
    try:
        found = socket.getaddrinfo(host.strip("[]"), port, type=socket.SOCK_STREAM)
        family, kind, proto, _, address = found[0]
        with socket.socket(family, kind, proto) as probe:
            probe.bind(address)
    except OSError as e:
        if e.errno == errno.EADDRINUSE:
            return (
                f"port {port} is in use (another ntkserve, or another program, listens "
                "there): stop it, or choose another --port"
            )
        return f"{grpc_said} ({e})"
    return grpc_said


def _metrics(
    config: ServerConfig,
    engine: ComputeEngine,
    programs: TilePrograms,
    admission: Admission,
    unary: UnaryPrograms,
    work: DeviceWork,
) -> Metrics | None:
    """The Prometheus metrics, watching jax and the components (None without --metrics-port)."""
    if config.metrics_port is None:
        return None
    metrics = Metrics()
    metrics.listen_to_jax()
    metrics.watch(ComponentCollector(engine, programs, admission, jax.local_devices(), unary, work))
    return metrics


def _kernel_service(
    config: ServerConfig,
    registry: Registry,
    engine: ComputeEngine,
    executor: ThreadPoolExecutor,
    programs: TilePrograms,
    admission: Admission,
    metrics: Metrics | None,
    unary: UnaryPrograms,
    work: DeviceWork,
) -> KernelService:
    return KernelService(
        registry,
        engine,
        executor,
        programs,
        DynamicBatcher(
            executor,
            programs=unary,
            work=work,
            window_seconds=config.batch_window_seconds,
            max_entries=config.batch_max_entries,
        ),
        devices=jax.local_devices(),
        max_stream_input_bytes=config.max_stream_input_bytes,
        stream_idle_seconds=config.stream_idle_seconds,
        admission=admission,
        max_tensor_elements=config.max_tensor_elements,
        max_unary_kernel_entries=config.max_unary_kernel_entries,
        max_response_bytes=config.max_message_bytes,
        observer=metrics,
    )


def _add_services(
    server: grpc.aio.Server,
    kernel_service: KernelService,
    model_service: ModelService,
    admission: Admission,
    metrics: Metrics | None,
) -> health.aio.HealthServicer:
    """KernelService, ModelService, the inference protocol over them, health (returned,
    NOT_SERVING until `start`) and reflection."""
    wire.add_to_server(kernel_service, server)
    wire.bind(MODEL_SERVICE, model_service_pb2, model_service, server)
    inference.add_to_server(
        inference.InferenceService(
            kernel_service,
            model_service,
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
            MODEL_SERVICE.full_name,
            inference.SERVICE.full_name,
            health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
            reflection.SERVICE_NAME,
        ),
        server,
    )
    return health_servicer


def build(config: ServerConfig, zygote: Zygote | None = None) -> BuiltServer:
    """The server `config` describes, its services added and its port bound (port 0: a free
    one, in `BuiltServer.port`), not started. Call it on the event loop that will run it.
    `zygote`: where engine processes are forked from (None: each a fresh interpreter).
    Raises CannotListen."""
    registry = Registry(
        config.data_dir / "registry.sqlite3",
        Quotas(
            config.max_registry_bytes,
            config.max_architectures_per_tenant,
            config.max_architecture_bytes_per_tenant,
        ),
    )
    executor = ThreadPoolExecutor(max_workers=config.workers, thread_name_prefix="ntkserve-jax")
    compile_executor = ThreadPoolExecutor(
        max_workers=config.compile_workers, thread_name_prefix="ntkserve-compile"
    )
    engines = budgets.engine_processes(config, zygote)
    compiles = CompileWorkers(engines, config.compile_seconds)
    unary = budgets.unary_programs(config, compile_executor, compiles)
    server = _grpc_server(config)
    programs = budgets.tile_programs(config, compiles)
    engine = ComputeEngine(
        config.max_topologies, config.max_compiled_bytes, config.isolate_tenant_caches
    )
    admission = Admission(
        config.running_slots(),
        config.max_queue,
        config.jobs_per_tenant(),
        config.streams_per_tenant(),
    )
    work = DeviceWork(executor)
    metrics = _metrics(config, engine, programs, admission, unary, work)
    kernel_service = _kernel_service(
        config, registry, engine, executor, programs, admission, metrics, unary, work
    )
    model_store = ModelStore(config.data_dir / "models", config.max_model_bytes)
    model_service = ModelService(kernel_service, model_store, Predictors(config.model_memory_bytes))
    health_servicer = _add_services(server, kernel_service, model_service, admission, metrics)
    try:
        port = _bind(config, server)
    except CannotListen:
        executor.shutdown(wait=False)
        compile_executor.shutdown(wait=False)
        engines.close()
        registry.close()
        model_store.close()
        raise
    return BuiltServer(
        config,
        server,
        port,
        health_servicer,
        kernel_service,
        registry,
        model_store,
        executor,
        compile_executor,
        engines,
        programs,
        engine,
        admission,
        metrics,
    )


async def start(built: BuiltServer) -> None:
    """Opens the port and reports SERVING for every service."""
    await built.server.start()
    for service in HEALTH_SERVICES:
        await built.health.set(service, health_pb2.HealthCheckResponse.SERVING)


async def stop(built: BuiltServer) -> None:
    """Health NOT_SERVING, new calls refused, in-flight calls given `grace_seconds` to
    finish; then the workers and the registry are closed."""
    log.info(
        "shutting down: health NOT_SERVING, draining for up to %.0fs", built.config.grace_seconds
    )
    await built.health.enter_graceful_shutdown()
    await built.server.stop(built.config.grace_seconds)
    # stop() returns once every call has *queued* its last frames; give the transports a
    # moment to flush them before the process exits, or a large final response can be cut
    # off (the client then sees "connection reset" for a call that had completed).
    await asyncio.sleep(FLUSH_SECONDS)
    built.executor.shutdown(wait=True)
    built.compile_executor.shutdown(wait=True)
    built.engines.close()
    built.registry.close()
    built.model_store.close()
    log.info("stopped")


def _announce(built: BuiltServer, devices: str) -> None:
    """The startup log, the metrics endpoint, and the one line that says where it listens."""
    config = built.config
    log.info(
        "devices: %s; registry: %s; tile memory budget %d MiB; device memory preallocate=%s",
        devices,
        built.registry.path,
        built.programs.budget_bytes >> 20,
        os.environ.get("XLA_PYTHON_CLIENT_PREALLOCATE", "true (jax's default)"),
    )
    config.security.log_summary(config.host)
    if built.metrics is not None:
        metrics_port = built.metrics.serve(config.host, config.metrics_port or 0)
        log.info("metrics on http://%s:%d/metrics", config.host, metrics_port)
    # The one line that says where it listens (tests read it to learn the port).
    print(f"ntkserve listening on {config.host}:{built.port}", flush=True)
    sys.stdout.flush()


async def serve(config: ServerConfig, zygote: Zygote | None = None) -> None:
    """Runs until SIGTERM/SIGINT, then drains and returns. `zygote`: where engine
    processes are forked from (`zygote.fork_zygote`, before this process started threads)."""
    configure_jax(config)
    devices = _devices()  # initialises the backend before we say SERVING
    try:
        built = build(config, zygote)
    except CannotListen as e:
        raise SystemExit(str(e)) from None
    await start(built)
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopping.set)
    _announce(built, devices)
    await stopping.wait()
    await stop(built)
