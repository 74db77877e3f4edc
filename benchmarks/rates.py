"""This machine's limits, measured: the GEMM rate per dtype and the memory bandwidth, the
yardsticks every engine time is set against (a floor, not a guess from a data sheet).

    python -m benchmarks.rates [--repeats N]     # prints the rates as JSON

GEMM: a jitted n^3 matmul (4096 on a CPU, 16384 on a GPU), float32 and float64, median of
`repeats`. Bandwidth: a jitted elementwise pass over a 256 MiB array (2 GiB on a GPU) in
place (its buffer donated), bytes read + written per second; into a fresh buffer as well,
which on these CPUs also pays page faults (what an unfused engine sees).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable, Sequence
from typing import Any


def median_seconds(fn: Callable[[], Any], repeats: int) -> float:
    """The median wall time of `repeats` calls of fn (which must block until done)."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def device() -> dict[str, str]:
    import jax

    first = jax.devices()[0]
    return {"platform": first.platform, "kind": first.device_kind, "jax": jax.__version__}


def gemm_flops_per_s(dtype: str, repeats: int) -> float:
    import jax
    import jax.numpy as jnp
    import numpy as np

    n = 16384 if jax.devices()[0].platform == "gpu" else 4096
    a = jnp.asarray(np.random.default_rng(0).standard_normal((n, n)).astype(dtype))
    matmul = jax.jit(lambda x, y: x @ y)
    matmul(a, a).block_until_ready()
    return 2.0 * n**3 / median_seconds(lambda: matmul(a, a).block_until_ready(), repeats)


def bandwidth_bytes_per_s(repeats: int) -> dict[str, float]:
    import jax
    import jax.numpy as jnp

    size = (512 if jax.devices()[0].platform == "gpu" else 64) * 2**20  # float32 entries
    pass_bytes = 2.0 * size * 4  # one read and one write per entry
    step = jax.jit(lambda x: x * 1.5 + 1.0, donate_argnums=0)
    state = [jnp.ones((size,), jnp.float32)]

    def in_place() -> None:
        state[0] = step(state[0])
        state[0].block_until_ready()

    in_place()
    stream = median_seconds(in_place, repeats)
    fresh_fn = jax.jit(lambda x: x * 1.5 + 1.0)
    big = jnp.ones((size,), jnp.float32)
    fresh_fn(big).block_until_ready()
    fresh = median_seconds(lambda: fresh_fn(big).block_until_ready(), repeats)
    return {"bytes_per_s": pass_bytes / stream, "fresh_buffer_bytes_per_s": pass_bytes / fresh}


def measure(repeats: int = 3) -> dict[str, Any]:
    """Every rate, with the device it was measured on (float64 enabled for the f64 GEMM)."""
    import jax

    jax.config.update("jax_enable_x64", True)  # type: ignore[no-untyped-call]
    return {
        **device(),
        "gemm_float32_flops_per_s": gemm_flops_per_s("float32", repeats),
        "gemm_float64_flops_per_s": gemm_flops_per_s("float64", repeats),
        **bandwidth_bytes_per_s(repeats),
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    print(json.dumps(measure(max(3, args.repeats))))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
