"""The server's settings, in a module that imports no jax: `ntkserve serve --help` and a
refused flag answer at once, and jax is configured (device memory, x64) before it loads."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from ntkserve_server.transport import Security


@dataclasses.dataclass(frozen=True)
class ServerConfig:
    host: str = "127.0.0.1"
    port: int = 50051
    data_dir: Path = Path("ntkserve-data")
    # Where compiled programs are kept on disk (jax's cache and the compile replies); None:
    # DATA_DIR/jax-cache. Replicas of one version on one device kind may share one.
    compile_cache: Path | None = None
    max_message_bytes: int = 256 * 1024 * 1024
    workers: int = 4
    grace_seconds: float = 30.0
    # Device memory one streamed tile may use; None: half the device's memory where jax
    # reports it (GPUs), else 1 GiB or an engine process's memory if less.
    tile_memory_bytes: int | None = None
    max_tile_size: int = 2048
    max_stream_input_bytes: int = 4 << 30
    max_tile_programs: int = 64
    # Topologies whose compiled programs stay in memory (least recently used dropped).
    max_topologies: int = 64
    # The compute engine's compiled state (programs per topology, entries per id), in
    # estimated bytes (compiled_state.py: how an entry is measured); 2 GiB by default, a
    # quarter of a lab server of 8 GiB. Least recently used evicted, rebuilt on next use.
    max_compiled_bytes: int = 2 << 30
    # Each tenant compiles its own programs (no tenant can time another's compilations);
    # off by default: a lab shares compilations (see compiled_state.py for the trade).
    isolate_tenant_caches: bool = False
    # The registry file's size cap (0: the disk is the limit), and each tenant's quota of
    # stored architectures: count, and bytes of their canonical form (a 10,000-layer
    # network is ~125 KB): 1,000 and 64 MiB by default, far above a lab's use, far below a disk.
    max_registry_bytes: int = 0
    max_architectures_per_tenant: int = 1000
    max_architecture_bytes_per_tenant: int = 64 << 20
    # Fitted models (ModelService): the bytes all stored models may take on disk (0: the
    # disk is the limit), and the bytes of loaded models kept in memory (their solves;
    # least recently used dropped, loaded again from disk when asked).
    max_model_bytes: int = 0
    model_memory_bytes: int = 4 << 30
    # Dynamic batching of small concurrent ComputeKernel calls; 0 turns it off.
    batch_window_seconds: float = 0.002
    batch_max_entries: int = 65536
    # Limits (RESOURCE_EXHAUSTED past them): elements of one request tensor; entries of one
    # unary kernel (bigger ones stream); compute calls running at once (None: 8 * workers,
    # so dynamic batching still merges many small calls), waiting beyond those, and running
    # or waiting per tenant (0: no limit).
    max_tensor_elements: int = 1 << 28
    max_unary_kernel_entries: int = 1 << 26
    max_concurrent_jobs: int | None = None
    max_queue: int = 64
    # None: half the running slots (at least 2) on a server with --auth-tokens, so one tenant
    # never holds more than half of them; none without tokens (one tenant: a cap would only
    # shrink its own server).
    max_jobs_per_tenant: int | None = None
    # StreamKernel calls one tenant may hold open (None: a quarter of the running slots, at
    # least 2; 0: no limit). An open stream holds no compute slot until its inputs are in,
    # but it may hold up to max_stream_input_bytes of inputs.
    max_streams_per_tenant: int | None = None
    # A stream whose client sends nothing for this long while the server waits for its
    # header or input chunks ends with DEADLINE_EXCEEDED (a client sends its chunks back to
    # back: a minute of silence is a stalled or hostile client, not a slow link).
    stream_idle_seconds: float = 60.0
    # Unary programs are compiled ahead of time on `compile_workers` threads of their own
    # (one per tenant at a time, so 2 leave one for the others while a tenant compiles) and
    # admitted by cost (RESOURCE_EXHAUSTED past a budget; 0: no limit; see unary_programs.py).
    # Measured on this 2-core machine (busy: load 5, then 10 with other test runs): lowering
    # took 1.7 s for 201 layer messages, 5.8 s for 401 and 37 s for 501 (~61,000 operations),
    # growing faster than linearly (the issue: 10,000 written-out layers abort the process),
    # so at most 400 layer messages are lowered (a repeat's layer counts once: it compiles
    # as a loop). Compiling took 0.9 s for 2,500 operations, 3.2 s for 12,500, 9.5 s for
    # 24,500 and 16 s for 49,700 (the issue: 346 s and 3.9 GiB for 1,000 layers): 50,000
    # operations keep one compile near 20 s; usual networks have a few thousand (a ReLU MLP
    # ~550, an 8-conv-layer CNN ~2,900, a Dense+Relu pair ~245).
    compile_workers: int = 2
    # Each compile, and each computation (unary or a stream's tile), runs in an engine process
    # (engine_processes.py; at most compile_workers + workers of them), so one that dies
    # (XLA aborting on an allocation, the OS or its OOM killer ending it) or a compile that
    # never ends costs its request alone (RESOURCE_EXHAUSTED), not the server. The address
    # space one compile or computation may add to a started process (~1.5 GiB here once jax
    # is loaded; None: a quarter of the host's memory, as a unary call's memory budget on
    # CPU) and seconds
    # per compile (300: 15 times the ~20 s the largest program --max-program-ops admits
    # took here; a compile still going after that is stopped).
    compile_memory_bytes: int | None = None
    compile_seconds: float = 300.0
    max_program_layers: int = 400
    max_program_ops: int = 50_000
    # Device memory of one unary call (XLA's memory analysis: temporaries, inputs, outputs);
    # None: half the device's memory where jax reports it (GPUs, as tiles), else a quarter of
    # the host's memory or of the process's address-space limit, whichever is smaller (four
    # such calls run at once with the default --workers).
    max_call_memory_bytes: int | None = None
    # Estimated time of one unary call on the device (`unary_programs.DeviceRates`: XLA's
    # FLOPs and bytes accessed, a loop's body times its repeats, at the device's rates):
    # this bounds how long a started call, which cannot be interrupted, keeps a worker.
    # Larger kernels stream (tile by tile: cancellable, and fair to other tenants). Measured
    # here (idle, float32, NNGP+NTK): a 3-layer ReLU MLP over 4,096 inputs of 3,072
    # features was estimated at 2.2 s and ran in 2.0 s (admitted); over 8,192 inputs,
    # 8.6 s (refused: stream it). On ten networks the measured time was 0.1-2.7x the
    # estimate (`python -m benchmarks.call_cost`), so an admitted call ran at most ~13 s.
    # (The FLOPs budget this replaces refused the 2 s call above yet admitted memory-bound
    # pooling NTKs that ran 10x longer than their FLOPs said.)
    max_call_seconds: float = 5.0
    # The device's rates for that estimate (None: `unary_programs.CPU_RATES` or
    # `GPU_RATES` by jax's backend).
    device_flops_per_second: float | None = None
    device_bytes_per_second: float | None = None
    # Tokens, TLS, and whether a non-loopback address may be bound without tokens.
    security: Security = dataclasses.field(default_factory=Security)
    # Prometheus metrics over HTTP on this port of `host` (None: off; 0 picks a free one).
    metrics_port: int | None = None

    def running_slots(self) -> int:
        return self.max_concurrent_jobs or 8 * self.workers

    def jobs_per_tenant(self) -> int:
        """The per-tenant cap on compute calls running or waiting (0: none)."""
        if self.max_jobs_per_tenant is not None:
            return self.max_jobs_per_tenant
        return max(2, self.running_slots() // 2) if self.security.tokens is not None else 0

    def streams_per_tenant(self) -> int:
        """The per-tenant cap on open StreamKernel calls (0: none)."""
        if self.max_streams_per_tenant is not None:
            return self.max_streams_per_tenant
        return max(2, self.running_slots() // 4)
