"""The server's command line: `ntkserve serve [--host] [--port] [--data-dir] ...`.

Every flag can also come from the environment, as NTKSERVE_ and the flag's name in capitals
with underscores (`--max-queue 8` or NTKSERVE_MAX_QUEUE=8; `--insecure` or NTKSERVE_INSECURE=1):
containers and Kubernetes manifests configure the server that way. A flag on the command line
wins over the environment. (`ntkserve` itself is the client's command, which hands `serve`
to `main` here.)
"""

from __future__ import annotations

import argparse
import asyncio
import os
from pathlib import Path

from ntkserve_server import logs, storage_flags
from ntkserve_server.config import ServerConfig
from ntkserve_server.transport import Security, SecurityError


def _default_data_dir() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(
        os.path.expanduser("~"), ".local", "share"
    )
    return Path(base) / "ntkserve"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ntkserve", description="Kernels of infinite-width networks, served over gRPC."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run the gRPC server")
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    serve.add_argument(
        "--port", type=int, default=50051, help="port (default 50051; 0 picks a free one)"
    )
    serve.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help="where the registry lives (default $NTKSERVE_DATA_DIR or $XDG_DATA_HOME/ntkserve)",
    )
    serve.add_argument(
        "--compile-cache",
        type=Path,
        default=None,
        metavar="DIR",
        help="where compiled programs are kept on disk (default DATA_DIR/jax-cache; none "
        "with --isolate-tenant-caches); replicas of one version may share one",
    )
    serve.add_argument(
        "--max-message-mb", type=int, default=256, help="largest gRPC message (default 256 MiB)"
    )
    serve.add_argument(
        "--workers", type=int, default=4, help="threads running jax work (default 4)"
    )
    serve.add_argument(
        "--grace", type=float, default=30.0, help="seconds in-flight calls get on shutdown"
    )
    serve.add_argument(
        "--tile-memory-mb",
        type=int,
        default=None,
        help="device memory one streamed tile may use (default: half the GPU's; on CPU 1024 "
        "or --compile-memory-mb if less)",
    )
    serve.add_argument(
        "--max-tile-size", type=int, default=2048, help="largest tile side chosen (default 2048)"
    )
    serve.add_argument(
        "--max-stream-input-mb",
        type=int,
        default=4096,
        help="largest x1 + x2 of one streamed call (default 4096 MiB)",
    )
    serve.add_argument(
        "--batch-window-ms",
        type=float,
        default=2.0,
        help="longest wait to merge concurrent small ComputeKernel calls (default 2; 0: off)",
    )
    serve.add_argument(
        "--batch-max-entries",
        type=int,
        default=65536,
        help="only kernels with at most this many entries are batched (default 65536)",
    )
    serve.add_argument(
        "--max-compiled",
        type=int,
        default=64,
        help="entries of each compiled-program cache (topologies, tile programs, batched "
        "programs) kept in memory (default 64, least recently used dropped)",
    )
    serve.add_argument(
        "--max-compiled-mb",
        type=int,
        default=2048,
        help="estimated memory of the compiled programs and architectures kept (default "
        "2048 MiB, least recently used dropped and rebuilt on their next call)",
    )
    serve.add_argument(
        "--isolate-tenant-caches",
        action="store_true",
        help="each tenant compiles its own programs, so no tenant can time another's "
        "compilations (default: shared; jax's on-disk compilation cache is off with it)",
    )
    storage_flags.add(serve)
    serve.add_argument(
        "--max-tensor-elements",
        type=int,
        default=1 << 28,
        help="most elements of one request tensor (default 2**28)",
    )
    serve.add_argument(
        "--max-unary-kernel-entries",
        type=int,
        default=1 << 26,
        help="most entries of a kernel returned by a unary call; bigger ones must stream "
        "(default 2**26)",
    )
    serve.add_argument(
        "--max-concurrent-jobs",
        type=int,
        default=None,
        help="compute calls running at once; more wait in a queue (default 8 * --workers)",
    )
    serve.add_argument(
        "--max-queue",
        type=int,
        default=64,
        help="compute calls waiting; more are refused, with a retry delay (default 64)",
    )
    serve.add_argument(
        "--max-jobs-per-tenant",
        type=int,
        default=None,
        help="compute calls one tenant may have running or waiting (default: half of "
        "--max-concurrent-jobs, at least 2, with --auth-tokens; no limit without; 0: no limit)",
    )
    serve.add_argument(
        "--max-streams-per-tenant",
        type=int,
        default=None,
        help="StreamKernel calls one tenant may have open (default: a quarter of "
        "--max-concurrent-jobs, at least 2; 0: no limit)",
    )
    serve.add_argument(
        "--stream-idle-seconds",
        type=_positive_seconds,
        default=60.0,
        help="a stream whose client sends nothing this long while its header or inputs are "
        "awaited ends with DEADLINE_EXCEEDED (default 60)",
    )
    serve.add_argument(
        "--compile-workers",
        type=int,
        default=2,
        help="processes compiling unary programs, apart from --workers; one per tenant at a "
        "time (default 2)",
    )
    serve.add_argument(
        "--compile-memory-mb",
        type=int,
        default=None,
        help="address space one compile or computation may add to its engine process "
        "(beyond what the process holds once jax is loaded); past it that process ends, and "
        "its call gets RESOURCE_EXHAUSTED (default: a quarter of the host's memory, as "
        "--max-call-memory-mb on CPU)",
    )
    serve.add_argument(
        "--compile-seconds",
        type=_positive_seconds,
        default=300.0,
        help="longest one compile may run before its engine process is stopped and its call "
        "gets RESOURCE_EXHAUSTED (default 300)",
    )
    serve.add_argument(
        "--max-program-layers",
        type=int,
        default=400,
        help="most layer messages of a network compiled for unary calls (a repeat's layer "
        "counts once; default 400; 0: no limit)",
    )
    serve.add_argument(
        "--max-program-ops",
        type=int,
        default=50_000,
        help="most operations of one lowered unary program (default 50000; 0: no limit)",
    )
    serve.add_argument(
        "--max-call-memory-mb",
        type=int,
        default=None,
        help="device memory one unary call may use, by XLA's memory analysis (default: half "
        "the GPU's, or a quarter of the host's memory or address-space limit on CPU; 0: none)",
    )
    serve.add_argument(
        "--max-call-seconds",
        type=_seconds_or_none,
        default=ServerConfig.max_call_seconds,
        help="estimated device time of one unary call: XLA's FLOPs and bytes accessed at the "
        "device's rates (default %(default)g; 0: no limit); longer kernels stream",
    )
    serve.add_argument(
        "--device-flops-per-second",
        type=_rate,
        default=None,
        help="the device's arithmetic rate for that estimate (default 6e10 on CPU, fitted on "
        "2 cores; 1e13 on GPUs)",
    )
    serve.add_argument(
        "--device-bytes-per-second",
        type=_rate,
        default=None,
        help="the device's memory-traffic rate for that estimate (default 1.5e10 on CPU; "
        "3e11 on GPUs)",
    )
    serve.add_argument(
        "--auth-tokens",
        type=Path,
        default=None,
        metavar="FILE",
        help="require 'authorization: Bearer TOKEN'; FILE has one 'TOKEN TENANT' per line",
    )
    serve.add_argument(
        "--insecure",
        action="store_true",
        help="allow a non-loopback --host without --auth-tokens (anyone may call)",
    )
    serve.add_argument("--tls-cert", type=Path, default=None, metavar="PEM", help="serve TLS")
    serve.add_argument("--tls-key", type=Path, default=None, metavar="PEM", help="its key")
    serve.add_argument(
        "--tls-client-ca",
        type=Path,
        default=None,
        metavar="PEM",
        help="require client certificates signed by this CA (mutual TLS)",
    )
    serve.add_argument(
        "--metrics-port",
        type=int,
        default=None,
        metavar="PORT",
        help="serve Prometheus metrics at http://HOST:PORT/metrics (default: off; 0 picks one)",
    )
    serve.add_argument("--log-level", default="INFO", help="DEBUG, INFO, WARNING, ERROR")
    serve.add_argument(
        "--log-format",
        choices=logs.FORMATS,
        default="text",
        help="text: key=value lines (default); json: one JSON object per line",
    )
    _environment_defaults(serve)
    return parser


