"""What the server may spend, from its settings and its device: a streamed tile's memory, a
unary call's memory and estimated time, the engine processes' number and memory. One place
for the defaults that depend on the device (GPU memory where jax reports it; the host's
memory and address-space limit on CPU), so `server.build` only assembles."""

from __future__ import annotations

import os
import resource
from concurrent.futures import ThreadPoolExecutor

import jax
from ntkserve_engine.kernels import KernelFn

from ntkserve_server.compile_workers import CompileWorkers
from ntkserve_server.config import ServerConfig
from ntkserve_server.engine_processes import EngineProcesses
from ntkserve_server.program_recipes import Program, Recipe
from ntkserve_server.tile_programs import TilePrograms
from ntkserve_server.unary_programs import (
    CPU_RATES,
    GPU_RATES,
    Budgets,
    DeviceRates,
    UnaryPrograms,
)
from ntkserve_server.zygote import Zygote


def tile_budget(config: ServerConfig) -> int:
    """--tile-memory-mb, or half the device's memory where jax reports it (GPUs), else 1 GiB
    or an engine process's memory if less (tiles compute there)."""
    if config.tile_memory_bytes is not None:
        return config.tile_memory_bytes
    stats = jax.local_devices()[0].memory_stats() or {}
    limit = stats.get("bytes_limit")
    if limit:
        return int(limit) // 2
    engine = _engine_memory(config)  # 0: not capped
    return min(1 << 30, engine) if engine else 1 << 30


def _call_memory_budget(config: ServerConfig) -> int:
    """--max-call-memory-mb, or its default (see `ServerConfig.max_call_memory_bytes`)."""
    if config.max_call_memory_bytes is not None:
        return config.max_call_memory_bytes
    limit = (jax.local_devices()[0].memory_stats() or {}).get("bytes_limit")
    if limit:
        return int(limit) // 2
    host = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    address_space, _ = resource.getrlimit(resource.RLIMIT_AS)
    if address_space != resource.RLIM_INFINITY:
        host = min(host, address_space)
    return host // 4


def _device_rates(config: ServerConfig) -> DeviceRates:
    """--device-flops-per-second and --device-bytes-per-second, each defaulting to this
    backend's (`unary_programs.CPU_RATES` or `GPU_RATES`)."""
    default = CPU_RATES if jax.default_backend() == "cpu" else GPU_RATES
    return DeviceRates(
        flops_per_second=config.device_flops_per_second or default.flops_per_second,
        bytes_per_second=config.device_bytes_per_second or default.bytes_per_second,
    )


def engine_processes(config: ServerConfig, zygote: Zygote | None) -> EngineProcesses:
    """As many engine processes as compiles and computations can run at once
    (--compile-workers + --workers), each capped at --compile-memory-mb (default a quarter
    of the host's memory, as a unary call's memory budget on CPU), forked from `zygote`."""
    return EngineProcesses(config.compile_workers + config.workers, _engine_memory(config), zygote)


def _engine_memory(config: ServerConfig) -> int:
    """--compile-memory-mb (0: not capped), or a quarter of the host's memory."""
    memory = config.compile_memory_bytes
    if memory is None:
        memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 4
    return memory


def unary_budgets(config: ServerConfig) -> Budgets:
    """What one unary program may cost under `config` (defaults for this device)."""
    return Budgets(
        max_program_layers=config.max_program_layers,
        max_program_ops=config.max_program_ops,
        max_call_memory_bytes=_call_memory_budget(config),
        max_call_seconds=config.max_call_seconds,
        rates=_device_rates(config),
    )


def unary_programs(
    config: ServerConfig,
    compile_executor: ThreadPoolExecutor,
    compiles: CompileWorkers,
) -> UnaryPrograms:
    """The unary programs, admitted by `unary_budgets(config)`, compiled and run in
    the engine processes of `compiles`."""
    return UnaryPrograms(
        unary_budgets(config),
        compile_executor,
        workers=compiles,
        max_programs=4 * config.max_tile_programs,
    )


def tile_programs(config: ServerConfig, compiles: CompileWorkers) -> TilePrograms:
    """The streamed tiles' programs, compiled by `compiles` under --max-program-ops and run
    in its engine processes (so a tile whose computation dies costs its stream alone)."""

    def build(made: Recipe, kfn: KernelFn) -> Program:
        return compiles.build(made, config.max_program_ops, compiles.engines.tile_executable)

    return TilePrograms(
        tile_budget(config),
        max_tile=config.max_tile_size,
        max_programs=config.max_tile_programs,
        build=build,
    )
