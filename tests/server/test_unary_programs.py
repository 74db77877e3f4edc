"""unary_programs, in process: what is counted before lowering (layer messages, repeats
multiplied), and that the analysed executable is what runs (bit for bit the jitted program)."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor

import jax
import numpy as np
import pytest
from ntkserve import stax
from ntkserve_engine.kernels import KernelFn
from ntkserve_engine.kernels.canonical import repeat_factor
from ntkserve_server.compute import ComputeEngine, check, run_forward
from ntkserve_server.requests import OverLimit
from ntkserve_server.unary_programs import Budgets, UnaryPrograms, layer_messages

jax.config.update("jax_enable_x64", True)

BODY = stax.serial(stax.Dense(8), stax.Relu())


def test_layers_count_a_repeat_once_and_repeats_multiply() -> None:
    nested = KernelFn(stax.serial(stax.Dense(4), stax.repeat(stax.repeat(BODY, 3), 4)))
    # Dense, repeat, repeat, serial, Dense, Relu: lowering walks each once.
    assert layer_messages(nested) == 6
    assert repeat_factor(nested.architecture.layers) == 12
    side_by_side = KernelFn(stax.serial(stax.repeat(BODY, 5), stax.repeat(BODY, 7)))
    assert repeat_factor(side_by_side.architecture.layers) == 7


def test_the_analysed_executable_is_bit_for_bit_the_jitted_program() -> None:
    compiled = ComputeEngine().compiled(KernelFn(stax.serial(BODY, stax.Dense(1))))
    x = np.random.default_rng(3).standard_normal((5, 3))
    inputs = check(compiled, x, None, ("nngp", "ntk"))
    programs = UnaryPrograms(Budgets(), ThreadPoolExecutor(1))
    program = asyncio.run(programs.forward(inputs, "lab"))
    assert program.ops > 0 and program.memory_bytes > 0
    assert program.flops > 0 and program.bytes_accessed > 0
    for got, want in zip(run_forward(inputs, program.executable), run_forward(inputs), strict=True):
        np.testing.assert_array_equal(got, want)


def test_a_refusal_is_remembered_per_shapes() -> None:
    compiled = ComputeEngine().compiled(KernelFn(stax.serial(BODY, stax.Dense(1))))
    programs = UnaryPrograms(Budgets(max_call_memory_bytes=1 << 16), ThreadPoolExecutor(1))
    big = check(compiled, np.ones((200, 3)), None, ("nngp",))

    async def twice() -> None:
        for _ in range(2):
            with pytest.raises(OverLimit, match="--max-call-memory-mb"):
                await programs.forward(big, "lab")
        await programs.forward(check(compiled, np.ones((4, 3)), None, ("nngp",)), "lab")

    asyncio.run(twice())
    assert programs.compilations == 2 and programs.refusals == 2  # big once, small once