def _positive_seconds(text: str) -> float:
    seconds = float(text)
    if not seconds > 0:  # NaN too
        raise argparse.ArgumentTypeError(f"must be a number of seconds > 0, got {text}")
    return seconds


def _seconds_or_none(text: str) -> float:
    seconds = float(text)
    if not seconds >= 0 or seconds == float("inf"):  # NaN too
        raise argparse.ArgumentTypeError(f"must be a number of seconds >= 0 (0: none), got {text}")
    return seconds


def _rate(text: str) -> float:
    rate = float(text)
    if not 0 < rate < float("inf"):  # NaN too
        raise argparse.ArgumentTypeError(f"must be a rate per second > 0, got {text}")
    return rate


ENV_PREFIX = "NTKSERVE_"
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def _environment_defaults(command: argparse.ArgumentParser) -> None:
    """Sets each flag's default from NTKSERVE_<FLAG>, refusing a value its type rejects."""
    for action in command._actions:
        if not action.option_strings or action.dest == "help":
            continue
        name = ENV_PREFIX + action.dest.upper()
        raw = os.environ.get(name)
        if not raw:  # unset, or set to nothing (compose's `NTKSERVE_X=`): the default
            continue
        if isinstance(action, argparse._StoreTrueAction):
            if raw.strip().lower() not in _TRUE | _FALSE:
                raise SystemExit(f"ntkserve: {name}={raw!r}: expected 1/0, true/false, yes/no")
            value: object = raw.strip().lower() in _TRUE
        else:
            convert = action.type if callable(action.type) else str
            try:
                value = convert(raw)
            except (TypeError, ValueError) as e:
                raise SystemExit(f"ntkserve: {name}={raw!r}: {e}") from e
            if action.choices is not None and value not in action.choices:
                raise SystemExit(f"ntkserve: {name}={raw!r}: choose from {list(action.choices)}")
        command.set_defaults(**{action.dest: value})


