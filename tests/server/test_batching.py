"""DynamicBatcher, in process: merged calls agree with the unbatched program, keys stay
apart, a lone call is bit for bit the unbatched one, errors and cancellations are contained."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import jax
import numpy as np
import pytest
from ntkserve import stax
from ntkserve_engine.kernels import KernelFn
from ntkserve_server.batching import DynamicBatcher
from ntkserve_server.compute import Compiled, ComputeEngine, check
from ntkserve_server.unary_programs import Budgets, UnaryPrograms

jax.config.update("jax_enable_x64", True)

FC = stax.serial(stax.Dense(64, W_std=1.3, b_std=0.1), stax.Relu(), stax.Dense(1))
CNN = stax.serial(stax.Conv(8, (3, 3)), stax.Relu(), stax.GlobalAvgPool(), stax.Dense(1))
BOTH = ("nngp", "ntk")


@pytest.fixture(scope="module")
def executor() -> Iterator[ThreadPoolExecutor]:
    with ThreadPoolExecutor(max_workers=4) as pool:
        yield pool


@pytest.fixture(scope="module")
def engine() -> ComputeEngine:
    return ComputeEngine()


def _x(n: int, *feature: int, seed: int = 0, dtype: Any = np.float64) -> np.ndarray[Any, Any]:
    return np.random.RandomState(seed).randn(n, *feature).astype(dtype)


def _close(got: tuple[Any, ...], want: tuple[Any, ...], rtol: float = 1e-12) -> None:
    assert len(got) == len(want)
    for g, w in zip(got, want, strict=True):
        assert g.shape == w.shape and g.dtype == w.dtype
        np.testing.assert_allclose(g, w, rtol=rtol, atol=rtol * float(np.max(np.abs(w))))


@pytest.mark.parametrize("eager", [True, False])
@pytest.mark.parametrize("with_x2", [False, True])
def test_concurrent_requests_merge_and_agree(
    executor: ThreadPoolExecutor, engine: ComputeEngine, eager: bool, with_x2: bool
) -> None:
    compiled = engine.compiled(KernelFn(FC))
    x1s = [_x(4, 6, seed=i) for i in range(20)]
    x2s = [_x(3, 6, seed=100 + i) if with_x2 else None for i in range(20)]
    batcher = DynamicBatcher(executor, window_seconds=0.05, eager=eager)

    async def main() -> list[tuple[Any, ...]]:
        calls = [batcher.kernel(check(compiled, a, b, BOTH)) for a, b in zip(x1s, x2s, strict=True)]
        return await asyncio.gather(*calls)

    results = asyncio.run(main())
    for got, a, b in zip(results, x1s, x2s, strict=True):
        _close(got, engine.kernel(check(compiled, a, b, BOTH)))
    assert batcher.device_calls < 20
    assert batcher.device_calls <= (2 if eager else 1)
    assert batcher.batched_requests >= 19


def test_spatial_network_batches(executor: ThreadPoolExecutor, engine: ComputeEngine) -> None:
    compiled = engine.compiled(KernelFn(CNN))
    xs = [_x(3, 5, 5, 2, seed=i) for i in range(5)]
    batcher = DynamicBatcher(executor, eager=False, window_seconds=0.05)

    async def main() -> list[tuple[Any, ...]]:
        return await asyncio.gather(*(batcher.kernel(check(compiled, x, None, BOTH)) for x in xs))

    for got, x in zip(asyncio.run(main()), xs, strict=True):
        _close(got, engine.kernel(check(compiled, x, None, BOTH)))
    assert batcher.device_calls == 1


def test_different_keys_are_not_merged(executor: ThreadPoolExecutor, engine: ComputeEngine) -> None:
    fc = engine.compiled(KernelFn(FC))
    wide = engine.compiled(KernelFn(stax.serial(stax.Dense(64, W_std=2.0), stax.Relu())))
    cases: list[tuple[Compiled, Any, Any, tuple[str, ...]]] = []
    for i in range(3):  # five keys, three requests each
        cases += [
            (fc, _x(4, 6, seed=i), None, BOTH),
            (fc, _x(4, 6, seed=10 + i), _x(2, 6, seed=20 + i), BOTH),
            (fc, _x(5, 6, seed=30 + i), None, BOTH),
            (fc, _x(4, 6, seed=40 + i), None, ("ntk",)),
            (wide, _x(4, 6, seed=50 + i), None, BOTH),
        ]
    batcher = DynamicBatcher(executor, eager=False, window_seconds=0.05)

    async def main() -> list[tuple[Any, ...]]:
        return await asyncio.gather(*(batcher.kernel(check(*case)) for case in cases))

    for got, case in zip(asyncio.run(main()), cases, strict=True):
        _close(got, engine.kernel(check(*case)))
    assert batcher.device_calls == 5
    assert batcher.batched_requests == 15


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("with_x2", [False, True])
def test_lone_request_is_bit_for_bit_unbatched(
    executor: ThreadPoolExecutor, engine: ComputeEngine, dtype: Any, with_x2: bool
) -> None:
    compiled = engine.compiled(KernelFn(FC))
    x1 = _x(4, 6, dtype=dtype)
    x2 = _x(3, 6, seed=1, dtype=dtype) if with_x2 else None
    for eager in (True, False):
        batcher = DynamicBatcher(executor, eager=eager, window_seconds=0.005)
        got = asyncio.run(batcher.kernel(check(compiled, x1, x2, BOTH)))
        for g, w in zip(got, engine.kernel(check(compiled, x1, x2, BOTH)), strict=True):
            assert g.dtype == dtype
            np.testing.assert_array_equal(g, w)
        assert batcher.device_calls == 1 and batcher.batched_requests == 0


def test_window_zero_and_large_requests_run_alone(
    executor: ThreadPoolExecutor, engine: ComputeEngine
) -> None:
    compiled = engine.compiled(KernelFn(FC))
    xs = [_x(4, 6, seed=i) for i in range(8)]
    for batcher in (
        DynamicBatcher(executor, window_seconds=0.0, eager=False),
        DynamicBatcher(executor, window_seconds=0.05, eager=False, max_entries=15),
    ):
        assert not batcher.wants(check(compiled, xs[0], None, BOTH))

        async def main(b: DynamicBatcher = batcher) -> list[tuple[Any, ...]]:
            return await asyncio.gather(*(b.kernel(check(compiled, x, None, BOTH)) for x in xs))

        for got, x in zip(asyncio.run(main()), xs, strict=True):
            for g, w in zip(got, engine.kernel(check(compiled, x, None, BOTH)), strict=True):
                np.testing.assert_array_equal(g, w)
        assert batcher.device_calls == 8 and batcher.batched_requests == 0


def test_batch_sizes_pad_to_powers_of_two(executor: ThreadPoolExecutor) -> None:
    compiled = ComputeEngine().compiled(KernelFn(FC))
    batcher = DynamicBatcher(executor, eager=False, window_seconds=0.05, max_batch=6)

    async def burst(n: int) -> None:
        xs = [_x(4, 6, seed=i) for i in range(n)]
        got = await asyncio.gather(*(batcher.kernel(check(compiled, x, None, BOTH)) for x in xs))
        for g, x in zip(got, xs, strict=True):
            _close(g, compiled.kfn(x, None, get=BOTH))  # type: ignore[arg-type]

    for n in (3, 4, 5, 6, 7):  # sizes 4, 4, 6 (max_batch), 6, then 6 + 1 alone
        asyncio.run(burst(n))
    sizes = sorted({key[2][0] for key in batcher.programs._programs if key[0] == "batched"})
    assert sizes == [4, 6]
    assert batcher.device_calls == 6


class _Broken(KernelFn):
    def apply(self, params: Any, x1: Any, x2: Any, get: tuple[str, ...], **extras: Any) -> Any:
        raise RuntimeError("boom")


def test_an_error_reaches_every_waiter(executor: ThreadPoolExecutor) -> None:
    kfn = _Broken(FC)
    compiled = Compiled(kfn, jax.jit(kfn.apply, static_argnames=("get",)), lambda *a: None)
    batcher = DynamicBatcher(executor, eager=False, window_seconds=0.05)

    async def main() -> list[Any]:
        calls = [batcher.kernel(check(compiled, _x(4, 6, seed=i), None, BOTH)) for i in range(5)]
        return await asyncio.gather(*calls, return_exceptions=True)

    errors = asyncio.run(main())
    assert all(isinstance(e, RuntimeError) and str(e) == "boom" for e in errors)
    # The program fails as it is made (lowered), once for all, before anything runs;
    # the failure is remembered: the next call gets it at once, with nothing compiled.
    assert len({id(e) for e in errors}) == 1 and batcher.device_calls == 0
    with pytest.raises(RuntimeError, match="boom"):
        asyncio.run(batcher.kernel(check(compiled, _x(4, 6), None, BOTH)))
    assert batcher.programs.compilations == 0 and batcher.programs.refusals == 2  # made, recalled


class _Gated(ThreadPoolExecutor):
    """Work submitted waits for `gate`: a batch stays on the executor until the test says."""

    def __init__(self) -> None:
        super().__init__(max_workers=2)
        self.gate = threading.Event()

    def submit(self, fn: Any, /, *args: Any, **kwargs: Any) -> Any:
        def gated() -> Any:
            self.gate.wait(10)
            return fn(*args, **kwargs)

        return super().submit(gated)


@pytest.mark.parametrize("when", ["gathering", "computing"])
def test_a_cancelled_waiter_leaves_the_rest(engine: ComputeEngine, when: str) -> None:
    compiled = engine.compiled(KernelFn(FC))
    xs = [_x(4, 6, seed=i) for i in range(5)]
    with _Gated() as executor:
        batcher = DynamicBatcher(executor, eager=False, window_seconds=0.01)

        async def main() -> list[Any]:
            tasks = [
                asyncio.create_task(batcher.kernel(check(compiled, x, None, BOTH))) for x in xs
            ]
            await asyncio.sleep(0)  # all five gathering
            if when == "computing":
                while batcher.device_calls == 0:  # the window closes: the batch is submitted
                    await asyncio.sleep(0.005)
            tasks[2].cancel()
            executor.gate.set()
            return await asyncio.gather(*tasks, return_exceptions=True)

        results = asyncio.run(main())
    assert isinstance(results[2], asyncio.CancelledError)
    for i in (0, 1, 3, 4):
        _close(results[i], engine.kernel(check(compiled, xs[i], None, BOTH)))
    assert batcher.device_calls == 1
    assert batcher.batched_requests == (4 if when == "gathering" else 5)


def test_merged_calls_stay_within_the_memory_budget(executor: ThreadPoolExecutor) -> None:
    """A budget of 2.5 calls' memory: eight concurrent requests run as four merged pairs (not
    one call of eight, which would need 8 times one call's memory), each pair's program
    within the budget by XLA's own analysis."""
    compiled = ComputeEngine().compiled(KernelFn(FC))
    xs = [_x(4, 6, seed=i) for i in range(8)]
    unlimited = UnaryPrograms(Budgets(), ThreadPoolExecutor(1))
    single = asyncio.run(unlimited.forward(check(compiled, xs[0], None, BOTH), "lab"))
    budget = int(2.5 * single.memory_bytes)
    programs = UnaryPrograms(Budgets(max_call_memory_bytes=budget), ThreadPoolExecutor(1))
    batcher = DynamicBatcher(executor, programs=programs, eager=False, window_seconds=0.05)

    async def burst() -> list[tuple[Any, ...]]:
        return await asyncio.gather(*(batcher.kernel(check(compiled, x, None, BOTH)) for x in xs))

    for got, x in zip(asyncio.run(burst()), xs, strict=True):
        _close(got, compiled.kfn(x, None, get=BOTH))  # type: ignore[arg-type]
    merged = {k: p for k, p in programs._programs.items() if k[0] == "batched"}
    assert {key[2][0] for key in merged} == {2}
    assert all(p.memory_bytes <= budget for p in merged.values())
    assert batcher.device_calls == 4 and batcher.batched_requests == 8
