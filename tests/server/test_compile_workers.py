"""Compile workers (issue 17): a compile past --compile-seconds stops its worker and costs
its call alone; the next compile gets a fresh worker; the executable that comes back from a
worker computes bit for bit what the program compiled in this process computes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jax
import numpy as np
import pytest
from ntkserve import stax
from ntkserve_engine.kernels import KernelFn
from ntkserve_server import compile_workers
from ntkserve_server.compile_workers import CompileWorkers
from ntkserve_server.engine_processes import KEEP_LOADED, EngineProcesses, loaded
from ntkserve_server.program_recipes import Recipe, build, recipe, spec_of
from ntkserve_server.requests import OverLimit

from tests.conftest import timeout_for

X = np.random.default_rng(3).standard_normal((4, 3))
# Far above a small network's compile on a busy machine; far below the 100-pair one's
# (~10 s here alone, ~28,000 operations).
GENEROUS_SECONDS = 120.0
SHORT_SECONDS = 1.0


def _chain(pairs: int) -> KernelFn:
    layers = [layer for _ in range(pairs) for layer in (stax.Dense(8), stax.Relu())]
    return KernelFn(stax.serial(*layers, stax.Dense(1)))


def _forward(kfn: KernelFn) -> Recipe:
    return recipe("forward", kfn, ("ntk", "nngp"), x1=spec_of(X), x2=None)


def _run(executable: Any, kfn: KernelFn) -> list[Any]:
    out = executable(kfn.params, X, None, mask_constant=None, pattern1=None, pattern2=None)
    return [np.asarray(leaf) for leaf in jax.tree.leaves(out)]


@pytest.fixture(scope="module")
def workers() -> Iterator[CompileWorkers]:
    engines = EngineProcesses(1, 0)
    yield CompileWorkers(engines, GENEROUS_SECONDS)
    engines.close()


@timeout_for(30)
def test_a_worker_executable_is_bit_for_bit_the_in_process_one(workers: CompileWorkers) -> None:
    """Compiled in an engine process, then run here, and run there (`RemoteExecutable`):
    the costs and every bit of the results are those of the program compiled here."""
    kfn = _chain(3)
    made = workers.build(_forward(kfn), 0, loaded)
    remote = workers.build(_forward(kfn), 0, workers.engines.unary_executable)
    here = build(_forward(kfn), 0, kfn)
    costs = ("ops", "memory_bytes", "flops", "bytes_accessed")
    assert [getattr(made, c) for c in costs] == [getattr(here, c) for c in costs]
    want = _run(here.executable, kfn)
    for got in (_run(made.executable, kfn), _run(remote.executable, kfn)):
        for a, b in zip(got, want, strict=True):
            np.testing.assert_array_equal(a, b)


@timeout_for(30)
def test_a_compile_past_its_time_stops_the_worker_alone(workers: CompileWorkers) -> None:
    workers.build(_forward(_chain(1)), 0, loaded)  # the worker is up: its start is not timed
    workers.seconds = SHORT_SECONDS
    with pytest.raises(
        OverLimit, match=r"took longer than 1 s and was stopped; .* --compile-seconds"
    ):
        workers.build(_forward(_chain(100)), 0, loaded)
    assert workers.engines.lost == 1
    workers.seconds = GENEROUS_SECONDS
    kfn = _chain(2)
    assert np.all(np.isfinite(_run(workers.build(_forward(kfn), 0, loaded).executable, kfn)[0]))


@timeout_for(60)
def test_a_program_its_engine_process_dropped_is_sent_again(workers: CompileWorkers) -> None:
    """An engine process keeps its `KEEP_LOADED` most recently used programs; asked to run
    one it dropped, it answers "unknown", and the server sends the program again and gets
    the same bits."""
    kfn = _chain(2)
    remote = workers.build(_forward(kfn), 0, workers.engines.unary_executable)
    first = _run(remote.executable, kfn)  # loaded in the (one) engine process, and run
    args = (kfn.params, X, None)
    kwargs = {"mask_constant": None, "pattern1": None, "pattern2": None}
    assert workers.engines.ask(("run", remote.executable.key, args, kwargs), None)[0] == "ok"
    for key in range(-KEEP_LOADED, 0):  # as many others, under keys the server never uses
        load = ("load", key, remote.executable.blob, remote.executable.device_id)
        assert workers.engines.ask(load, None) == ("ok", None)
    dropped = workers.engines.ask(("run", remote.executable.key, args, kwargs), None)
    assert dropped == ("unknown", None)
    for a, b in zip(_run(remote.executable, kfn), first, strict=True):
        np.testing.assert_array_equal(a, b)


def test_a_reply_written_by_other_code_is_not_found(
    workers: CompileWorkers, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Compile replies on disk are keyed by the code that builds programs as well: after an
    upgrade (or an edit of a checkout) a server compiles again instead of loading a program
    the old code built, even from a cache that servers share."""
    shared = jax.config.jax_compilation_cache_dir
    jax.config.update("jax_compilation_cache_dir", str(tmp_path))  # type: ignore[no-untyped-call]
    try:
        made = _forward(_chain(1))
        workers.build(made, 0, loaded)
        assert compile_workers._Disk().get(made, 0) is not None
        monkeypatch.setattr(compile_workers, "_code_digest", lambda: "another version's code")
        assert compile_workers._Disk().get(made, 0) is None
    finally:
        jax.config.update("jax_compilation_cache_dir", shared)  # type: ignore[no-untyped-call]