def _bytes(mib: int | None) -> int | None:
    """A flag in MiB as bytes; None (the device-dependent default) stays None."""
    return None if mib is None else mib << 20


def main(argv: list[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    logs.configure(args.log_level, args.log_format)
    data_dir = args.data_dir or _default_data_dir()  # --data-dir, or $NTKSERVE_DATA_DIR
    try:  # refuse bad security flags before jax initialises a device
        security = Security.load(
            auth_tokens=args.auth_tokens,
            insecure=args.insecure,
            tls_cert=args.tls_cert,
            tls_key=args.tls_key,
            tls_client_ca=args.tls_client_ca,
        )
        security.check_host(args.host)
    except SecurityError as e:
        raise SystemExit(f"ntkserve: {e}") from e
    config = ServerConfig(
        host=args.host,
        port=args.port,
        data_dir=data_dir,
        compile_cache=args.compile_cache,
        max_message_bytes=args.max_message_mb * 1024 * 1024,
        workers=args.workers,
        grace_seconds=args.grace,
        tile_memory_bytes=_bytes(args.tile_memory_mb),
        max_tile_size=args.max_tile_size,
        max_stream_input_bytes=args.max_stream_input_mb << 20,
        batch_window_seconds=args.batch_window_ms * 1e-3,
        batch_max_entries=args.batch_max_entries,
        max_tensor_elements=args.max_tensor_elements,
        max_unary_kernel_entries=args.max_unary_kernel_entries,
        max_concurrent_jobs=args.max_concurrent_jobs,
        max_queue=args.max_queue,
        max_jobs_per_tenant=args.max_jobs_per_tenant,
        max_streams_per_tenant=args.max_streams_per_tenant,
        stream_idle_seconds=args.stream_idle_seconds,
        compile_workers=args.compile_workers,
        compile_memory_bytes=_bytes(args.compile_memory_mb),
        compile_seconds=args.compile_seconds,
        max_program_layers=args.max_program_layers,
        max_program_ops=args.max_program_ops,
        max_call_memory_bytes=_bytes(args.max_call_memory_mb),
        max_call_seconds=args.max_call_seconds,
        device_flops_per_second=args.device_flops_per_second,
        device_bytes_per_second=args.device_bytes_per_second,
        max_topologies=args.max_compiled,
        max_compiled_bytes=args.max_compiled_mb << 20,
        isolate_tenant_caches=args.isolate_tenant_caches,
        max_registry_bytes=args.max_registry_mb << 20,
        max_model_bytes=args.max_model_mb << 20,
        model_memory_bytes=args.model_memory_mb << 20,
        max_architectures_per_tenant=args.max_architectures_per_tenant,
        max_architecture_bytes_per_tenant=args.max_architecture_mb_per_tenant << 20,
        max_tile_programs=args.max_compiled,
        security=security,
        metrics_port=args.metrics_port,
    )
    # A shared GPU hosts other jobs too: allocate device memory as needed, not 75% up front
    # (set XLA_PYTHON_CLIENT_PREALLOCATE=true to get jax's default back).
    os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
    from ntkserve_server.zygote import fork_zygote  # jax loads only for `serve`

    # Before any thread and before grpc is imported (it registers at-fork handlers; forked
    # after it, one server in a suite run failed to start: "epoll_wait error: Bad file
    # descriptor").
    zygote = fork_zygote(("ntkserve_server.engine_processes",))
    from ntkserve_server.server import serve

    try:
        asyncio.run(serve(config, zygote))
    finally:
        if zygote is not None:
            zygote.close()


if __name__ == "__main__":
    main()
